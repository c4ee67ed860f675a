#!/usr/bin/python3
"""`make bench`: model latency of cnnserve next to PyTorch and ONNX Runtime, then the HTTP service
under wrk load; writes OUT_DIR/latest.json and OUT_DIR/latest.md.

Latency: per model, `cnnserve bench` (which also measures the sgemm peak), then the PyTorch peer at
each thread count, then the ONNX Runtime peer, one model after the other, so the three measurements
of a model lie close together in time on a shared, noisy machine. All three run the same weights on
the same fixed input (their logits are compared as a check). A peer that cannot be installed or run
is skipped with its reason in the results. Timing never makes this fail: the exit status is 1 only
when cnnserve itself could not run.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import bench_util

HERE = os.path.dirname(os.path.abspath(__file__))
ALL_MODELS = "mobilenet_v3_large,mobilenet_v3_small,shufflenet_v2_x1_0,alexnet,inception_v3"
PEERS = (("ours", "ours"), ("onnxruntime", "ORT"), ("pytorch", "PyTorch"))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=os.path.join(bench_util.REPO, "bin", "cnnserve"))
    p.add_argument("--weights-dir", default=os.path.join(bench_util.REPO, "cache", "ref"),
                   help="<model>.safetensors for every model (default: the random weights of `make ref`)")
    p.add_argument("--models", default=ALL_MODELS)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-seconds", type=int, default=30,
                   help="time cap per model, peer and thread count: the timed passes stop after this many "
                        "seconds once 10 are done (only an overloaded machine hits it; 0: no cap)")
    p.add_argument("--connections", default="1,4,16,64")
    p.add_argument("--wrk-duration", type=int, default=6, help="seconds per wrk case")
    p.add_argument("--shared", default=os.path.join(bench_util.REPO, "..", "shared"))
    p.add_argument("--cache-dir", default=os.path.join(bench_util.REPO, "cache", "bench"))
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--python", default="/usr/bin/python3", help="interpreter with torch for the PyTorch peer")
    p.add_argument("--no-peers", action="store_true", help="time cnnserve only")
    p.add_argument("--no-wrk", action="store_true", help="skip the load test")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite OUT_DIR/latest.md from OUT_DIR/latest.json")
    return p.parse_args(argv)


T_START = time.time()


def log(msg):
    print("bench: [%4.0f s] %s" % (time.time() - T_START, msg), flush=True)


def run(cmd, timeout, env=None, capture=False):
    """Runs cmd; returns (exit status or None on time-out/failure to start, captured stdout)."""
    try:
        r = subprocess.run(cmd, timeout=timeout, env=env, stdout=subprocess.PIPE if capture else None, text=True)
    except subprocess.TimeoutExpired:
        log("%s: timed out after %d s" % (os.path.basename(cmd[0]), timeout))
        return None, ""
    except OSError as e:
        log("%s: %s" % (cmd[0], e))
        return None, ""
    return r.returncode, r.stdout or ""


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def machine_info():
    info = {"cpu_model": "", "n_cpus": os.cpu_count(), "mem_gib": None, "host": os.uname().nodename}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
        with open("/proc/meminfo") as f:
            kib = next(int(l.split()[1]) for l in f if l.startswith("MemTotal:"))
            info["mem_gib"] = round(kib / 2 ** 20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    rc, rev = run(["git", "-C", bench_util.REPO, "describe", "--always", "--dirty"], 10, capture=True)
    info["git"] = rev.strip() if rc == 0 else None
    return info


# --- peers' set-up ---

def setup_ort(args):
    """Installs onnxruntime-node into bench/node_modules if needed and exports the ONNX models.
    Returns (onnx_dir, None) or (None, reason to skip)."""
    if not shutil.which("node") or not shutil.which("npm"):
        return None, "node/npm not installed (apt-get install nodejs npm)"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
        log("installing onnxruntime-node into bench/node_modules (CPU binaries ship in the package)")
        # ONNXRUNTIME_NODE_INSTALL=skip: the package's install script would fetch GPU binaries.
        env = dict(os.environ, ONNXRUNTIME_NODE_INSTALL="skip")
        rc, _ = run(["npm", "install", "--prefix", HERE, "--no-package-lock", "--no-audit", "--no-fund"], 600, env)
        if rc != 0:
            return None, "npm install onnxruntime-node failed (exit %s): no registry access?" % rc
    onnx_dir = os.path.join(args.cache_dir, "onnx")
    rc, out = run([args.python, os.path.join(HERE, "export_onnx.py"), "--weights-dir", args.weights_dir,
                   "--models", args.models, "--out-dir", onnx_dir], 900, capture=True)
    try:
        exported = json.loads(out)
    except ValueError:
        return None, "ONNX export failed (exit %s; it needs torch in %s)" % (rc, args.python)
    if not exported["models"]:
        return None, "ONNX export failed for every model: %s" % exported["errors"]
    return onnx_dir, None


def torch_skip_reason(python):
    rc, _ = run([python, "-c", "import torch, torchvision"], 120, capture=True)
    return None if rc == 0 else "%s cannot import torch and torchvision" % python


# --- latency ---

def bench_model(args, model, coretype, torch_skip, onnx_dir):
    """ours, PyTorch and ORT figures of one model: {"ours": cnnserve bench JSON, peer: JSON, ...}."""
    out = {}
    path = os.path.join(args.cache_dir, "ours_%s.json" % model)
    if os.path.exists(path):
        os.unlink(path)
    rc, _ = run([args.bin, "bench", "--weights-dir", args.weights_dir, "--models", model, "--threads", args.threads,
                 "--iters", str(args.iters), "--warmup", str(args.warmup), "--max-seconds", str(args.max_seconds),
                 "--json", path], 1200)
    out["ours"] = read_json(path) or {"error": "cnnserve bench exited with %s" % rc}
    if args.no_peers:
        return out
    if not coretype:
        coretype = (out["ours"].get("openblas") or {}).get("coretype_env")
    if torch_skip:
        out["pytorch"] = {"skipped": torch_skip}
    else:
        runs = []
        for n in args.threads.split(","):
            path = os.path.join(args.cache_dir, "torch_%s_%s.json" % (model, n))
            # OpenBLAS and OpenMP read their variables once, at load: one process per thread count.
            env = dict(os.environ, OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)
            if coretype:
                env["OPENBLAS_CORETYPE"] = coretype
            rc, _ = run([args.python, os.path.join(HERE, "peer_torch.py"), "--weights-dir", args.weights_dir,
                         "--models", model, "--threads", n, "--iters", str(args.iters), "--warmup",
                         str(args.warmup), "--max-seconds", str(args.max_seconds), "--json", path], 1200, env)
            runs.append(read_json(path) or {"error": "peer_torch.py exited with %s" % rc})
        out["pytorch"] = runs
    if not onnx_dir[0]:
        out["onnxruntime"] = {"skipped": onnx_dir[1]}
    else:
        path = os.path.join(args.cache_dir, "ort_%s.json" % model)
        rc, _ = run(["node", os.path.join(HERE, "peer_ort.js"), "--onnx-dir", onnx_dir[0], "--models", model,
                     "--threads", args.threads, "--iters", str(args.iters), "--warmup", str(args.warmup),
                     "--max-seconds", str(args.max_seconds), "--json", path], 1200)
        out["onnxruntime"] = read_json(path) or {"error": "peer_ort.js exited with %s" % rc}
    return out


def runs_by_threads(entry):
    return {r["threads"]: r for r in entry.get("runs", [])}


def merge_model(model, raw):
    """One model's row of latest.json: per peer {threads: run} or a reason, ratios, logits check."""
    row = {"model": model, "peers": {}, "notes": []}
    ours = raw["ours"]
    entry = next((m for m in ours.get("models", []) if m["model"] == model), None)
    if entry is None or "error" in entry:
        row["peers"]["ours"] = {"error": (entry or ours).get("error", "no result")}
    else:
        row.update(macs=entry["macs"], params=entry["params"], input_size=entry["input_size"])
        row["peers"]["ours"] = runs_by_threads(entry)
        row["sgemm"] = ours.get("sgemm")
    torch_raw = raw.get("pytorch")
    if isinstance(torch_raw, list):
        runs = {}
        for part in torch_raw:
            e = next((m for m in part.get("models", []) if m["model"] == model), None)
            if e and "runs" in e:
                runs.update(runs_by_threads(e))
            else:
                row["notes"].append("PyTorch: %s" % ((e or part).get("error") or part.get("skipped")))
            row["pytorch_env"] = {k: part.get(k) for k in ("version", "openblas_coretype", "openblas_corename")}
        row["peers"]["pytorch"] = runs
    elif torch_raw is not None:
        row["peers"]["pytorch"] = torch_raw
    ort_raw = raw.get("onnxruntime")
    if ort_raw is not None and "models" in ort_raw:
        e = next((m for m in ort_raw["models"] if m["model"] == model), None)
        row["peers"]["onnxruntime"] = runs_by_threads(e) if e and "error" not in e else {
            "error": (e or {}).get("error", ort_raw.get("skipped", "no result"))}
        row["ort_version"] = ort_raw.get("version")
    elif ort_raw is not None:
        row["peers"]["onnxruntime"] = ort_raw
    ours_runs = row["peers"]["ours"]
    row["ratios"], row["logits_check"] = {}, {}
    for peer in ("onnxruntime", "pytorch"):
        runs = row["peers"].get(peer)
        if not isinstance(runs, dict) or "error" in runs or "skipped" in runs or "error" in ours_runs:
            continue
        for t, r in runs.items():
            o = ours_runs.get(t)
            if not o:
                continue
            row["ratios"]["ours/%s %dT" % (peer, t)] = o["median_ms"] / r["median_ms"]
            diff = max(abs(a - b) for a, b in zip(o["logits_head"], r["logits_head"]))
            row["logits_check"]["%s %dT" % (peer, t)] = {"argmax_equal": o["argmax"] == r["argmax"],
                                                         "max_abs_diff_head": diff}
    return row


