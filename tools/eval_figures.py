#!/usr/bin/python3
"""Figures of the paper's comparison, drawn from `cnnserve eval` reports and `cnnserve train --log-json`
logs (Debian's python3-matplotlib; PNG and SVG of each figure, 960 px wide).

  eval_figures.py --out-dir DIR [--eval NAME=REPORT.json ...] [--train NAME=LOG.json ...]

NAME is the dataset's name in titles and legends (e.g. monkeys=eval/monkeys.json). Models are told
apart by their base architecture, so the same network keeps its colour in every figure. Figures:
  roc_NAME          ROC of every model on one dataset: macro-average (solid) and micro-average
                    (dashed), AUC in the legend, with a zoom on the top-left corner (paper Figs 5/7/9)
  training_NAME     training and validation accuracy and loss per epoch of every model on one dataset
                    (paper Figs 4/6/8)
  test_time_accuracy  grouped bars per dataset and model: test ms per image (decode + preprocess +
                    inference medians) and test top-1 accuracy (paper Fig 10 a/b)
  accuracy_vs_macs  test top-1 against multiply-accumulates per image, one marker per model and
                    dataset (log scale)
Prints the files written, one per line."""
import argparse
import json
import os
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # SVG text stays text (searchable, smaller)
plt.rcParams["svg.hashsalt"] = "cnnserve"  # same input, same SVG bytes

ARCH_ORDER = ["mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v2_x1_0", "alexnet", "inception_v3"]
ARCH_NAME = {"mobilenet_v3_large": "MobileNetV3-Large", "mobilenet_v3_small": "MobileNetV3-Small",
             "shufflenet_v2_x1_0": "ShuffleNetV2 1.0x", "alexnet": "AlexNet", "inception_v3": "Inception v3"}
COLORS = {a: c for a, c in zip(ARCH_ORDER, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"])}
WIDTH_IN, DPI = 8.0, 120  # 960 px wide


def arch_of(entry):
    return entry.get("architecture") or entry.get("base") or entry.get("model", "?")


def label_of(arch):
    return ARCH_NAME.get(arch, arch)


def color_of(arch):
    return COLORS.get(arch, "#7f7f7f")


def arch_key(arch):
    return ARCH_ORDER.index(arch) if arch in ARCH_ORDER else len(ARCH_ORDER)


def save(fig, out_dir, stem, written):
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, "%s.%s" % (stem, ext))
        fig.savefig(path, dpi=DPI, format=ext)
        written.append(path)
    plt.close(fig)


def parse_named(items, what):
    out = []
    for item in items or []:
        if "=" not in item:
            sys.exit("eval_figures.py: %s %r: expected NAME=FILE" % (what, item))
        name, path = item.split("=", 1)
        with open(path) as f:
            out.append((name, json.load(f)))
    return out


def evaluated(report):
    """The models of a report that have metrics, in architecture order."""
    ms = [m for m in report.get("models", []) if m.get("metrics")]
    return sorted(ms, key=lambda m: (arch_key(arch_of(m)), m["model"]))


def roc_figure(name, report, out_dir, written):
    models = evaluated(report)
    if not models:
        return
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 4.3))
    for ax, zoom in zip(axes, (False, True)):
        for m in models:
            roc, arch = m["metrics"]["roc"], arch_of(m)
            for kind, style in (("macro", "-"), ("micro", "--")):
                r = roc.get(kind) or {}
                if r.get("auc") is None or not r.get("fpr"):
                    continue
                lab = "%s %s (AUC %.4f)" % (label_of(arch), kind, r["auc"]) if not zoom else None
                ax.plot(r["fpr"], r["tpr"], style, color=color_of(arch), lw=1.6, label=lab)
        ax.plot([0, 1], [0, 1], ":", color="#999999", lw=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.grid(alpha=0.3)
        if zoom:
            ax.set_xlim(0, 0.2)
            ax.set_ylim(0.8, 1.0)
            ax.set_title("zoom: top-left corner")
        else:
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.set_title("one-vs-rest ROC, %s" % name)
            ax.legend(loc="lower right", fontsize=7.5)
    fig.tight_layout()
    save(fig, out_dir, "roc_%s" % name, written)


def training_figure(name, logs, out_dir, written):
    if not logs:
        return
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 4.3))
    for log in sorted(logs, key=lambda l: arch_key(l.get("base", ""))):
        arch, epochs = log.get("base", "?"), log.get("epochs", [])
        x = [e["epoch"] for e in epochs]
        for ax, key in zip(axes, ("accuracy", "loss")):
            scale = 100.0 if key == "accuracy" else 1.0
            for split, style in (("train", "--"), ("val", "-")):
                y = [e.get("%s_%s" % (split, key)) for e in epochs]
                if any(v is None for v in y):
                    continue
                ax.plot(x, [v * scale for v in y], style, color=color_of(arch), lw=1.5,
                        label="%s %s" % (label_of(arch), "validation" if split == "val" else "training"))
    axes[0].set_ylabel("accuracy (%)")
    axes[1].set_ylabel("cross-entropy loss")
    for ax, what in zip(axes, ("accuracy", "loss")):
        ax.set_xlabel("epoch")
        ax.set_title("%s per epoch, %s" % (what, name))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7.5)
    fig.tight_layout()
    save(fig, out_dir, "training_%s" % name, written)


