#!/usr/bin/python3
"""`make bench`, training section (issue #13 part 3): training images/s at batch 32 (224x224, 299x299
for Inception v3), forward + backward + SGD update, BatchNorm frozen, of `cnnserve bench --train` next to
PyTorch 1.13 (bench/peer_torch_train.py) at 1 and 2 threads, all five models, in the same run: per model,
R rounds (--rounds) of [ours at every thread count, PyTorch at every thread count] in the same order
each round (ABAB), each a fresh process with its own warm-up step and --steps timed steps. The figures
are medians over the pooled timed steps of all rounds; the ratio is ours / PyTorch images/s; GFLOP/s
counts 3x the forward multiply-accumulates (x2 flops) per image, set against the sgemm peak that
`cnnserve bench` measures at the same thread count in the same run.

Writes OUT_DIR/train.json and OUT_DIR/train.md. Timing never makes this fail: the exit status is 1
only when cnnserve itself could not run."""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import bench_util

HERE = os.path.dirname(os.path.abspath(__file__))
ALL_MODELS = "mobilenet_v3_large,mobilenet_v3_small,shufflenet_v2_x1_0,alexnet,inception_v3"
ARCH_NAME = {"mobilenet_v3_large": "MobileNetV3-Large", "mobilenet_v3_small": "MobileNetV3-Small",
             "shufflenet_v2_x1_0": "ShuffleNetV2 1.0x", "alexnet": "AlexNet", "inception_v3": "Inception v3"}
# The goal: ours / PyTorch images/s.
GOAL = {"mobilenet_v3_large": 1.5, "mobilenet_v3_small": 1.5, "shufflenet_v2_x1_0": 1.5, "alexnet": 1.0,
        "inception_v3": 1.0}
T_START = time.time()


def log(msg):
    print("bench-train: [%4.0f s] %s" % (time.time() - T_START, msg), flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=os.path.join(bench_util.REPO, "bin", "cnnserve"))
    p.add_argument("--weights-dir", default=os.path.join(bench_util.REPO, "cache", "ref"))
    p.add_argument("--models", default=ALL_MODELS)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="timed steps per process (round)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cache-dir", default=os.path.join(bench_util.REPO, "cache", "bench"))
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per process")
    return p.parse_args(argv)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run(cmd, timeout, env=None):
    try:
        return subprocess.run(cmd, timeout=timeout, env=env).returncode
    except subprocess.TimeoutExpired:
        log("%s: timed out after %d s" % (os.path.basename(cmd[0]), timeout))
    except OSError as e:
        log("%s: %s" % (cmd[0], e))
    return None


def ours_round(args, model, k):
    path = os.path.join(args.cache_dir, "train_ours_%s_r%d.json" % (model, k))
    if os.path.exists(path):
        os.unlink(path)
    rc = run([args.bin, "bench", "--train", "--weights-dir", args.weights_dir, "--models", model, "--threads",
              args.threads, "--batch", str(args.batch), "--iters", str(args.steps), "--warmup", str(args.warmup),
              "--json", path], args.timeout)
    return read_json(path) or {"error": "cnnserve bench --train exited with %s" % rc}