# --- markdown ---

def fmt_ms(run, iters):
    """Median; '*' marks a run that the time cap stopped before `iters` passes."""
    if not run:
        return "–"
    return "%.2f%s" % (run["median_ms"], "*" if run["iters"] < iters else "")


def latency_tables(rows, threads, iters):
    names = dict(PEERS)
    head = ["model", "GMACs"] + ["%s %dT" % (names[p], t) for p, _ in PEERS for t in threads]
    head += ["ours/ORT %dT" % t for t in threads] + ["ours/PyTorch %dT" % t for t in threads]
    head += ["ours GFLOP/s %dT (of sgemm peak)" % t for t in threads]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"], "%.3f" % (row["macs"] / 1e9) if "macs" in row else "–"]
        for peer, _ in PEERS:
            runs = row["peers"].get(peer)
            for t in threads:
                if not isinstance(runs, dict) or "error" in runs or "skipped" in runs:
                    cells.append("skipped" if isinstance(runs, dict) and "skipped" in runs else "n/a")
                else:
                    cells.append(fmt_ms(runs.get(t), iters))
        for peer in ("onnxruntime", "pytorch"):
            for t in threads:
                r = row["ratios"].get("ours/%s %dT" % (peer, t))
                cells.append("%.2f" % r if r is not None else "–")
        ours = row["peers"]["ours"]
        for t in threads:
            o = ours.get(t) if "error" not in ours else None
            cells.append("%.1f (%.0f%%)" % (o["gflops"], 100 * o["peak_ratio"]) if o else "–")
        lines.append("| " + " | ".join(cells) + " |")
    detail = ["| model | peer | threads | passes | median ms | p90 ms | p99 ms | min ms | load (1 min) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for peer, label in PEERS:
            runs = row["peers"].get(peer)
            if not isinstance(runs, dict) or "error" in runs or "skipped" in runs:
                continue
            for t in threads:
                r = runs.get(t)
                if r:
                    load = r.get("loadavg_before")
                    detail.append("| %s | %s | %d | %d | %.3f | %.3f | %.3f | %.3f | %s |" % (
                        row["model"], label, t, r["iters"], r["median_ms"], r["p90_ms"], r["p99_ms"], r["min_ms"],
                        "%.2f" % load[0] if load else "?"))
    return lines, detail


def wrk_table(cases):
    head = ["model", "image (decode scale)", "conns", "req/s", "x 1-conn", "p50 ms", "p99 ms", "non-2xx", "socket errors",
            "decode", "preprocess", "queue", "inference", "server total"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = {}
    for c in cases:
        if "wrk" not in c:
            lines.append("| %s | %s | %d | %s |" % (c["model"], c["image"], c["connections"], c.get("error")) +
                         " |" * (len(head) - 4))
            continue
        w = c["wrk"]
        key = (c["model"], c["image"])
        if c["connections"] == 1:
            base[key] = w["requests_per_s"]
        scale = "%.2f" % (w["requests_per_s"] / base[key]) if base.get(key) else "–"
        st = w.get("server_timings_ms", {})
        errs = sum(w["socket_errors"].values())
        lines.append("| " + " | ".join([
            c["model"], "%s (%s)" % (c["image"].replace("photo_", "").replace(".jpg", ""), w.get("decode_scale", "?")),
            str(c["connections"]),
            "%.1f" % w["requests_per_s"], scale, "%.1f" % w["latency_ms"]["p50"], "%.1f" % w["latency_ms"]["p99"],
            str(w["non_2xx"]), str(errs)] + ["%.2f" % st[s] if s in st else "–"
                                             for s in ("decode", "preprocess", "queue", "inference", "total")]) + " |")
    return lines


def write_markdown(path, res):
    threads = res["settings"]["threads"]
    m = res["machine"]
    lines = ["# cnnserve benchmark", "",
             "- date (UTC): %s to %s; git %s" % (res["started_utc"], res["finished_utc"], m.get("git")),
             "- machine: %s, %s CPUs, %s GiB, host %s" % (m["cpu_model"], m["n_cpus"], m["mem_gib"], m["host"]),
             "- load average (1/5/15 min): %s before, %s after the latency runs, %s after the load test"
             % (res["loadavg"]["start"], res["loadavg"]["after_latency"], res["loadavg"]["end"]),
             "- OpenBLAS core type for cnnserve and PyTorch: OPENBLAS_CORETYPE=%s (PyTorch's OpenBLAS reports %s); "
             "sgemm %d^3 peak: %s" % (res["openblas_coretype"], res.get("pytorch_openblas_corename"),
                                     res["settings"]["sgemm_n"], ", ".join(
                                         "%s GFLOP/s at %dT" % (round(v, 1), t)
                                         for t, v in sorted(res["sgemm_peak_gflops"].items()))),
             "- peers: ONNX Runtime %s (onnxruntime-node, CPU EP, intra-op threads = N, inter-op 1); "
             "PyTorch %s (eager, inference_mode, torch and OpenBLAS/OpenMP threads = N)"
             % (res["peer_versions"].get("onnxruntime"), res["peer_versions"].get("pytorch")),
             "- batch 1, %d warm-up + %d timed passes per model, peer and thread count (time cap %s s); same "
             "weights (%s) and "
             "same fixed input for all three; a model's three peers run one after the other, then the next model"
             % (res["settings"]["warmup"], res["settings"]["iters"], res["settings"].get("max_seconds", 0),
                res["settings"]["weights_dir"]),
             "- GFLOP/s = 2 x MACs / median; its share is of the sgemm peak that the same `cnnserve bench` "
             "process measured just before and after that model", ""]
    for peer, reason in res["skipped"].items():
        lines.append("**%s skipped:** %s" % (peer, reason))
        lines.append("")
    iters = res["settings"]["iters"]
    table, detail = latency_tables(res["latency"], threads, iters)
    lines += ["## Model latency (median ms; ratio < 1: cnnserve faster)", ""] + table + [""]
    if any("*" in line for line in table[2:]):
        lines += ["\\* stopped by the %d s time cap before %d passes; the "
                  "Percentiles table gives the passes done." % (res["settings"]["max_seconds"], iters), ""]
    checks = [(r["model"], k, v) for r in res["latency"] for k, v in r["logits_check"].items()]
    bad = [c for c in checks if not c[2]["argmax_equal"] or c[2]["max_abs_diff_head"] > 1e-2]
    lines += ["Logits check (first 8 logits and argmax vs ours): %d of %d runs agree within 1e-2%s" % (
        len(checks) - len(bad), len(checks), "; differing: " + ", ".join(
            "%s %s" % (c[0], c[1]) for c in bad) if bad else ""), ""]
    lines += ["### Percentiles", ""] + detail + [""]
    if "wrk" in res:
        w = res["wrk"]
        lines += ["## Service under load (wrk, %d s per case, %s workers)" % (
            res["settings"]["wrk_duration_s"], w.get("workers")), ""]
        if w.get("skipped"):
            lines += ["Skipped: %s" % w["skipped"], ""]
        else:
            lines += ["Images: %s. Server timings are the averages of `timings_ms` over every response (ms); "
                      "`x 1-conn` is the request rate relative to 1 connection." % ", ".join(
                          "%s (%d x %d, %d bytes)" % (os.path.basename(i["path"]), i["width"], i["height"],
                                                       i["bytes"]) for i in w["images"].values()), ""]
            lines += wrk_table(w["cases"]) + [""]
            lines += ["Every response 2xx: %s." % ("yes" if w.get("all_2xx") else "**no** (see non-2xx above)"), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


# --- load test ---

def run_load_test(args):
    out = {}
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    rc, stdout = run([args.python, os.path.join(HERE, "make_images.py"), args.shared, args.cache_dir], 300,
                     capture=True)
    if rc != 0:
        return {"skipped": "no load-test images (make_images.py exit %s: needs ../shared photos and PIL)" % rc}
    out["images"] = json.loads(stdout)
    path = os.path.join(args.cache_dir, "wrk.jsonl")
    images = ",".join(i["path"] for i in out["images"].values())
    # Bounded: each case is killed after its duration + 60 s, the whole run after 30 min.
    rc, _ = run(["bash", os.path.join(HERE, "run_wrk.sh"), "--bin", args.bin, "--weights-dir", args.weights_dir,
                 "--models", args.models, "--images", images, "--connections", args.connections, "--duration",
                 str(args.wrk_duration), "--out", path, "--log", os.path.join(args.cache_dir, "server.log")], 1800)
    cases = []
    try:
        with open(path) as f:
            cases = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        pass
    if rc != 0 and not cases:
        return {"skipped": "run_wrk.sh failed (exit %s); see %s/server.log" % (rc, args.cache_dir)}
    out["cases"] = cases
    out["workers"] = cases[0].get("workers") if cases else None
    out["all_2xx"] = all(c.get("wrk", {}).get("non_2xx", 1) == 0 for c in cases)
    return out


def rewrite_report(out_dir):
    """latest.md again from latest.json (JSON turned the thread-count keys into strings)."""
    res = read_json(os.path.join(out_dir, "latest.json"))
    if res is None:
        log("no %s/latest.json" % out_dir)
        return 1
    res["sgemm_peak_gflops"] = {int(t): v for t, v in res["sgemm_peak_gflops"].items()}
    for row in res["latency"]:
        for peer, runs in row["peers"].items():
            if isinstance(runs, dict) and "error" not in runs and "skipped" not in runs:
                row["peers"][peer] = {int(t): r for t, r in runs.items()}
    write_markdown(os.path.join(out_dir, "latest.md"), res)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        return rewrite_report(args.out_dir)
    t_start = time.time()
    os.makedirs(args.cache_dir, exist_ok=True)
    os.makedirs(args.out_dir, exist_ok=True)
    threads = [int(t) for t in args.threads.split(",")]
    res = {"started_utc": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine_info(),
           "loadavg": {"start": bench_util.loadavg()}, "skipped": {}, "peer_versions": {},
           "settings": {"threads": threads, "iters": args.iters, "warmup": args.warmup,
                        "max_seconds": args.max_seconds,
                        "weights_dir": os.path.relpath(args.weights_dir, bench_util.REPO),
                        "wrk_duration_s": args.wrk_duration, "connections": args.connections}}
    if not os.access(args.bin, os.X_OK):
        log("%s not built: run make" % args.bin)
        return 1
    torch_skip, onnx = None, (None, "not run (--no-peers)")
    if not args.no_peers:
        torch_skip = torch_skip_reason(args.python)
        onnx = setup_ort(args)
        for peer, reason in (("pytorch", torch_skip), ("onnxruntime", onnx[1])):
            if reason:
                res["skipped"][peer] = reason
                log("%s skipped: %s" % (peer, reason))
    rows, coretype, raws = [], None, []
    for model in args.models.split(","):
        log("latency: %s" % model)
        raw = bench_model(args, model, coretype, torch_skip, onnx)
        coretype = coretype or (raw["ours"].get("openblas") or {}).get("coretype_env")
        raws.append(raw)
        rows.append(merge_model(model, raw))
    res["loadavg"]["after_latency"] = bench_util.loadavg()
    res["latency"] = rows
    ours_ok = [r for r in raws if "models" in r["ours"]]
    if ours_ok:
        first = ours_ok[0]["ours"]
        res["openblas_coretype"] = first["openblas"]["coretype_env"]
        res["openblas_ours"] = first["openblas"]
        res["settings"]["sgemm_n"] = first["sgemm_n"]
        res["sgemm_peak_gflops"] = {t: max(s["peak_gflops"] for r in ours_ok for s in r["ours"]["sgemm"]
                                           if s["threads"] == t) for t in threads}
    else:
        res.update(openblas_coretype=None, sgemm_peak_gflops={})
        res["settings"]["sgemm_n"] = 0
    for row in rows:
        res["peer_versions"].setdefault("pytorch", (row.get("pytorch_env") or {}).get("version"))
        res.setdefault("pytorch_openblas_corename", (row.get("pytorch_env") or {}).get("openblas_corename"))
        res["peer_versions"].setdefault("onnxruntime", row.get("ort_version"))
    if not args.no_wrk:
        log("load test")
        res["wrk"] = run_load_test(args)
        if res["wrk"].get("skipped"):
            log("load test skipped: " + res["wrk"]["skipped"])
    res["loadavg"]["end"] = bench_util.loadavg()
    res["finished_utc"] = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    res["elapsed_s"] = round(time.time() - t_start, 1)
    with open(os.path.join(args.out_dir, "latest.json"), "w") as f:
        json.dump(res, f, indent=1)
    write_markdown(os.path.join(args.out_dir, "latest.md"), res)
    log("wrote %s/latest.json and latest.md in %.0f s" % (args.out_dir, res["elapsed_s"]))
    with open(os.path.join(args.out_dir, "latest.md")) as f:
        print(f.read())
    return 0 if ours_ok else 1


if __name__ == "__main__":
    sys.exit(main())