def bars_figure(reports, out_dir, written):
    names = [n for n, r in reports if evaluated(r)]
    if not names:
        return
    archs = sorted({arch_of(m) for _, r in reports for m in evaluated(r)}, key=arch_key)
    table = {(n, arch_of(m)): m for n, r in reports for m in evaluated(r)}
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 4.3))
    width = 0.8 / max(1, len(archs))
    for i, arch in enumerate(archs):
        xs, ms_vals, acc_vals = [], [], []
        for j, n in enumerate(names):
            m = table.get((n, arch))
            if not m:
                continue
            t = m["timing"]
            xs.append(j + (i - (len(archs) - 1) / 2) * width)
            ms_vals.append(t["decode_ms"]["median"] + t["preprocess_ms"]["median"] + t["inference_ms"]["median"])
            acc_vals.append(100 * m["metrics"]["top1"])
        axes[0].bar(xs, ms_vals, width, color=color_of(arch), label=label_of(arch))
        axes[1].bar(xs, acc_vals, width, color=color_of(arch), label=label_of(arch))
        for x, v in zip(xs, acc_vals):
            axes[1].text(x, v, "%.1f" % v, ha="center", va="bottom", fontsize=7)
    axes[0].set_ylabel("test time per image (ms, median)")
    axes[0].set_title("(a) test time per image")
    axes[1].set_ylabel("test top-1 accuracy (%)")
    axes[1].set_title("(b) test accuracy")
    lo = min([100 * m["metrics"]["top1"] for m in table.values()] + [100])
    axes[1].set_ylim(max(0, lo - 10), 101)
    for ax in axes:
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_xlabel("dataset")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save(fig, out_dir, "test_time_accuracy", written)


def scatter_figure(reports, out_dir, written):
    pts = [(n, m) for n, r in reports for m in evaluated(r)]
    if not pts:
        return
    markers = "osD^vP*X"
    names = list(dict.fromkeys(n for n, _ in pts))
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.8))
    seen = set()
    for n, m in pts:
        arch = arch_of(m)
        lab = None
        if (arch, n) not in seen:
            lab = "%s, %s" % (label_of(arch), n)
            seen.add((arch, n))
        ax.scatter(m["macs"] / 1e9, 100 * m["metrics"]["top1"], s=60, color=color_of(arch),
                   marker=markers[names.index(n) % len(markers)], label=lab, edgecolors="black", linewidths=0.5)
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: "%g" % v)
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("multiply-accumulates per image (G, log scale)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title("accuracy against compute (colour: model, marker: dataset)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7.5, loc="best")
    fig.tight_layout()
    save(fig, out_dir, "accuracy_vs_macs", written)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--eval", action="append", help="NAME=REPORT.json from cnnserve eval")
    ap.add_argument("--train", action="append", help="NAME=LOG.json from cnnserve train --log-json")
    a = ap.parse_args()
    reports = parse_named(a.eval, "--eval")
    logs = parse_named(a.train, "--train")
    os.makedirs(a.out_dir, exist_ok=True)
    written = []
    for name, report in reports:
        roc_figure(name, report, a.out_dir, written)
    for name in dict.fromkeys(n for n, _ in logs):
        training_figure(name, [l for n, l in logs if n == name], a.out_dir, written)
    bars_figure(reports, a.out_dir, written)
    scatter_figure(reports, a.out_dir, written)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
