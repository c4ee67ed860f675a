#!/usr/bin/python3
"""`make paper`: the paper's protocol ("MobileNetV3 for Image Classification", Qian, Hu and Ning, 2021
IEEE ICBAIE) end to end with the cnnserve binary, for every base model whose weights are present:

  1. fine-tune (`cnnserve train --mode head`, or PAPER_MODE=full) on monkeys/train and fruits-360/train,
     each split 0.7 / 0.3 into training and validation (seeded, stratified);
  2. evaluate (`cnnserve eval`) on monkeys/test and, as fruits-360 here has no test folder, on the
     fruits-360 validation part (the same split train held out); the base models on imagenet-sample;
  3. draw the figures (tools/eval_figures.py) and write REPORT.md with the paper's tables.

  paper.py --bin bin/cnnserve --weights-dir W --data-dir ../shared/data --out-dir paper [--mode head|full]
           [--threads N] [--epochs N] [--epochs-fruits N] [--train-args "FLAGS"] [--torch-dir DIR]
           [--publish DIR]

With --mode full every layer is trained (`cnnserve train --mode full`); --train-args passes the recipe's
flags (e.g. "--lr 0.01 --lr-backbone 0.001") and --torch-dir adds PyTorch's result with the same recipe
on this machine (tools/torch_finetune.py's JSON files DATASET_ARCH.json, e.g. monkeys_mobilenet_v3_small.json)
beside ours.

Everything generated goes to OUT/out/ (models, logs, reports, figures) and OUT/REPORT.md; --publish
also copies REPORT.md's tables and the PNG figures into DIR (the copy the repository keeps)."""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

ARCHS = ["mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v2_x1_0", "alexnet", "inception_v3"]
ARCH_NAME = {"mobilenet_v3_large": "MobileNetV3-Large", "mobilenet_v3_small": "MobileNetV3-Small",
             "shufflenet_v2_x1_0": "ShuffleNetV2 1.0x", "alexnet": "AlexNet", "inception_v3": "Inception v3"}
# torchvision's documentation (IMAGENET1K_V1 weights): params, GFLOPS (= multiply-accumulates), top-1.
# Inception v3's 27.16 M includes the auxiliary classifier, which inference (and our graph) leaves out.
TORCHVISION = {"mobilenet_v3_large": (5483032, 0.22, 74.042), "mobilenet_v3_small": (2542856, 0.06, 67.668),
               "shufflenet_v2_x1_0": (2278604, 0.14, 69.362), "alexnet": (61100840, 0.71, 56.522),
               "inception_v3": (27161264, 5.71, 77.294)}
# The paper's Table IV: fine-tuning time in minutes on Fruits-360 (all layers trainable, its own hardware),
# as quoted in the project's issue on full fine-tuning.
PAPER_FT_MIN_FRUITS = {"mobilenet_v3_large": 40, "mobilenet_v3_small": 33, "shufflenet_v2_x1_0": 42,
                       "inception_v3": 225, "alexnet": 417}
PAPER_NOTE = ("Of the paper's own numbers only its Table IV (fine-tuning time on Fruits-360, all layers "
              "trainable, on the paper's hardware and data) is beside ours; the stored "
              "copies of the paper that could be searched (IEEE Xplore abstract page, a Scribd copy, a Chinese "
              "translation) expose only its abstract and introduction, so the other 'paper' columns read n/a "
              "instead of a guessed figure.")
SEED, VAL_SPLIT = 1, 0.3


def log(msg):
    print("paper: " + msg, flush=True)


