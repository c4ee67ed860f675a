#!/usr/bin/python3
"""Tests of the benchmark tooling (bench/, `cnnserve bench`): flags and error paths, the JSON schema
and its arithmetic (percentile order, GFLOP/s = 2*MACs/median, ratio to the sgemm peak), that the
peers get the exact same input as ours (their logits agree), the wrk script against a real server on
127.0.0.1, and the report's ratio arithmetic. Never asserts anything about speed.
Uses $BIN/cnnserve and the random weights in $CNN_CACHE/ref (skips without them)."""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))
BIN = os.path.join(REPO, os.environ.get("BIN", "bin"), "cnnserve")
CACHE = os.environ.get("CNN_CACHE", os.path.join(REPO, "cache"))
REF = os.path.join(CACHE, "ref")
MODEL = "mobilenet_v3_small"
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")

results = {"pass": 0, "fail": 0}


class Skip(Exception):
    pass


def case(fn):
    """Runs one case, printing ok / not ok / skip."""
    name = fn.__name__
    try:
        fn()
    except Skip as e:
        print("skip - %s: %s" % (name, e))
    except AssertionError as e:
        print("#   %s" % e)
        print("not ok - %s" % name)
        results["fail"] += 1
    else:
        print("ok - %s" % name)
        results["pass"] += 1
    sys.stdout.flush()
    return fn


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def need_ref():
    if not os.path.isfile(os.path.join(REF, MODEL + ".safetensors")):
        raise Skip("no %s/%s.safetensors (make ref needs torch)" % (REF, MODEL))
    if not os.access(BIN, os.X_OK):
        raise Skip("%s not built" % BIN)


def run_bin(*args, timeout=300):
    return subprocess.run([BIN, "bench", *args], capture_output=True, text=True, timeout=timeout)


def ours_json(tmp, models=MODEL, threads="1,2"):
    path = os.path.join(tmp, "ours.json")
    r = run_bin("--weights-dir", REF, "--models", models, "--threads", threads, "--iters", "5", "--warmup", "1",
                "--sgemm-n", "128", "--json", path)
    check(r.returncode == 0, "cnnserve bench exit %d: %s" % (r.returncode, r.stderr))
    with open(path) as f:
        return json.load(f)


@case
def test_cli_help_and_bad_flags():
    if not os.access(BIN, os.X_OK):
        raise Skip("%s not built" % BIN)
    r = run_bin("--help")
    check(r.returncode == 0 and "--weights-dir" in r.stdout, "--help: exit %d" % r.returncode)
    for bad in (["--iters", "0"], ["--max-seconds", "-1"], ["--threads", "x"], ["--threads", "1,,0"], ["--models", "nosuch"],
                ["--sgemm-n", "2"], ["--json"], ["--frobnicate", "1"]):
        r = run_bin(*bad)
        check(r.returncode == 2, "%s: exit %d, want 2" % (bad, r.returncode))
        check("cnnserve bench" in r.stderr, "%s: no message on stderr" % bad)


