#!/usr/bin/python3
"""PyTorch peer of `cnnserve bench --train`: training steps (forward + cross-entropy + backward +
torch.optim.SGD update, momentum 0.9, weight decay 1e-4) of torchvision models at batch B
(default 32), BatchNorm frozen (BN modules in eval mode, gamma/beta trained), dropout as in training,
Inception v3 without the auxiliary classifier. Same weights file and input as ours: every image of the
batch is bench_util.fixed_input, labels i mod classes. One thread configuration per process
(torch.set_num_threads(--threads); bench/run_bench_train.py sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS
and OPENBLAS_CORETYPE).

Writes one JSON object: {"peer": "pytorch", "threads", "version", "models": [{"model", "batch",
"times_ms" (every timed step), "median_ms", "images_per_s", "loss_first", "loss_last"}]}."""

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
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    p.add_argument("--json", required=True, help="output file")
    return p.parse_args(argv)


def bench_model(torch, arch, path, args):
    model, size, n_classes = bench_util.load_torch_model(arch, path, train=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    x = torch.from_numpy(bench_util.fixed_input(size)).expand(args.batch, 3, size, size).contiguous()
    y = torch.arange(args.batch) % n_classes
    times, losses = [], []
    load = bench_util.loadavg()
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter_ns()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        dt = (time.perf_counter_ns() - t0) / 1e6
        losses.append(float(loss))
        if i >= args.warmup:
            times.append(dt)
    run = bench_util.timing_stats(times)
    run.update(model=arch, batch=args.batch, threads=args.threads, loadavg_before=load, times_ms=times,
               images_per_s=args.batch * 1000.0 / run["median_ms"], loss_first=losses[0], loss_last=losses[-1])
    return run


def main(argv=None):
    args = parse_args(argv)
    out = {"peer": "pytorch", "threads": args.threads, "batch": args.batch, "models": []}
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        out[var.lower()] = os.environ.get(var)
    try:
        import torch
        import torchvision
    except ImportError as e:
        out["skipped"] = "PyTorch is not installed for %s (%s)" % (sys.executable, e)
        print("peer_torch_train: skipped: " + out["skipped"], file=sys.stderr)
    else:
        torch.set_num_threads(args.threads)
        out.update(version=torch.__version__, torchvision=torchvision.__version__,
                   torch_threads=torch.get_num_threads(), openblas_corename=bench_util.openblas_corename())
        for arch in args.models.split(","):
            try:
                entry = bench_model(torch, arch, os.path.join(args.weights_dir, arch + ".safetensors"), args)
            except Exception as e:  # one broken model must not lose the others' figures
                entry = {"model": arch, "error": "%s: %s" % (type(e).__name__, e)}
                print("peer_torch_train: %s: %s" % (arch, entry["error"]), file=sys.stderr)
            else:
                print("pytorch train %-20s %dT batch %d: median %9.1f ms/step, %6.2f images/s (%d steps)"
                      % (arch, args.threads, args.batch, entry["median_ms"], entry["images_per_s"], entry["iters"]),
                      flush=True)
            out["models"].append(entry)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
