#!/usr/bin/python3
"""PyTorch peer of `cnnserve bench`: eager torchvision models under torch.inference_mode(), batch 1,
one thread configuration per process: torch.set_num_threads(--threads), while OpenBLAS and OpenMP
read their variables when loaded, so bench/run_bench.py sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS
(and OMP_WAIT_POLICY in one configuration) and the same OPENBLAS_CORETYPE as ours in the
environment. Same weights (the safetensors file) and the same fixed input as ours.

Writes one JSON object: {"peer": "pytorch", "config", "version", "threads", "torch_threads",
"openblas_threads", "openblas_corename", the variables above, "models": [...]}; each run has every
timed pass in "times_ms" (in the order measured).
"""

import argparse
import json
import os
import sys
import time

import bench_util


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights-dir", required=True)
    p.add_argument("--models", required=True, help="comma list")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=0,
                   help="time cap as `cnnserve bench --max-seconds` (0: none)")
    p.add_argument("--min-passes", type=int, default=bench_util.MIN_CAPPED_ITERS,
                   help="timed passes done even when the time cap has run out")
    p.add_argument("--config", default="", help="name of the thread configuration (recorded in the JSON)")
    p.add_argument("--json", required=True, help="output file")
    return p.parse_args(argv)


def bench_model(torch, arch, path, args):
    model, size, _ = bench_util.load_torch_model(arch, path)
    x = torch.from_numpy(bench_util.fixed_input(size))
    times = []
    cap_ms = args.max_seconds * 1000.0
    with torch.inference_mode():
        t_start = time.perf_counter_ns()
        for i in range(args.warmup):
            if i and cap_ms > 0 and (time.perf_counter_ns() - t_start) / 1e6 > cap_ms / 6:
                break
            model(x)
        load = bench_util.loadavg()
        while len(times) < args.iters and not (
                cap_ms > 0 and len(times) >= args.min_passes and sum(times) > cap_ms):
            t0 = time.perf_counter_ns()
            y = model(x)
            times.append((time.perf_counter_ns() - t0) / 1e6)
    logits = y[0].tolist()
    run = bench_util.timing_stats(times)
    run.update(threads=args.threads, loadavg_before=load, argmax=max(range(len(logits)), key=logits.__getitem__),
               logits_head=logits[:8], times_ms=times)
    return {"model": arch, "runs": [run]}


def main(argv=None):
    args = parse_args(argv)
    out = {"peer": "pytorch", "config": args.config, "threads": args.threads, "models": []}
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        out[var.lower()] = os.environ.get(var)
    try:
        import torch
        import torchvision
    except ImportError as e:
        out["skipped"] = "PyTorch is not installed for %s (%s)" % (sys.executable, e)
        print("peer_torch: skipped: " + out["skipped"], file=sys.stderr)
    else:
        torch.set_num_threads(args.threads)
        out.update(version=torch.__version__, torchvision=torchvision.__version__,
                   torch_threads=torch.get_num_threads(), openblas_threads=bench_util.openblas_num_threads(),
                   openblas_corename=bench_util.openblas_corename())
        for arch in args.models.split(","):
            path = os.path.join(args.weights_dir, arch + ".safetensors")
            try:
                entry = bench_model(torch, arch, path, args)
            except Exception as e:  # one broken model must not lose the others' figures
                entry = {"model": arch, "error": "%s: %s" % (type(e).__name__, e)}
                print("peer_torch: %s: %s" % (arch, entry["error"]), file=sys.stderr)
            else:
                r = entry["runs"][0]
                print("pytorch %-20s %dT %s median %8.3f ms  p90 %8.3f  p99 %8.3f  (%d passes)"
                      % (arch, args.threads, args.config, r["median_ms"], r["p90_ms"], r["p99_ms"], r["iters"]), flush=True)
            out["models"].append(entry)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