def run(cmd, log_path):
    """Runs cmd with stdout+stderr into log_path; (exit status, wall seconds, last lines)."""
    t0 = time.time()
    with open(log_path, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    with open(log_path) as f:
        tail = f.read().strip().splitlines()[-3:]
    return rc, time.time() - t0, tail


def monkey_labels(data_dir, path):
    """monkey_labels.txt (Kaggle's CSV-like file) as folder<TAB>common name lines; None when absent."""
    src = os.path.join(data_dir, "monkeys", "monkey_labels.txt")
    if not os.path.isfile(src):
        return None
    with open(src) as f, open(path, "w") as out:
        for line in f:
            cols = [c.strip() for c in line.split(",")]
            if len(cols) >= 3 and cols[0].startswith("n") and cols[0][1:].isdigit():
                out.write("%s\t%s\n" % (cols[0], cols[2]))
    return path


def pct(v):
    return "n/a" if v is None else "%.2f %%" % (100 * v)


def num(v, fmt):
    return "n/a" if v is None else fmt % v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="bin/cnnserve")
    ap.add_argument("--weights-dir", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out-dir", default="paper")
    ap.add_argument("--mode", default="head")
    ap.add_argument("--threads", type=int, default=0, help="0: the binary's default (the cores)")
    ap.add_argument("--epochs", type=int, default=0, help="0: train's default")
    ap.add_argument("--epochs-fruits", type=int, default=0, help="epochs on fruits-360 (0: --epochs)")
    ap.add_argument("--train-args", default="", help="more `cnnserve train` flags (the recipe), space separated")
    ap.add_argument("--torch-dir", default="", help="tools/torch_finetune.py results DATASET_ARCH.json to compare with")
    ap.add_argument("--publish", default="", help="also copy the tables and PNG figures here")
    ap.add_argument("--only", default="",
                    help="comma-separated base models to fine-tune again; the others' fine-tuning runs are kept from "
                         "the last run (OUT/out/run.json, same command); evaluation and report cover all")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: write REPORT.md (and --publish) again from the last run's OUT/out/run.json, its "
                         "logs and eval reports, with --torch-dir's results as they are now")
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    t_start = time.time()
    load_start = os.getloadavg()
    out = os.path.join(a.out_dir, "out")
    dirs = {k: os.path.join(out, k) for k in ("weights", "logs", "eval", "figures")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    threads = ["--threads", str(a.threads)] if a.threads else []
    if a.report_only:
        return report_again(a, out, dirs)

    present, skipped = [], []
    for arch in ARCHS:
        path = os.path.join(a.weights_dir, arch + ".safetensors")
        if os.path.isfile(path):
            present.append(arch)
        else:
            skipped.append((arch, "no weights file %s (`make weights` downloads all five; needs internet)" % path))
    log("base models with weights: %s; skipped: %s" % (", ".join(present) or "none",
                                                     ", ".join(s for s, _ in skipped) or "none"))
    if not present:
        log("nothing to do")
        return 1

    labels = monkey_labels(a.data_dir, os.path.join(out, "monkey_labels.tsv"))
    datasets = [
        {"name": "monkeys", "train": os.path.join(a.data_dir, "monkeys", "train"),
         "test": os.path.join(a.data_dir, "monkeys", "test"), "test_args": [], "labels": labels,
         "test_what": "monkeys/test (272 photos, Kaggle's validation folder, the paper's test set)"},
        {"name": "fruits", "train": os.path.join(a.data_dir, "fruits-360", "train"),
         "test": os.path.join(a.data_dir, "fruits-360", "train"),
         "test_args": ["--subset", "val", "--val-split", str(VAL_SPLIT), "--seed", str(SEED)], "labels": None,
         "test_what": "the 30 % validation part of fruits-360/train (its Test folder is not available here), "
                      "the same photos train held out"},
    ]
    datasets = [d for d in datasets if os.path.isdir(d["train"])]

    # 1. fine-tune
    train = {}  # (dataset, arch) -> dict
    kept = {}
    if a.only:
        with open(os.path.join(out, "run.json")) as f:
            kept = {e["name"]: e for e in json.load(f)["train"]}
    rev = git_rev()
    for ds in datasets:
        for arch in present:
            name = "%s_%s" % (ds["name"], arch)
            wfile = os.path.join(dirs["weights"], name + ".safetensors")
            jlog = os.path.join(dirs["logs"], "train_%s.json" % name)
            cmd = [a.bin, "train", "--base", arch, "--weights-dir", a.weights_dir, "--data", ds["train"],
                   "--out", wfile, "--name", name, "--mode", a.mode, "--val-split", str(VAL_SPLIT),
                   "--seed", str(SEED), "--log-json", jlog] + threads
            if ds["labels"]:
                cmd += ["--labels", ds["labels"]]
            epochs = a.epochs_fruits if ds["name"] == "fruits" and a.epochs_fruits else a.epochs
            if epochs:
                cmd += ["--epochs", str(epochs)]
            cmd += a.train_args.split()
            if a.only and arch not in a.only.split(","):
                old = kept.get(name)
                if not old or old["cmd"] != cmd[1:] or not os.path.isfile(wfile):
                    log("--only: no earlier run of %s with this command to keep" % name)
                    return 1
                log("kept %s on %s from the earlier run (git %s)" % (arch, ds["name"], old.get("rev")))
                entry = dict(old, load=tuple(old["load"]))
            else:
                log("train %s on %s (%s)" % (arch, ds["name"], a.mode))
                load0 = os.getloadavg()[0]
                rc, wall, tail = run(cmd, os.path.join(dirs["logs"], "train_%s.txt" % name))
                entry = {"rc": rc, "wall_s": wall, "tail": tail, "file": wfile, "name": name, "cmd": cmd[1:],
                         "threads": a.threads or os.cpu_count(), "load": (load0, os.getloadavg()[0]), "rev": rev}
            rc, tail = entry["rc"], entry["tail"]
            if rc == 0 and os.path.isfile(jlog):
                with open(jlog) as f:
                    entry["log"] = json.load(f)
            else:
                log("  failed (exit %d): %s" % (rc, " / ".join(tail)))
            train[(ds["name"], arch)] = entry

    # 2. evaluate
    reports = {}
    for ds in datasets:
        names = [train[(ds["name"], arch)]["name"] for arch in present if train[(ds["name"], arch)]["rc"] == 0]
        if not names:
            continue
        rep = os.path.join(dirs["eval"], "%s.json" % ds["name"])
        cmd = [a.bin, "eval", "--quiet", "--weights-dir", dirs["weights"], "--models", ",".join(names), "--data",
               ds["test"], "--out", rep] + ds["test_args"] + threads
        if ds["labels"]:
            cmd += ["--labels", ds["labels"]]
        log("eval on %s: %s" % (ds["name"], ", ".join(names)))
        rc, wall, tail = run(cmd, os.path.join(dirs["logs"], "eval_%s.txt" % ds["name"]))
        if os.path.isfile(rep):
            with open(rep) as f:
                reports[ds["name"]] = json.load(f)
        if rc:
            log("  eval exit %d: %s" % (rc, " / ".join(tail)))
    imagenet_tsv = os.path.join(a.data_dir, "imagenet-sample", "labels.tsv")
    if os.path.isfile(imagenet_tsv):
        rep = os.path.join(dirs["eval"], "imagenet.json")
        cmd = [a.bin, "eval", "--quiet", "--weights-dir", a.weights_dir, "--models", ",".join(present), "--data",
               imagenet_tsv, "--out", rep] + threads
        log("eval of the base models on imagenet-sample")
        rc, wall, tail = run(cmd, os.path.join(dirs["logs"], "eval_imagenet.txt"))
        if os.path.isfile(rep):
            with open(rep) as f:
                reports["imagenet-sample"] = json.load(f)

    # 3. figures
    fig_cmd = [a.python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "eval_figures.py"), "--out-dir",
               dirs["figures"]]
    for ds in datasets:
        if ds["name"] in reports:
            fig_cmd += ["--eval", "%s=%s" % (ds["name"], os.path.join(dirs["eval"], ds["name"] + ".json"))]
        for arch in present:
            e = train[(ds["name"], arch)]
            if "log" in e:
                fig_cmd += ["--train", "%s=%s" % (ds["name"], os.path.join(dirs["logs"], "train_%s.json" % e["name"]))]
    if "imagenet-sample" in reports:
        fig_cmd += ["--eval", "imagenet-sample=%s" % os.path.join(dirs["eval"], "imagenet.json")]
    figures = []
    if len(fig_cmd) > 4:
        rc, _, tail = run(fig_cmd, os.path.join(dirs["logs"], "figures.txt"))
        if rc:
            log("figures failed: %s" % " / ".join(tail))
        figures = [os.path.basename(p) for p in sorted(os.listdir(dirs["figures"])) if p.endswith(".png")]

    # 4. REPORT.md
    total = time.time() - t_start
    run_info = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "total": total,
                "loads": (load_start[0], os.getloadavg()[0]), "present": present, "skipped": skipped,
                "datasets": datasets, "figures": figures,
                "args": {k: getattr(a, k) for k in ("weights_dir", "mode", "threads", "epochs", "epochs_fruits",
                                                    "train_args")},
                "train": [{k: v for k, v in e.items() if k not in ("log", "torch")} for e in train.values()]}
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(run_info, f, indent=1)
    return write_report(a, run_info, train, reports, dirs)