def torch_round(args, model, t, k, coretype):
    path = os.path.join(args.cache_dir, "train_torch_%s_%d_r%d.json" % (model, t, k))
    if os.path.exists(path):
        os.unlink(path)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
    env.pop("OMP_WAIT_POLICY", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    rc = run([args.python, os.path.join(HERE, "peer_torch_train.py"), "--weights-dir", args.weights_dir, "--models",
              model, "--threads", str(t), "--batch", str(args.batch), "--steps", str(args.steps), "--warmup",
              str(args.warmup), "--json", path], args.timeout, env)
    return read_json(path) or {"error": "peer_torch_train.py exited with %s" % rc}


def ours_runs(result, model):
    """{threads: run} of one model in a `cnnserve bench --train` JSON, or an error string."""
    if "error" in result:
        return result["error"]
    entry = next((m for m in result.get("models", []) if m.get("model") == model), None)
    if not entry or "error" in entry:
        return (entry or {}).get("error", "no result")
    return {r["threads"]: r for r in entry["runs"]}


def pooled(runs):
    """Median over the pooled timed steps of several rounds' runs (each with times_ms and batch)."""
    times = [t for r in runs for t in r["times_ms"]]
    stats = bench_util.timing_stats(times)
    stats["images_per_s"] = runs[0]["batch"] * 1000.0 / stats["median_ms"]
    stats["rounds_median_ms"] = [r["median_ms"] for r in runs]
    stats["loadavg_before"] = [r.get("loadavg_before") for r in runs]
    return stats


def summarize(model, rounds, threads):
    """One row per thread count: ours and PyTorch pooled, ratio, GFLOP/s and share of the sgemm peak."""
    rows = []
    for t in threads:
        row = {"model": model, "threads": t}
        ours = [ours_runs(r["ours"], model) for r in rounds]
        ok = [o[t] for o in ours if isinstance(o, dict) and t in o]
        if ok:
            row["ours"] = pooled(ok)
            macs = ok[0]["macs"]
            row["macs"] = macs
            row["ours"]["gflops"] = 3 * 2 * macs * row["ours"]["images_per_s"] / 1e9
            peaks = [o[t]["sgemm_peak_gflops"] for o in ours if isinstance(o, dict) and t in o]
            row["sgemm_peak_gflops"] = max(peaks)
            row["ours"]["peak_ratio"] = row["ours"]["gflops"] / row["sgemm_peak_gflops"]
        else:
            row["ours"] = {"error": next((o for o in ours if isinstance(o, str)), "no run")}
        peer = [r["pytorch"].get(t) for r in rounds]
        pok = [next((m for m in p.get("models", []) if m.get("model") == model and "error" not in m), None)
               for p in peer if p]
        pok = [p for p in pok if p]
        if pok:
            row["pytorch"] = pooled(pok)
            if "macs" in row:
                row["pytorch"]["gflops"] = 3 * 2 * row["macs"] * row["pytorch"]["images_per_s"] / 1e9
                row["pytorch"]["peak_ratio"] = row["pytorch"]["gflops"] / row["sgemm_peak_gflops"]
        else:
            errs = [p.get("skipped") or next((m.get("error") for m in p.get("models", []) if "error" in m), None)
                    or p.get("error") for p in peer if p]
            row["pytorch"] = {"error": next((e for e in errs if e), "no run")}
        if "images_per_s" in row["ours"] and "images_per_s" in row["pytorch"]:
            row["ratio"] = row["ours"]["images_per_s"] / row["pytorch"]["images_per_s"]
        rows.append(row)
    return rows


def write_markdown(path, res):
    lines = ["# Training throughput (make bench, training section)", "",
             "Started %s; batch %d, forward + backward + SGD update (momentum 0.9, weight decay 1e-4), BatchNorm "
             "frozen, dropout as in training, 224x224 (Inception v3 299x299, no auxiliary classifier); weights %s. "
             "%d rounds per model, each a fresh process per runner with %d warm-up and %d timed steps, ours then "
             "PyTorch in every round (ABAB); medians over the pooled steps. GFLOP/s = 3 x 2 x forward MACs x "
             "images/s; peak = OpenBLAS sgemm at the same thread count, same run. Load average %s at the start, "
             "%s at the end (2 cores shared with other work: absolute figures are noisy, the same-run ratios "
             "are the comparison)." % (res["started_utc"], res["settings"]["batch"], res["settings"]["weights_dir"],
                                       res["settings"]["rounds"], res["settings"]["warmup"], res["settings"]["steps"],
                                       res["loadavg"]["start"], res["loadavg"].get("end")),
             "", "| model | threads | ours images/s | PyTorch images/s | ours / PyTorch | goal | ours GFLOP/s "
             "(of peak) | PyTorch GFLOP/s (of peak) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(r, key, fmt):
        return fmt % r[key] if key in r else "n/a (%s)" % r.get("error", "?")[:80]

    for row in res["rows"]:
        o, p = row["ours"], row["pytorch"]
        gf = ("%.1f (%.0f %%)" % (o["gflops"], 100 * o["peak_ratio"])) if "gflops" in o else "n/a"
        pgf = ("%.1f (%.0f %%)" % (p["gflops"], 100 * p["peak_ratio"])) if "gflops" in p else "n/a"
        lines.append("| %s | %d | %s | %s | %s | %.1fx | %s | %s |" % (
            ARCH_NAME.get(row["model"], row["model"]), row["threads"], cell(o, "images_per_s", "%.2f"),
            cell(p, "images_per_s", "%.2f"), "%.2fx" % row["ratio"] if "ratio" in row else "n/a",
            GOAL.get(row["model"], 1.0), gf, pgf))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.cache_dir, exist_ok=True)
    os.makedirs(args.out_dir, exist_ok=True)
    threads = [int(t) for t in args.threads.split(",")]
    res = {"started_utc": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
           "loadavg": {"start": bench_util.loadavg()},
           "settings": {"threads": threads, "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
                        "rounds": args.rounds, "weights_dir": os.path.relpath(args.weights_dir, bench_util.REPO)},
           "rounds": {}, "rows": []}
    if not os.access(args.bin, os.X_OK):
        log("%s not built: run make" % args.bin)
        return 1
    coretype, any_ours = None, False
    for model in args.models.split(","):
        rounds = []
        for k in range(args.rounds):
            log("%s round %d/%d" % (model, k + 1, args.rounds))
            rnd = {"round": k, "loadavg_before": bench_util.loadavg(), "ours": ours_round(args, model, k), "pytorch": {}}
            any_ours = any_ours or "models" in rnd["ours"]
            coretype = coretype or (rnd["ours"].get("openblas") or {}).get("coretype_env")
            if not args.no_peers:
                for t in threads:
                    rnd["pytorch"][t] = torch_round(args, model, t, k, coretype)
            rounds.append(rnd)
        res["rounds"][model] = rounds
        res["rows"] += summarize(model, rounds, threads)
        for row in res["rows"][-len(threads):]:
            log("%s %dT: ours %s images/s, PyTorch %s, ratio %s" % (
                model, row["threads"], "%.2f" % row["ours"]["images_per_s"] if "images_per_s" in row["ours"] else
                row["ours"].get("error"), "%.2f" % row["pytorch"]["images_per_s"] if "images_per_s" in row["pytorch"]
                else row["pytorch"].get("error"), "%.2f" % row["ratio"] if "ratio" in row else "n/a"))
    res["loadavg"]["end"] = bench_util.loadavg()
    with open(os.path.join(args.out_dir, "train.json"), "w") as f:
        json.dump(res, f, indent=1)
    write_markdown(os.path.join(args.out_dir, "train.md"), res)
    log("wrote %s/train.json and train.md" % args.out_dir)
    return 0 if any_ours else 1


if __name__ == "__main__":
    sys.exit(main())
