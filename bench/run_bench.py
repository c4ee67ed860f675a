#!/usr/bin/python3
"""`make bench`: model latency of cnnserve next to PyTorch and ONNX Runtime, the image intake
(decode + preprocess per image size) next to PIL + torchvision (intake_bench.py), then the HTTP
service under wrk load; writes OUT_DIR/latest.json and OUT_DIR/latest.md.

Latency: per model, in R rounds (--rounds): `cnnserve bench` (which also measures the sgemm peak),
the PyTorch peer at each thread count and configuration, the ONNX Runtime peer and, for the mobile
models, the XNNPACK peer (bench/peer_xnnpack.c), in the reverse order in every other round (ABBA), one model after the other, so the measurements of a model lie
close together in time on a shared, noisy machine and a load change lands on every peer alike. Each
round is a fresh process per runner with its own warm-up and 1/R of the timed passes and of the time
cap; the figures are over the pooled passes of all rounds. All run the same weights on the same
fixed input (their logits are compared as a check; the XNNPACK peer also compares all its logits with
ours in-process). A peer that cannot be installed or run
is skipped with its reason in the results. Timing never makes this fail: the exit status is 1 only
when cnnserve itself could not run.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import bench_util
import intake_bench
import report_md
from bench_util import PEERS, TORCH_CONFIGS, XNNPACK_MODELS, best_config

HERE = os.path.dirname(os.path.abspath(__file__))
ALL_MODELS = "mobilenet_v3_large,mobilenet_v3_small,shufflenet_v2_x1_0,alexnet,inception_v3"
PEER_KEYS = tuple(key for key, _ in PEERS if key != "ours")


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
                   help="time cap per model, peer and thread count, split over the rounds: a round's timed "
                        "passes stop after max-seconds / rounds seconds once 10 are done (only an overloaded "
                        "machine hits it; 0: no cap)")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds per model, peer order reversed in every other round; the timed passes are "
                        "split over them")
    p.add_argument("--connections", default="1,4,16,64")
    p.add_argument("--wrk-duration", type=int, default=10, help="seconds per wrk case (64 connections on a 4000x3000 photo need several 3 s waves)")
    p.add_argument("--shared", default=os.path.join(bench_util.REPO, "..", "shared"))
    p.add_argument("--cache-dir", default=os.path.join(bench_util.REPO, "cache", "bench"))
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--python", default="/usr/bin/python3", help="interpreter with torch for the PyTorch peer")
    p.add_argument("--xnnpack-bin", default=os.path.join(bench_util.REPO, "build", "bench", "peer_xnnpack"),
                   help="the XNNPACK peer (make builds it where libxnnpack-dev is installed)")
    p.add_argument("--no-peers", action="store_true", help="time cnnserve only")
    p.add_argument("--peers", default=",".join(PEER_KEYS),
                   help="comma list of the peers to run next to ours (default: all of %s); the others are "
                        "reported as not selected" % ", ".join(PEER_KEYS))
    p.add_argument("--layer-prof", default=os.path.join(bench_util.REPO, "build", "tests", "layer_prof"),
                   help="the layer profiler (make build/tests/layer_prof); missing: no layer profile")
    p.add_argument("--prof-iters", type=int, default=50, help="passes of the layer profile per model and thread count")
    p.add_argument("--no-wrk", action="store_true", help="skip the load test")
    p.add_argument("--no-batching", action="store_true", help="skip the dynamic batching comparison")
    p.add_argument("--only-batching", action="store_true",
                   help="run only the dynamic batching comparison (wrk, batching off/on alternating)")
    p.add_argument("--batch-connections", default="16,64")
    p.add_argument("--batch-rounds", type=int, default=2,
                   help="off/on pairs per model, alternating the order (off,on then on,off)")
    p.add_argument("--batch-flags", default="--batch-models all --batch-max 8",
                   help="serve flags of the batching-on runs (off: --batch-max 1)")
    p.add_argument("--no-intake", action="store_true", help="skip the intake (decode + preprocess) comparison")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite OUT_DIR/latest.md from OUT_DIR/latest.json")
    args = p.parse_args(argv)
    unknown = set(args.peers.split(",")) - set(PEER_KEYS)
    if unknown:
        p.error("--peers: unknown %s (known: %s)" % (", ".join(sorted(unknown)), ", ".join(PEER_KEYS)))
    if not 1 <= args.rounds <= args.iters:
        p.error("--rounds must be between 1 and --iters")
    return args


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


def xnnpack_skip_reason(path):
    """None when the XNNPACK peer can run, else why not."""
    if os.access(path, os.X_OK):
        return None
    if not os.path.isfile("/usr/include/xnnpack.h") or not os.path.isfile("/usr/include/pthreadpool.h"):
        return ("libxnnpack-dev is not installed (apt-get install libxnnpack-dev libpthreadpool-dev, or make deps), "
                "so %s was not built" % os.path.relpath(path, bench_util.REPO))
    return "%s is not built (make %s)" % (path, os.path.relpath(path, bench_util.REPO))


def xnnpack_version():
    """Debian's libxnnpack0 version (XNNPACK has no version call), or None."""
    rc, out = run(["dpkg-query", "-W", "-f=${Version}", "libxnnpack0"], 30, capture=True)
    return "libxnnpack0 " + out.strip() if rc == 0 and out.strip() else None