def git_rev():
    """The source's git commit (with -dirty for local changes), or None outside a git checkout."""
    try:
        p = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "describe", "--always",
                            "--dirty", "--abbrev=7"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return p.stdout.strip() or None if p.returncode == 0 else None


def report_again(a, out, dirs):
    """--report-only: the last run's REPORT.md again from its stored files and --torch-dir as it is now."""
    with open(os.path.join(out, "run.json")) as f:
        run_info = json.load(f)
    for k, v in run_info["args"].items():
        setattr(a, k, v)
    train = {}
    for e in run_info["train"]:
        e["load"] = tuple(e["load"])
        jlog = os.path.join(dirs["logs"], "train_%s.json" % e["name"])
        if e["rc"] == 0 and os.path.isfile(jlog):
            with open(jlog) as f:
                e["log"] = json.load(f)
        ds_name, arch = e["name"].split("_", 1)
        train[(ds_name, arch)] = e
    reports = {}
    for ds in [d["name"] for d in run_info["datasets"]] + ["imagenet"]:
        rep = os.path.join(dirs["eval"], "%s.json" % ds)
        if os.path.isfile(rep):
            with open(rep) as f:
                reports["imagenet-sample" if ds == "imagenet" else ds] = json.load(f)
    log("REPORT.md again from %s (the run of %s)" % (os.path.join(out, "run.json"), run_info["when"]))
    return write_report(a, run_info, train, reports, dirs)