@case
def test_cli_missing_and_broken_weights():
    if not os.access(BIN, os.X_OK):
        raise Skip("%s not built" % BIN)
    with tempfile.TemporaryDirectory() as tmp:
        r = run_bin("--weights-dir", tmp)
        check(r.returncode == 1 and "no <model>.safetensors" in r.stderr, "empty dir: exit %d %s"
              % (r.returncode, r.stderr))
        with open(os.path.join(tmp, MODEL + ".safetensors"), "wb") as f:
            f.write(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
        out = os.path.join(tmp, "out.json")
        r = run_bin("--weights-dir", tmp, "--iters", "1", "--sgemm-n", "64", "--json", out)
        check(r.returncode == 1, "broken file: exit %d, want 1" % r.returncode)
        with open(out) as f:
            entry = json.load(f)["models"][0]
        check(entry["model"] == MODEL and entry.get("error"), "broken file: entry %s" % entry)
        check("runs" not in entry, "broken file has runs")


@case
def test_json_schema_and_arithmetic():
    need_ref()
    with tempfile.TemporaryDirectory() as tmp:
        res = ours_json(tmp)
    check(res["openblas"]["corename"], "no OpenBLAS core name")
    check(len(res["loadavg_before"]) == 3 and len(res["loadavg_after"]) == 3, "load averages")
    check([s["threads"] for s in res["sgemm"]] == [1, 2], "sgemm thread counts %s" % res["sgemm"])
    for s in res["sgemm"]:
        check(s["peak_gflops"] == max(s["best_before_gflops"], s["best_after_gflops"]) > 0, "sgemm peak %s" % s)
    (entry,) = res["models"]
    check(entry["model"] == MODEL and entry["input_size"] == 224 and entry["num_classes"] == 1000, "entry")
    check(abs(entry["macs"] - 56.5e6) < 0.5e6, "MACs %d, torchvision counts ~56.5M" % entry["macs"])
    check([r["threads"] for r in entry["runs"]] == [1, 2], "runs per thread count")
    for r, s in zip(entry["runs"], res["sgemm"]):
        check(r["iters"] == 5, "iters %d" % r["iters"])
        check(0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"],
              "percentiles out of order: %s" % r)
        gflops = 2 * entry["macs"] / (r["median_ms"] * 1e6)
        check(abs(r["gflops"] - gflops) <= 1e-5 * gflops, "gflops %g, want %g" % (r["gflops"], gflops))
        check(r["sgemm_peak_gflops"] == s["peak_gflops"], "peak of the run's thread count")
        check(abs(r["peak_ratio"] - gflops / s["peak_gflops"]) <= 1e-5, "peak ratio")
        check(len(r["logits_head"]) == 8 and 0 <= r["argmax"] < 1000, "logits")


@case
def test_time_cap():
    need_ref()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ours.json")
        # A 1 s cap cannot fit 100000 passes: the run stops with at least 10 done and says how many.
        r = run_bin("--weights-dir", REF, "--models", MODEL, "--threads", "1", "--iters", "100000", "--warmup", "1",
                    "--sgemm-n", "64", "--max-seconds", "1", "--json", path)
        check(r.returncode == 0, "exit %d: %s" % (r.returncode, r.stderr))
        with open(path) as f:
            res = json.load(f)
    run = res["models"][0]["runs"][0]
    check(res["iters"] == 100000 and res["max_seconds"] == 1, "settings %s" % {k: res[k] for k in ("iters",)})
    check(10 <= run["iters"] < 100000, "passes done: %d" % run["iters"])
    check("(%d passes)" % run["iters"] in r.stdout, "passes not printed")


@case
def test_percentiles_match_numpy():
    import numpy as np

    import bench_util

    rng = random.Random(6)
    samples = [[rng.uniform(0, 10) for _ in range(n)] for n in (1, 2, 5, 100, 101)]
    node = shutil.which("node")
    for values in samples:
        s = sorted(values)
        for p in (0, 50, 90, 99, 100):
            want = float(np.percentile(values, p))
            check(abs(bench_util.percentile(s, p) - want) < 1e-9, "python p%d of %d values" % (p, len(s)))
    if node:
        script = ("const p=require(%s);const s=JSON.parse(require('fs').readFileSync(0));"
                  "console.log(JSON.stringify(s.map(v=>[50,90,99].map(q=>p.percentile(v.slice().sort((a,b)=>a-b),q)))))"
                  % json.dumps(os.path.join(REPO, "bench", "peer_ort.js")))
        r = subprocess.run([node, "-e", script], input=json.dumps(samples), capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "node: %s" % r.stderr)
        for values, got in zip(samples, json.loads(r.stdout)):
            for q, g in zip((50, 90, 99), got):
                check(abs(g - float(np.percentile(values, q))) < 1e-9, "js p%d of %d values" % (q, len(values)))


@case
def test_fixed_input_identical_in_js_and_python():
    import numpy as np

    import bench_util

    node = shutil.which("node")
    if not node:
        raise Skip("node not installed")
    script = ("const p=require(%s);process.stdout.write(Buffer.from(p.fixedInput(299).buffer))"
              % json.dumps(os.path.join(REPO, "bench", "peer_ort.js")))
    r = subprocess.run([node, "-e", script], capture_output=True, timeout=60)
    check(r.returncode == 0, "node: %s" % r.stderr)
    js = np.frombuffer(r.stdout, dtype="<f4")
    py = bench_util.fixed_input(299).ravel()
    check(js.shape == py.shape and np.array_equal(js, py), "JS and Python inputs differ")


@case
def test_pytorch_peer_same_logits():
    need_ref()
    if subprocess.run([PYTHON, "-c", "import torch, torchvision"], capture_output=True).returncode:
        raise Skip("no torch in %s" % PYTHON)
    with tempfile.TemporaryDirectory() as tmp:
        ours = ours_json(tmp, threads="1")["models"][0]["runs"][0]
        out = os.path.join(tmp, "torch.json")
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        r = subprocess.run([PYTHON, os.path.join(REPO, "bench", "peer_torch.py"), "--weights-dir", REF, "--models",
                            MODEL, "--threads", "1", "--iters", "2", "--warmup", "1", "--json", out],
                           capture_output=True, text=True, env=env, timeout=300)
        check(r.returncode == 0, "peer_torch: %s" % r.stderr)
        with open(out) as f:
            peer = json.load(f)
    check(peer["torch_threads"] == 1 and peer["openblas_corename"], "peer settings %s" % peer)
    run = peer["models"][0]["runs"][0]
    check(run["iters"] == 2 and run["min_ms"] <= run["median_ms"] <= run["max_ms"], "peer stats %s" % run)
    check(run["argmax"] == ours["argmax"], "argmax %d vs ours %d" % (run["argmax"], ours["argmax"]))
    diff = max(abs(a - b) for a, b in zip(run["logits_head"], ours["logits_head"]))
    check(diff < 1e-3, "logits differ by %g" % diff)


@case
def test_report_ratios():
    import run_bench

    def runs(*medians):
        return [{"threads": t + 1, "iters": 100, "median_ms": m, "p90_ms": m, "p99_ms": m, "min_ms": m, "argmax": 3,
                 "logits_head": [0.5] * 8, "gflops": 1.0, "peak_ratio": 0.5, "loadavg_before": [1, 1, 1]}
                for t, m in enumerate(medians)]
    raw = {"ours": {"models": [{"model": "m", "macs": 10, "params": 1, "input_size": 224, "runs": runs(2.0, 1.0)}],
                    "sgemm": []},
           "onnxruntime": {"version": "x", "models": [{"model": "m", "runs": runs(4.0, 4.0)}]},
           "pytorch": [{"models": [{"model": "m", "runs": [dict(runs(8.0)[0], iters=40)]}]},
                       {"models": [{"model": "m", "runs": [dict(runs(5.0)[0], threads=2, argmax=4)]}]}]}
    row = run_bench.merge_model("m", raw)
    want = {"ours/onnxruntime 1T": 0.5, "ours/onnxruntime 2T": 0.25, "ours/pytorch 1T": 0.25,
            "ours/pytorch 2T": 0.2}
    check(row["ratios"] == want, "ratios %s" % row["ratios"])
    check(row["logits_check"]["pytorch 1T"]["argmax_equal"], "argmax equal")
    check(not row["logits_check"]["pytorch 2T"]["argmax_equal"], "argmax differs")
    table, detail = run_bench.latency_tables([row], [1, 2], 100)
    check("| m | 0.000 | 2.00 | 1.00 | 4.00 | 4.00 | 8.00* | 5.00 | 0.50 | 0.25 | 0.25 | 0.20 |" in table[2],
          "table row (a time-capped run is starred) %s" % table[2])
    check("| m | PyTorch | 1 | 40 | 8.000 |" in "\n".join(detail), "percentiles table gives the passes done")


@case
def test_wrk_script_against_server():
    need_ref()
    if not shutil.which("wrk") or not shutil.which("curl"):
        raise Skip("wrk or curl not installed")
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        img = os.path.join(tmp, "img.jpg")
        Image.new("RGB", (320, 240), (120, 60, 200)).save(img, "JPEG")
        out = os.path.join(tmp, "wrk.jsonl")
        r = subprocess.run(["bash", os.path.join(REPO, "bench", "run_wrk.sh"), "--bin", BIN, "--weights-dir", REF,
                            "--models", MODEL, "--images", img, "--connections", "1,2", "--duration", "1", "--out",
                            out], capture_output=True, text=True, timeout=300)
        check(r.returncode == 0, "run_wrk.sh exit %d: %s" % (r.returncode, r.stderr[-2000:]))
        check("127.0.0.1:" in r.stdout, "server address not reported: %s" % r.stdout)
        with open(out) as f:
            cases = [json.loads(line) for line in f]
    check([c["connections"] for c in cases] == [1, 2], "cases %s" % cases)
    for c in cases:
        w = c.get("wrk")
        check(w is not None, "case without wrk result: %s" % c)
        check(w["requests"] > 0 and w["ok"] == w["requests"] and w["non_2xx"] == 0, "counts %s" % w)
        check(w["statuses"] == {"200": w["requests"]}, "statuses %s" % w["statuses"])
        check(w["n_timed"] == w["ok"], "timings parsed from %d of %d responses" % (w["n_timed"], w["ok"]))
        st = w["server_timings_ms"]
        check(set(st) >= {"decode", "preprocess", "queue", "inference", "total"}, "stages %s" % st)
        check(st["inference"] > 0 and st["total"] >= st["inference"], "stage times %s" % st)
        check(w["decode_scale"] == "1/1", "decode scale of a small image: %s" % w["decode_scale"])
        check(w["latency_ms"]["p50"] <= w["latency_ms"]["p99"], "latency percentiles %s" % w["latency_ms"])


print("%d passed, %d failed" % (results["pass"], results["fail"]))
sys.exit(1 if results["fail"] else 0)