def torch_skip_reason(python):
    rc, _ = run([python, "-c", "import torch, torchvision"], 120, capture=True)
    return None if rc == 0 else "%s cannot import torch and torchvision" % python


# --- latency ---

# The N-thread configurations of one round share one peer's time cap, and a capped one stops after
# this many passes (not 10): a configuration that hits a ~2 s-per-pass stall (see the report) would
# otherwise take minutes of `make bench`.
TORCH_NT_MIN_PASSES = 5


def torch_round_cap(max_seconds, rounds, threads):
    """(time cap in s, passes done even when capped) of one PyTorch process in one round."""
    if threads == 1:
        return round_cap(max_seconds, rounds), bench_util.MIN_CAPPED_ITERS
    return round_cap(max_seconds, rounds * len(TORCH_CONFIGS)), TORCH_NT_MIN_PASSES


def torch_configs(threads):
    """(name, description, environment) of each PyTorch configuration at this thread count."""
    chosen = TORCH_CONFIGS if threads > 1 else TORCH_CONFIGS[:1]
    return [(name, desc, {k: str(v) for k, v in env(threads).items()}) for name, desc, env in chosen]


def split_passes(total, rounds):
    """Timed passes of each round: total split as evenly as possible (the first rounds get the rest)."""
    return [total // rounds + (1 if k < total % rounds else 0) for k in range(rounds)]


def round_cap(max_seconds, rounds):
    """Time cap of one round in whole seconds (`cnnserve bench` takes an integer): cap / rounds, rounded
    up; 0 stays 0 (no cap)."""
    return -(-max_seconds // rounds) if max_seconds > 0 else 0


def round_jobs(threads, k, with_peers):
    """Runner jobs of round k in the order they run: ours, PyTorch (per thread count and
    configuration), ORT, XNNPACK; reversed in every other round (ABBA), so a drift in the machine's
    load lands on every peer alike."""
    jobs = [("ours", None, None)]
    if with_peers:
        jobs += [("pytorch", t, name) for t in threads for name, _, _ in torch_configs(t)]
        jobs.append(("onnxruntime", None, None))
        jobs.append(("xnnpack", None, None))
    return jobs if k % 2 == 0 else jobs[::-1]


def job_label(job):
    peer, t, config = job
    return "PyTorch %dT %s" % (t, config) if peer == "pytorch" else dict(PEERS)[peer]


def bench_model(args, model, coretype, skipped, onnx_dir):
    """Every round of one model: {"rounds": [{"round", "order", "loadavg_before", "iters", "ours": cnnserve
    bench JSON, "pytorch": [{"threads", "config", "result": peer JSON}], "onnxruntime": peer JSON}]}."""
    threads = [int(t) for t in args.threads.split(",")]
    cap = round_cap(args.max_seconds, args.rounds)
    out = {"rounds": []}
    for k, iters in enumerate(split_passes(args.iters, args.rounds)):
        jobs = [j for j in round_jobs(threads, k, not args.no_peers) if j[0] not in skipped]
        log("latency: %s round %d/%d: %s" % (model, k + 1, args.rounds, ", ".join(map(job_label, jobs))))
        rnd = {"round": k, "order": [job_label(j) for j in jobs], "loadavg_before": bench_util.loadavg(),
               "iters": iters, "pytorch": []}
        common = ["--iters", str(iters), "--warmup", str(args.warmup), "--max-seconds", str(cap)]
        for peer, t, config in jobs:
            if peer == "ours":
                path = os.path.join(args.cache_dir, "ours_%s_r%d.json" % (model, k))
                if os.path.exists(path):
                    os.unlink(path)
                rc, _ = run([args.bin, "bench", "--weights-dir", args.weights_dir, "--models", model, "--threads",
                             args.threads, "--json", path] + common, 1200)
                rnd["ours"] = read_json(path) or {"error": "cnnserve bench exited with %s" % rc}
                coretype = coretype or (rnd["ours"].get("openblas") or {}).get("coretype_env")
            elif peer == "pytorch":
                path = os.path.join(args.cache_dir, "torch_%s_%d%s_r%d.json" % (model, t, config, k))
                if os.path.exists(path):
                    os.unlink(path)
                # OpenBLAS and OpenMP read their variables once, at load: one process per configuration.
                env = dict(os.environ, MKL_NUM_THREADS=str(t))
                for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
                    env.pop(var, None)
                env.update(next(e for name, _, e in torch_configs(t) if name == config))
                if coretype:
                    env["OPENBLAS_CORETYPE"] = coretype
                torch_cap, min_passes = torch_round_cap(args.max_seconds, args.rounds, t)
                rc, _ = run([args.python, os.path.join(HERE, "peer_torch.py"), "--weights-dir", args.weights_dir,
                             "--models", model, "--threads", str(t), "--config", config, "--iters", str(iters),
                             "--warmup", str(args.warmup), "--max-seconds", str(torch_cap), "--min-passes",
                             str(min_passes), "--json", path], 1200, env)
                rnd["pytorch"].append({"threads": t, "config": config, "result": read_json(path) or {
                    "error": "peer_torch.py exited with %s" % rc}})
            elif peer == "xnnpack":
                path = os.path.join(args.cache_dir, "xnnpack_%s_r%d.json" % (model, k))
                if os.path.exists(path):
                    os.unlink(path)
                rc, _ = run([args.xnnpack_bin, "--weights-dir", args.weights_dir, "--models", model, "--threads",
                             args.threads, "--json", path] + common, 1200)
                rnd["xnnpack"] = read_json(path) or {"error": "peer_xnnpack exited with %s" % rc}
            else:
                path = os.path.join(args.cache_dir, "ort_%s_r%d.json" % (model, k))
                if os.path.exists(path):
                    os.unlink(path)
                rc, _ = run(["node", os.path.join(HERE, "peer_ort.js"), "--onnx-dir", onnx_dir, "--models", model,
                             "--threads", args.threads, "--json", path] + common, 1200)
                rnd["onnxruntime"] = read_json(path) or {"error": "peer_ort.js exited with %s" % rc}
        out["rounds"].append(rnd)
    return out


def model_runs(result, model):
    """(runs, None) of one model in a runner's JSON, or (None, reason)."""
    if "skipped" in result:
        return None, result["skipped"]
    entry = next((m for m in result.get("models", []) if m["model"] == model), None)
    if entry is None or "error" in entry or "runs" not in entry:
        return None, (entry or result).get("error", "no result")
    return entry["runs"], None


def pool_runs(runs):
    """One figure from the runs of several rounds (each with "round" and every pass in "times_ms"):
    median/p90/p99/min/max over the pooled passes, each round's median, passes and load average,
    and the first round's logits (every round must give the same argmax)."""
    stats = bench_util.timing_stats([t for r in runs for t in r["times_ms"]])
    first = runs[0]
    stats.update(threads=first["threads"], argmax=first["argmax"], logits_head=first["logits_head"],
                 loadavg_before=first.get("loadavg_before"),
                 argmax_rounds_equal=all(r["argmax"] == first["argmax"] for r in runs),
                 rounds=[{"round": r["round"], "iters": r["iters"], "median_ms": r["median_ms"],
                          "min_ms": r["min_ms"], "loadavg_before": r.get("loadavg_before"),
                          "times_ms": r["times_ms"]} for r in runs])
    return stats


def pool_by_threads(parts, model, label, notes):
    """{threads: pooled run} from [(round, runner JSON)], or {"error"} when no round gave a result.
    A round that failed is left out and noted."""
    by_threads, errors = {}, []
    for k, result in parts:
        runs, err = model_runs(result, model)
        if runs is None:
            errors.append("round %d: %s" % (k + 1, err))
            continue
        for r in runs:
            if "times_ms" not in r:
                errors.append("round %d: %dT has no times_ms" % (k + 1, r["threads"]))
                continue
            by_threads.setdefault(r["threads"], []).append(dict(r, round=k))
    notes += ["%s %s" % (label, e) for e in errors]
    if not by_threads:
        return {"error": "; ".join(errors) or "no result"}
    return {t: pool_runs(runs) for t, runs in sorted(by_threads.items())}


def merge_model(model, raw):
    """One model's row of latest.json: per peer {threads: pooled run} or a reason, PyTorch's
    configurations, ratios, logits check."""
    rounds = raw["rounds"]
    row = {"model": model, "peers": {}, "notes": [],
           "rounds": [{k: r[k] for k in ("round", "order", "loadavg_before", "iters")} for r in rounds]}
    for peer, reason in raw.get("skipped", {}).items():
        row["peers"][peer] = {"skipped": reason}
    ours_parts = [(r["round"], r["ours"]) for r in rounds if "ours" in r]
    ours = pool_by_threads(ours_parts, model, "ours", row["notes"])
    row["peers"]["ours"] = ours
    entry = next((m for _, o in ours_parts for m in o.get("models", []) if m["model"] == model and "macs" in m), None)
    if entry is not None and "error" not in ours:
        row.update(macs=entry["macs"], params=entry["params"], input_size=entry["input_size"])
        row["sgemm"] = [dict(s, round=k) for k, o in ours_parts for s in o.get("sgemm", [])]
        by_round = {(k, r["threads"]): r for k, o in ours_parts for r in (model_runs(o, model)[0] or [])}
        for t, r in ours.items():
            r["gflops"] = 2 * row["macs"] / (r["median_ms"] * 1e6)
            r["sgemm_peak_gflops"] = max(by_round[(x["round"], t)]["sgemm_peak_gflops"] for x in r["rounds"])
            r["peak_ratio"] = r["gflops"] / r["sgemm_peak_gflops"]
    if "pytorch" not in row["peers"] and any(r.get("pytorch") for r in rounds):
        jobs = sorted({(p["threads"], p["config"]) for r in rounds for p in r["pytorch"]},
                      key=lambda j: (j[0], [c[0] for c in TORCH_CONFIGS].index(j[1])))
        row["pytorch_configs"], best = {}, {}
        for t, config in jobs:
            parts = [(r["round"], p["result"]) for r in rounds for p in r["pytorch"]
                     if (p["threads"], p["config"]) == (t, config)]
            pooled = pool_by_threads(parts, model, "PyTorch %dT %s" % (t, config), row["notes"])
            row["pytorch_configs"].setdefault(t, {})[config] = pooled.get(t, pooled)
            env = next((p for _, p in parts if "version" in p), None)
            if env and "pytorch_env" not in row:
                row["pytorch_env"] = {k: env.get(k) for k in ("version", "openblas_coretype", "openblas_corename")}
        for t, configs in row["pytorch_configs"].items():
            name = best_config(configs)
            if name:
                best[t] = dict(configs[name], config=name)
        row["peers"]["pytorch"] = best or {"error": "no PyTorch configuration gave a result"}
    ort_parts = [(r["round"], r["onnxruntime"]) for r in rounds if "onnxruntime" in r]
    if ort_parts and "onnxruntime" not in row["peers"]:
        row["peers"]["onnxruntime"] = pool_by_threads(ort_parts, model, "ORT", row["notes"])
        row["ort_version"] = next((o.get("version") for _, o in ort_parts if o.get("version")), None)
    xnn_parts = [(r["round"], r["xnnpack"]) for r in rounds if "xnnpack" in r]
    if xnn_parts and "xnnpack" not in row["peers"]:
        row["peers"]["xnnpack"] = pool_by_threads(xnn_parts, model, "XNNPACK", row["notes"])
        checks = [m["check"] for _, x in xnn_parts for m in x.get("models", []) if m.get("model") == model
                  and "check" in m]
        if checks:  # every logit against ours, in the peer's process
            row["xnnpack_check"] = {"max_abs_diff": max(c["max_abs_diff"] for c in checks),
                                    "max_abs_logit_ours": checks[0]["max_abs_logit_ours"],
                                    "n_logits": checks[0]["n_logits"]}
    ours_runs = row["peers"]["ours"]
    row["ratios"], row["ratios_p10"], row["logits_check"] = {}, {}, {}
    for peer in ("onnxruntime", "pytorch", "xnnpack"):
        runs = row["peers"].get(peer)
        if not isinstance(runs, dict) or "error" in runs or "skipped" in runs or "error" in ours_runs:
            continue
        for t, r in runs.items():
            o = ours_runs.get(t)
            if not o:
                continue
            row["ratios"]["ours/%s %dT" % (peer, t)] = o["median_ms"] / r["median_ms"]
            # The same at the 10 % quantile: the fast stretches of a machine whose speed drifts.
            row["ratios_p10"]["ours/%s %dT" % (peer, t)] = o["p10_ms"] / r["p10_ms"]
            diff = max(abs(a - b) for a, b in zip(o["logits_head"], r["logits_head"]))
            row["logits_check"]["%s %dT" % (peer, t)] = {
                "argmax_equal": o["argmax"] == r["argmax"] and o["argmax_rounds_equal"] and r["argmax_rounds_equal"],
                "max_abs_diff_head": diff}
    return row


# --- layer profile ---

def layer_profile(args, model):
    """{threads: layer_prof JSON (per node and per kernel kind)} of one model, or {"skipped": reason}; the
    text tables go to OUT_DIR/layer_prof/<model>_<N>T.txt and the per-kernel sums to the log."""
    if not os.access(args.layer_prof, os.X_OK):
        return {"skipped": "%s not built (make build/tests/layer_prof)" % args.layer_prof}
    out, prof_dir = {}, os.path.join(args.out_dir, "layer_prof")
    os.makedirs(prof_dir, exist_ok=True)
    for t in [int(t) for t in args.threads.split(",")]:
        path = os.path.join(args.cache_dir, "layer_prof_%s_%dT.json" % (model, t))
        if os.path.exists(path):
            os.unlink(path)
        rc, text = run([args.layer_prof, model, os.path.join(args.weights_dir, model + ".safetensors"),
                        str(args.prof_iters), "--threads", str(t), "--json", path], 600, capture=True)
        prof = read_json(path)
        if rc != 0 or prof is None:
            out[t] = {"error": "layer_prof exited with %s" % rc}
            continue
        prof["loadavg_before"] = bench_util.loadavg()
        out[t] = prof
        with open(os.path.join(prof_dir, "%s_%dT.txt" % (model, t)), "w") as f:
            f.write(text)
        log("layer profile %s %dT (sum of node medians %.0f us): %s" % (model, t, prof["sum_us"], ", ".join(
            "%s %.0f%%" % (k["kernel"], 100 * k["share"]) for k in prof["kernels"][:6])))
    return out


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


# --- dynamic batching: the same load with batching off and on ---

BATCH_OFF_FLAGS = "--batch-max 1"


def load_images(args):
    rc, stdout = run([args.python, os.path.join(HERE, "make_images.py"), args.shared, args.cache_dir], 300,
                     capture=True)
    return json.loads(stdout) if rc == 0 else None


def summarize_batching(cases):
    """Per model and connection count: median req/s, p50, p99 and batch size over the rounds of each
    configuration, and the on/off ratios (same run, alternating order)."""
    rows = []
    keys = sorted({(c["model"], c["connections"]) for c in cases if "wrk" in c},
                  key=lambda k: (ALL_MODELS.split(",").index(k[0]) if k[0] in ALL_MODELS.split(",") else 99, k[1]))
    for model, conns in keys:
        row = {"model": model, "connections": conns}
        for cfg in ("off", "on"):
            ws = [c["wrk"] for c in cases if c["model"] == model and c["connections"] == conns and
                  c.get("config") == cfg and "wrk" in c]
            if not ws:
                continue
            row[cfg] = {"rounds": len(ws),
                        "requests_per_s": statistics.median(w["requests_per_s"] for w in ws),
                        "requests_per_s_rounds": [w["requests_per_s"] for w in ws],
                        "p50_ms": statistics.median(w["latency_ms"]["p50"] for w in ws),
                        "p99_ms": statistics.median(w["latency_ms"]["p99"] for w in ws),
                        "mean_batch": statistics.median(w.get("mean_batch", 1) for w in ws),
                        "non_2xx": sum(w["non_2xx"] for w in ws)}
        if "off" in row and "on" in row and row["off"]["requests_per_s"] > 0:
            row["rps_on_over_off"] = row["on"]["requests_per_s"] / row["off"]["requests_per_s"]
            # per round pair: the ratio of the two runs next to each other
            pairs = list(zip(row["off"]["requests_per_s_rounds"], row["on"]["requests_per_s_rounds"]))
            row["rps_ratio_per_round"] = [b / a for a, b in pairs if a > 0]
        rows.append(row)
    return rows


def run_batching_test(args):
    """For each model alone on a server (2 workers by default), wrk on the 640x480 JPEG at
    --batch-connections with batching off (--batch-max 1) and on (--batch-flags), --batch-rounds
    times, the order alternating per round so drift of the shared machine lands on both."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    images = load_images(args)
    if not images:
        return {"skipped": "no load-test images (make_images.py: needs ../shared photos and PIL)"}
    small = min(images.values(), key=lambda i: i["width"] * i["height"])
    path = os.path.join(args.cache_dir, "wrk_batching.jsonl")
    cases = []
    for model in args.models.split(","):
        for rnd in range(args.batch_rounds):
            for cfg in (("off", "on") if rnd % 2 == 0 else ("on", "off")):
                flags = BATCH_OFF_FLAGS if cfg == "off" else args.batch_flags
                rc, _ = run(["bash", os.path.join(HERE, "run_wrk.sh"), "--bin", args.bin, "--weights-dir",
                             args.weights_dir, "--models", model, "--images", small["path"], "--connections",
                             args.batch_connections, "--duration", str(args.wrk_duration), "--out", path, "--log",
                             os.path.join(args.cache_dir, "server_batching.log"), "--server-flags", flags,
                             "--tag", cfg], 900)
                try:
                    with open(path) as f:
                        got = [json.loads(line) for line in f if line.strip()]
                except (OSError, ValueError):
                    got = []
                for c in got:
                    c["round"] = rnd
                if rc != 0 and not got:
                    got = [{"model": model, "config": cfg, "round": rnd, "error": "run_wrk.sh exit %s" % rc}]
                cases += got
    return {"image": small, "flags": {"off": BATCH_OFF_FLAGS, "on": args.batch_flags}, "cases": cases,
            "summary": summarize_batching(cases),
            "all_2xx": all(c.get("wrk", {}).get("non_2xx", 1) == 0 for c in cases)}


def run_intake(args):
    rc, stdout = run([args.python, os.path.join(HERE, "make_images.py"), args.shared, args.cache_dir], 300,
                     capture=True)
    if rc != 0:
        return {"skipped": "no bench images (make_images.py exit %s: needs ../shared photos and PIL)" % rc}
    try:
        return intake_bench.run_intake(args.bin, args.weights_dir, args.models.split(","), args.python,
                                       json.loads(stdout), args.rounds, args.iters, log)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
        return {"skipped": "intake: %s" % e}


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
        if "pytorch_configs" in row:
            row["pytorch_configs"] = {int(t): c for t, c in row["pytorch_configs"].items()}
        if "skipped" not in row.get("layer_profile", {"skipped": 1}):
            row["layer_profile"] = {int(t): p for t, p in row["layer_profile"].items()}
    report_md.write_markdown(os.path.join(out_dir, "latest.md"), res)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        return rewrite_report(args.out_dir)
    if args.only_batching:
        return main_batching(args)
    t_start = time.time()
    os.makedirs(args.cache_dir, exist_ok=True)
    os.makedirs(args.out_dir, exist_ok=True)
    threads = [int(t) for t in args.threads.split(",")]
    res = {"started_utc": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine_info(),
           "loadavg": {"start": bench_util.loadavg()}, "skipped": {}, "peer_versions": {},
           "settings": {"threads": threads, "iters": args.iters, "warmup": args.warmup,
                        "max_seconds": args.max_seconds, "rounds": args.rounds, "prof_iters": args.prof_iters,
                        "iters_per_round": split_passes(args.iters, args.rounds),
                        "max_seconds_per_round": round_cap(args.max_seconds, args.rounds),
                        "pytorch_nt_max_seconds_per_round": torch_round_cap(args.max_seconds, args.rounds, 2)[0],
                        "pytorch_nt_min_passes_per_round": TORCH_NT_MIN_PASSES,
                        "pytorch_configs": {name: desc for name, desc, _ in TORCH_CONFIGS},
                        "weights_dir": os.path.relpath(args.weights_dir, bench_util.REPO),
                        "wrk_duration_s": args.wrk_duration, "connections": args.connections}}
    if not os.access(args.bin, os.X_OK):
        log("%s not built: run make" % args.bin)
        return 1
    onnx_dir = None
    if not args.no_peers:
        selected = args.peers.split(",")
        for peer in PEER_KEYS:
            if peer not in selected:
                res["skipped"][peer] = "not selected (--peers %s)" % args.peers
        onnx_dir, ort_skip = setup_ort(args) if "onnxruntime" in selected else (None, None)
        for peer, reason in (("pytorch", "pytorch" in selected and torch_skip_reason(args.python)),
                             ("onnxruntime", ort_skip),
                             ("xnnpack", "xnnpack" in selected and xnnpack_skip_reason(args.xnnpack_bin))):
            if reason:
                res["skipped"][peer] = reason
                log("%s skipped: %s" % (peer, reason))
    log("latency: %d rounds per model of %s timed passes, time cap %d s per round; PyTorch at N > 1 threads: "
        "%d configurations, each capped at %d s and %d passes per round" % (
            args.rounds, "+".join(map(str, split_passes(args.iters, args.rounds))),
            round_cap(args.max_seconds, args.rounds), len(TORCH_CONFIGS),
            torch_round_cap(args.max_seconds, args.rounds, 2)[0], TORCH_NT_MIN_PASSES))
    rows, coretype, ours_ok = [], None, []
    for model in args.models.split(","):
        skipped = dict(res["skipped"])
        if model not in XNNPACK_MODELS:
            skipped.setdefault("xnnpack", "the XNNPACK peer builds the mobile models only (%s)" % ", ".join(XNNPACK_MODELS))
        raw = bench_model(args, model, coretype, skipped, onnx_dir)
        raw["skipped"] = skipped
        ours_ok += [r["ours"] for r in raw["rounds"] if "models" in r.get("ours", {})]
        coretype = coretype or next((o["openblas"].get("coretype_env") for o in ours_ok), None)
        rows.append(merge_model(model, raw))
        rows[-1]["layer_profile"] = layer_profile(args, model)
    res["loadavg"]["after_latency"] = bench_util.loadavg()
    res["latency"] = rows
    if ours_ok:
        first = ours_ok[0]
        res["openblas_coretype"] = first["openblas"]["coretype_env"]
        res["openblas_ours"] = first["openblas"]
        res["settings"]["sgemm_n"] = first["sgemm_n"]
        res["sgemm_peak_gflops"] = {t: max(s["peak_gflops"] for o in ours_ok for s in o["sgemm"]
                                           if s["threads"] == t) for t in threads}
    else:
        res.update(openblas_coretype=None, sgemm_peak_gflops={})
        res["settings"]["sgemm_n"] = 0
    for row in rows:
        res["peer_versions"].setdefault("pytorch", (row.get("pytorch_env") or {}).get("version"))
        res.setdefault("pytorch_openblas_corename", (row.get("pytorch_env") or {}).get("openblas_corename"))
        res["peer_versions"].setdefault("onnxruntime", row.get("ort_version"))
    if not args.no_peers and "xnnpack" not in res["skipped"]:
        res["peer_versions"]["xnnpack"] = xnnpack_version()
    if not args.no_intake:
        log("intake")
        res["intake"] = run_intake(args)
    if not args.no_wrk:
        log("load test")
        res["wrk"] = run_load_test(args)
        if res["wrk"].get("skipped"):
            log("load test skipped: " + res["wrk"]["skipped"])
        if not args.no_batching:
            log("dynamic batching: off / on")
            res["batching"] = run_batching_test(args)
            if res["batching"].get("skipped"):
                log("batching comparison skipped: " + res["batching"]["skipped"])
    res["loadavg"]["end"] = bench_util.loadavg()
    res["finished_utc"] = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    res["elapsed_s"] = round(time.time() - t_start, 1)
    with open(os.path.join(args.out_dir, "latest.json"), "w") as f:
        json.dump(res, f, indent=1)
    report_md.write_markdown(os.path.join(args.out_dir, "latest.md"), res)
    log("wrote %s/latest.json and latest.md in %.0f s" % (args.out_dir, res["elapsed_s"]))
    with open(os.path.join(args.out_dir, "latest.md")) as f:
        print(f.read())
    return 0 if ours_ok else 1


def main_batching(args):
    """--only-batching: the batching comparison alone, into OUT_DIR/batching.json and batching.md."""
    os.makedirs(args.cache_dir, exist_ok=True)
    os.makedirs(args.out_dir, exist_ok=True)
    if not os.access(args.bin, os.X_OK):
        log("%s not built: run make" % args.bin)
        return 1
    t_start = time.time()
    res = {"started_utc": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine_info(),
           "loadavg": {"start": bench_util.loadavg()},
           "settings": {"wrk_duration_s": args.wrk_duration, "batch_connections": args.batch_connections,
                        "batch_rounds": args.batch_rounds}}
    res["batching"] = run_batching_test(args)
    res["loadavg"]["end"] = bench_util.loadavg()
    res["elapsed_s"] = round(time.time() - t_start, 1)
    with open(os.path.join(args.out_dir, "batching.json"), "w") as f:
        json.dump(res, f, indent=1)
    text = "\n".join(report_md.batching_section(res)) + "\n"
    with open(os.path.join(args.out_dir, "batching.md"), "w") as f:
        f.write(text)
    print(text)
    return 0 if not res["batching"].get("skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