def write_report(a, run_info, train, reports, dirs):
    """REPORT.md into --out-dir (and --publish) from the run's entries, PyTorch's results read from --torch-dir
    now (so they may finish after ours)."""
    for e in train.values():
        tpath = os.path.join(a.torch_dir, "%s.json" % e["name"]) if a.torch_dir else ""
        if tpath and os.path.isfile(tpath):
            with open(tpath) as f:
                e["torch"] = json.load(f)
    present, skipped, datasets, figures = (run_info[k] for k in ("present", "skipped", "datasets", "figures"))
    total = run_info["total"]
    md = report_md(a, present, skipped, datasets, train, reports, figures, total, run_info["loads"],
                   run_info["when"])
    path = os.path.join(a.out_dir, "REPORT.md")
    with open(path, "w") as f:
        f.write(md.replace("](figures/", "](out/figures/"))
    log("wrote %s (%.0f s in all)" % (path, total))
    if a.publish:
        os.makedirs(a.publish, exist_ok=True)
        with open(os.path.join(a.publish, "REPORT.md"), "w") as f:
            f.write(md)
        os.makedirs(os.path.join(a.publish, "figures"), exist_ok=True)
        for fig in figures:
            shutil.copy(os.path.join(dirs["figures"], fig), os.path.join(a.publish, "figures", fig))
        if a.mode == "full":
            publish_json(a.publish, datasets, present, train, reports)
        log("published the tables and %d figures to %s" % (len(figures), a.publish))
    failed = [k for k, e in train.items() if e["rc"]]
    return 1 if failed and a.mode == "head" else 0


def publish_json(dest, datasets, present, train, reports):
    """--mode full: the data the tables come from, next to them: ours_NAME_train.json (train's --log-json plus
    the threads and load average of the run), ours_NAME_eval.json (the eval report's entry for the model,
    without the per-image predictions) and torch_NAME.json (tools/torch_finetune.py's result)."""
    for ds in datasets:
        for arch in present:
            e = train[(ds["name"], arch)]
            parts = []
            if "log" in e:
                parts.append(("ours_%s_train.json" % e["name"], dict(e["log"], threads=e["threads"],
                                                                     load_average=list(e["load"]))))
            m = metric(reports.get(ds["name"]), arch)
            if m:
                rep = reports[ds["name"]]
                parts.append(("ours_%s_eval.json" % e["name"],
                              {"data": rep.get("data"), "threads": rep.get("threads"),
                               "load_average": rep.get("load_average"),
                               "model": {k: v for k, v in m.items() if k != "predictions"}}))
            if e.get("torch"):
                parts.append(("torch_%s.json" % e["name"], e["torch"]))
            for fname, obj in parts:
                with open(os.path.join(dest, fname), "w") as f:
                    json.dump(obj, f, indent=1)
                    f.write("\n")


def threads_load(threads, loads):
    """'T, load A-B' from a thread count and 1-minute load averages (None when unknown)."""
    loads = [v for v in loads if v is not None]
    if threads is None and not loads:
        return "n/a"
    t = "%s thr" % threads if threads is not None else "? thr"
    if not loads:
        return t
    return "%s, load %.0f-%.0f" % (t, min(loads), max(loads)) if max(loads) - min(loads) >= 0.5 else \
        "%s, load %.0f" % (t, loads[0])


def torch_threads_load(tr):
    la = tr.get("load_average") or {}
    loads = [la.get("start")] + [ep.get("load_average") for ep in tr.get("epochs", [])] + [la.get("end")]
    return threads_load(tr.get("threads", (tr.get("recipe") or {}).get("threads")), loads)


def metric(report, arch):
    for m in (report or {}).get("models", []):
        if m.get("architecture") == arch and m.get("metrics"):
            return m
    return None


def report_md(a, present, skipped, datasets, train, reports, figures, total, loads, when):
    L = []
    w = L.append
    w("# The paper's protocol with cnnserve")
    w("")
    w("Generated by `make paper` (`tools/paper.py`) on %s (%s, %d cores), %s, in %.0f s. Mode: `--mode %s`; "
      "split %.1f / %.1f, seed %d." % (when, platform.machine(),
                                       os.cpu_count() or 0, a.weights_dir, total, a.mode, 1 - VAL_SPLIT, VAL_SPLIT,
                                       SEED))
    w("")
    w("Load average (1 min) %.1f at the start and %.1f at the end: on a shared machine the times below include "
      "waiting for the cores; the accuracies, losses and AUCs do not depend on it (the same command gives the "
      "same numbers)." % (loads[0], loads[1]))
    w("")
    revs = sorted({e.get("rev") or "unknown" for e in train.values()})
    if len(revs) > 1:
        w("The fine-tuning runs come from more than one build (`--only` kept some from an earlier run): %s." %
          "; ".join("%s at git %s" % (e["name"], e.get("rev") or "unknown") for e in train.values()))
    elif revs:
        w("Fine-tuning runs built from git %s." % revs[0])
    w("")
    w(PAPER_NOTE)
    w("")
    failed = [e for e in train.values() if e["rc"]]
    if failed and len(failed) == len(train):
        w("**`--mode %s` is not supported by this `cnnserve train`**; every fine-tuning run failed with: `%s`. "
          "The tables below therefore have no fine-tuned models." % (a.mode, " ".join(failed[0]["tail"][-1:])))
        w("")
    if skipped:
        w("**Skipped models:**")
        for arch, why in skipped:
            w("- %s: %s" % (arch, why))
        w("")
    if a.mode == "full":
        w("Full fine-tuning: every layer trained (`cnnserve train --mode full`, BatchNorm frozen unless the "
          "recipe says otherwise), recipe flags `%s`, epochs %s (monkeys) / %s (fruits-360). PyTorch columns: "
          "`tools/torch_finetune.py` with the same recipe, split (dataset.c's seeded stratified split), "
          "augmentation kind (RandomResizedCrop + flip, its own random stream), optimizer, schedule, epochs, batch "
          "and BatchNorm mode on this machine; the thread counts and the machine's 1-minute load average during "
          "each run are in the tables (other work shared the 2 cores, so the times are upper bounds)."
          % (a.train_args or "(defaults)", a.epochs or "default", a.epochs_fruits or a.epochs or "default"))
        w("")
    w("Test sets:")
    for ds in datasets:
        w("- %s: %s." % (ds["name"], ds["test_what"]))
    w("")

    w("## Table III: parameters and FLOPs")
    w("")
    w("Ours are counted on the graph cnnserve builds (`GET /v1/models`; the ImageNet heads: 1000 classes, "
      "MobileNetV3-Small's file 1001). FLOPs here are multiply-accumulates per 224x224 (Inception v3: 299x299) "
      "image, as torchvision and the MobileNet papers count them.")
    w("")
    w("| model | params (ours) | params (torchvision) | params (paper) | GMACs (ours) | GFLOPS (torchvision) | FLOPs (paper) |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    base = reports.get("imagenet-sample")
    for arch in ARCHS:
        tv = TORCHVISION[arch]
        m = metric(base, arch)
        w("| %s | %s | %.2f M | n/a | %s | %.2f | n/a |" % (
            ARCH_NAME[arch], "%.2f M" % (m["params"] / 1e6) if m else "no weights", tv[0] / 1e6,
            "%.3f" % (m["macs"] / 1e9) if m else "no weights", tv[1]))
    w("")

    for ds in datasets:
        rep = reports.get(ds["name"])
        w("## %s" % ds["name"])
        w("")
        if a.mode == "full":
            full_table(w, ds, present, train)
        else:
            head_table(w, ds, present, train)
        test_table(w, ds, present, rep, train, a.mode)
        for stem, what in (("roc_%s" % ds["name"], "ROC curves (paper Figs 5/7/9)"),
                           ("training_%s" % ds["name"], "training curves (paper Figs 4/6/8)")):
            if stem + ".png" in figures:
                w("![%s, %s](figures/%s.png)" % (what, ds["name"], stem))
                w("")
    report_tail(w, present, reports, figures)
    return "\n".join(L) + "\n"


def head_table(w, ds, present, train):
    w("Fine-tuning (Table IV/VI analogue, this machine): wall time of `cnnserve train`, which computes the "
      "backbone features of every photo once and then trains the new last layer; best and final validation "
      "accuracy from its per-epoch log.")
    w("")
    w("| model | fine-tuning time | of which features | images/s (features) | epochs | best val acc | final val acc | final train / val loss | fine-tuning time (paper) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for arch in present:
        e = train[(ds["name"], arch)]
        lg = e.get("log")
        if not lg:
            w("| %s | failed: %s | | | | | | | n/a |" % (ARCH_NAME[arch], " ".join(e["tail"][-1:]) or "exit %d" % e["rc"]))
            continue
        vals = [ep.get("val_accuracy") for ep in lg.get("epochs", []) if ep.get("val_accuracy") is not None]
        feat = lg.get("features", {})
        fin = lg.get("final", {})
        w("| %s | %.1f s | %s | %s | %d | %s | %s | %s / %s | %s |" % (
            ARCH_NAME[arch], e["wall_s"], num(feat.get("seconds"), "%.1f s"), num(feat.get("images_per_s"), "%.1f"),
            len(lg.get("epochs", [])), pct(max(vals) if vals else None), pct(fin.get("val_accuracy")),
            num(fin.get("train_loss"), "%.3f"), num(fin.get("val_loss"), "%.3f"),
            "%d min" % PAPER_FT_MIN_FRUITS[arch] if ds["name"] == "fruits" else "n/a"))
    w("")


def full_table(w, ds, present, train):
    w("Full fine-tuning (Table IV/VI analogue, this machine): wall time of `cnnserve train --mode full` and its "
      "training images/s (training steps only), validation accuracy and loss from its per-epoch log, next to "
      "PyTorch 1.13 with the same recipe (validation top-1 / cross-entropy after the last epoch, training time, "
      "training images/s).")
    w("")
    w("| model | epochs | fine-tuning time | training images/s | threads, load | final val acc | final train / val loss | "
      "PyTorch val acc | PyTorch val loss | PyTorch training time | PyTorch images/s | PyTorch threads, load | "
      "val top-1 ours - PyTorch | fine-tuning time (paper) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for arch in present:
        e = train[(ds["name"], arch)]
        lg, tr = e.get("log"), e.get("torch") or {}
        tcols = "%s | %s | %s | %s | %s" % (pct(tr.get("val_accuracy")), num(tr.get("val_cross_entropy"), "%.4f"),
                                            num(tr.get("train_seconds"), "%.0f s"),
                                            num(tr.get("train_images_per_s"), "%.1f"),
                                            torch_threads_load(tr) if tr else "n/a")
        paper = "%d min" % PAPER_FT_MIN_FRUITS[arch] if ds["name"] == "fruits" else "n/a"
        ours_tl = threads_load(e["threads"], e["load"])
        if not lg:
            w("| %s | | failed: %s | | %s | | | %s | | %s |" % (
                ARCH_NAME[arch], " ".join(e["tail"][-1:]) or "exit %d" % e["rc"], ours_tl, tcols, paper))
            continue
        fin = lg.get("final", {})
        diff = "n/a"
        if fin.get("val_accuracy") is not None and tr.get("val_accuracy") is not None:
            diff = "%+.2f points" % (100 * (fin["val_accuracy"] - tr["val_accuracy"]))
        w("| %s | %d | %.0f s | %s | %s | %s | %s / %s | %s | %s | %s |" % (
            ARCH_NAME[arch], len(lg.get("epochs", [])), e["wall_s"], num(lg.get("train_images_per_s"), "%.1f"),
            ours_tl, pct(fin.get("val_accuracy")), num(fin.get("train_loss"), "%.3f"), num(fin.get("val_loss"), "%.4f"),
            tcols, diff, paper))
    w("")


def test_table(w, ds, present, rep, train, mode):
    w("Test (`cnnserve eval`): top-1/top-5, mean cross-entropy (nats), macro-averaged one-vs-rest AUC, test time "
      "per image (median decode + preprocess + inference, one image at a time on %s threads) and images/s of "
      "the whole pass." % ((rep or {}).get("threads", "?")))
    w("")
    full = mode == "full"
    w("| model | images | top-1 | top-5 | cross-entropy | macro AUC | ms / image | images/s | %stop-1 (paper) |"
      % ("top-1 (PyTorch, same recipe) | cross-entropy (PyTorch) | top-1 ours - PyTorch | " if full else ""))
    w("|---|---:|---:|---:|---:|---:|---:|---:|%s---:|" % ("---:|---:|---:|" if full else ""))
    for arch in present:
        m = metric(rep, arch)
        tr = train[(ds["name"], arch)].get("torch") or {}
        # monkeys: PyTorch's test-folder figures; fruits: its validation split (our test set there)
        tk = "test" if ds["name"] == "monkeys" else "val"
        tcols = ("%s | %s | " % (pct(tr.get(tk + "_accuracy")), num(tr.get(tk + "_cross_entropy"), "%.4f"))
                 if full else "")
        if full:
            diff = "n/a"
            if m and tr.get(tk + "_accuracy") is not None:
                diff = "%+.2f points" % (100 * (m["metrics"]["top1"] - tr[tk + "_accuracy"]))
            tcols += diff + " | "
        if not m:
            w("| %s | not evaluated | | | | | | | %sn/a |" % (ARCH_NAME[arch], tcols))
            continue
        mt, t = m["metrics"], m["timing"]
        ms = t["decode_ms"]["median"] + t["preprocess_ms"]["median"] + t["inference_ms"]["median"]
        w("| %s | %d | %s | %s | %.4f | %s | %.2f | %.1f | %sn/a |" % (
            ARCH_NAME[arch], m["images"], pct(mt["top1"]), pct(mt["top5"]), mt["cross_entropy"],
            num(mt["roc"]["macro"]["auc"], "%.5f"), ms, t["images_per_s"], tcols))
    w("")


def report_tail(w, present, reports, figures):
    base = reports.get("imagenet-sample")
    if base:
        w("## ImageNet sample (base models, 1000 photos, one per class)")
        w("")
        w("| model | top-1 | top-5 | cross-entropy | macro AUC | ms / image | top-1 (torchvision, ImageNet val) |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for arch in present:
            m = metric(base, arch)
            if not m:
                continue
            mt, t = m["metrics"], m["timing"]
            ms = t["decode_ms"]["median"] + t["preprocess_ms"]["median"] + t["inference_ms"]["median"]
            w("| %s | %s | %s | %.4f | %s | %.2f | %.2f %% |" % (ARCH_NAME[arch], pct(mt["top1"]), pct(mt["top5"]),
                                                            mt["cross_entropy"], num(mt["roc"]["macro"]["auc"], "%.5f"),
                                                            ms, TORCHVISION[arch][2]))
        w("")
    for stem, what in (("test_time_accuracy", "test time per image and test accuracy (paper Fig 10 a/b)"),
                       ("accuracy_vs_macs", "accuracy against compute")):
        if stem + ".png" in figures:
            w("## %s" % what[0].upper() + what[1:])
            w("")
            w("![%s](figures/%s.png)" % (what, stem))
            w("")


if __name__ == "__main__":
    sys.exit(main())
