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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402
from testlib import BIN, CACHE, PYTHON, REPO, Skip, check  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "bench"))
REF = os.path.join(CACHE, "ref")
XNNPACK_BIN = os.path.join(REPO, testlib.BUILD, "bench", "peer_xnnpack")
MODEL = "mobilenet_v3_small"
LAYER_PROF = os.path.join(REPO, testlib.BUILD, "tests", "layer_prof")


def case(fn):
    """Runs fn as one case named after it (see testlib.run_case)."""
    testlib.run_case(fn.__name__, fn)
    return fn


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
                            MODEL, "--threads", "1", "--config", "A", "--iters", "2", "--warmup", "1", "--json", out],
                           capture_output=True, text=True, env=env, timeout=300)
        check(r.returncode == 0, "peer_torch: %s" % r.stderr)
        with open(out) as f:
            peer = json.load(f)
    check(peer["torch_threads"] == 1 and peer["openblas_threads"] == 1 and peer["openblas_corename"],
          "peer settings %s" % peer)
    check(peer["config"] == "A" and peer["omp_num_threads"] == "1", "configuration not recorded: %s" % peer)
    run = peer["models"][0]["runs"][0]
    check(run["iters"] == 2 and run["min_ms"] <= run["median_ms"] <= run["max_ms"], "peer stats %s" % run)
    check(len(run["times_ms"]) == 2 and sorted(run["times_ms"])[0] == run["min_ms"], "times_ms %s" % run)
    check(run["argmax"] == ours["argmax"], "argmax %d vs ours %d" % (run["argmax"], ours["argmax"]))
    diff = max(abs(a - b) for a, b in zip(run["logits_head"], ours["logits_head"]))
    check(diff < 1e-3, "logits differ by %g" % diff)


@case
def test_rounds_split_and_abba_order():
    import run_bench

    for total, rounds, want in ((100, 2, [50, 50]), (101, 2, [51, 50]), (5, 3, [2, 2, 1]), (7, 1, [7])):
        got = run_bench.split_passes(total, rounds)
        check(got == want, "split_passes(%d, %d) = %s, want %s" % (total, rounds, got, want))
    for cap, rounds, want in ((30, 2, 15), (30, 4, 8), (1, 3, 1), (0, 2, 0)):
        got = run_bench.round_cap(cap, rounds)
        check(got == want, "round_cap(%d, %d) = %d, want %d" % (cap, rounds, got, want))
    check(run_bench.torch_round_cap(30, 2, 1) == (15, 10), "PyTorch 1T keeps the peers' cap")
    check(run_bench.torch_round_cap(30, 2, 2) == (5, run_bench.TORCH_NT_MIN_PASSES), "PyTorch NT shares one cap")
    first = run_bench.round_jobs([1, 2], 0, True)
    check([j[0] for j in first] == ["ours", "pytorch", "pytorch", "pytorch", "pytorch", "onnxruntime", "xnnpack"],
          "round 1 order %s" % first)
    check([(t, c) for p, t, c in first if p == "pytorch"] == [(1, "A"), (2, "A"), (2, "B"), (2, "C")],
          "PyTorch jobs: one configuration at 1T, every one at 2T: %s" % first)
    check(run_bench.round_jobs([1, 2], 1, True) == first[::-1], "round 2 is not the reverse of round 1")
    check(run_bench.round_jobs([1, 2], 2, True) == first, "round 3 is not round 1's order")
    check(run_bench.round_jobs([1, 2], 1, False) == [("ours", None, None)], "--no-peers runs ours only")
    check(run_bench.parse_args(["--peers", "xnnpack,pytorch"]).peers == "xnnpack,pytorch", "--peers list")
    check(run_bench.parse_args([]).peers.split(",") == ["onnxruntime", "pytorch", "xnnpack"], "--peers default: all")
    try:
        run_bench.parse_args(["--peers", "xnnpack,nope"])
        check(False, "--peers with an unknown peer accepted")
    except SystemExit as e:
        check(e.code == 2, "--peers nope: exit %s" % e.code)
    for t in (1, 2, 4):
        for name, _, env in run_bench.torch_configs(t):
            check(env.get("OPENBLAS_NUM_THREADS") and env.get("OMP_NUM_THREADS"),
                  "configuration %s at %dT leaves a thread count unset: %s" % (name, t, env))
    check(run_bench.torch_configs(1)[0][2] == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
          "1 thread: OpenBLAS 1, OMP 1")
    check({n: e for n, _, e in run_bench.torch_configs(2)} == {
        "A": {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"},
        "B": {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
        "C": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}}, "2-thread configurations")


def synthetic_run(threads, times, argmax=3, load=1.0):
    s = sorted(times)
    return {"threads": threads, "iters": len(times), "median_ms": s[len(s) // 2], "p90_ms": s[-1], "p99_ms": s[-1],
            "min_ms": s[0], "max_ms": s[-1], "argmax": argmax, "logits_head": [0.5] * 8,
            "loadavg_before": [load, 1, 1], "times_ms": times}


@case
def test_pool_runs():
    import numpy as np

    import run_bench

    a, b = [5.0, 1.0, 3.0], [2.0, 9.0, 4.0, 8.0]
    pooled = run_bench.pool_runs([dict(synthetic_run(2, a, load=1.5), round=0),
                                  dict(synthetic_run(2, b, load=2.5), round=1)])
    both = a + b
    for key, p in (("median_ms", 50), ("p10_ms", 10), ("p90_ms", 90), ("p99_ms", 99)):
        check(abs(pooled[key] - float(np.percentile(both, p))) < 1e-9, "%s %s of %s" % (key, pooled[key], both))
    check(pooled["min_ms"] == 1.0 and pooled["max_ms"] == 9.0 and pooled["iters"] == 7, "pooled %s" % pooled)
    check(pooled["threads"] == 2 and pooled["argmax_rounds_equal"], "threads/argmax %s" % pooled)
    check([r["round"] for r in pooled["rounds"]] == [0, 1], "rounds %s" % pooled["rounds"])
    check([r["median_ms"] for r in pooled["rounds"]] == [3.0, 8.0], "round medians %s" % pooled["rounds"])
    check([r["loadavg_before"][0] for r in pooled["rounds"]] == [1.5, 2.5], "round loads %s" % pooled["rounds"])
    check(pooled["rounds"][1]["times_ms"] == b, "round passes")
    split = run_bench.pool_runs([dict(synthetic_run(1, a), round=0), dict(synthetic_run(1, b, argmax=4), round=1)])
    check(not split["argmax_rounds_equal"], "rounds with different argmax not flagged")


@case
def test_best_config():
    import run_bench

    configs = {"A": synthetic_run(2, [40.0]), "B": synthetic_run(2, [21.0]), "C": synthetic_run(2, [14.7])}
    check(run_bench.best_config(configs) == "C", "fastest median")
    configs["C"] = {"error": "peer_torch.py exited with 1"}
    check(run_bench.best_config(configs) == "B", "a failed configuration is not chosen")
    check(run_bench.best_config({"A": synthetic_run(2, [5.0]), "B": synthetic_run(2, [5.0])}) == "A",
          "a tie goes to the first listed")
    check(run_bench.best_config({"A": {"error": "x"}}) is None, "no result: None")


def synthetic_raw():
    """Two rounds of one model "m" as run_bench.bench_model returns them; PyTorch 2T: A is slow, C fastest,
    B failed in round 2."""
    def runner(*runs, **extra):
        return dict({"models": [{"model": "m", "macs": 10, "params": 1, "input_size": 224, "runs": list(runs)}]},
                    **extra)

    def ours(times1, times2, peak):
        return runner(dict(synthetic_run(1, times1), gflops=0, sgemm_peak_gflops=peak, peak_ratio=0),
                      dict(synthetic_run(2, times2), gflops=0, sgemm_peak_gflops=peak, peak_ratio=0),
                      sgemm=[{"threads": 1, "peak_gflops": peak}])

    def torch(t, config, times, argmax=3):
        return {"threads": t, "config": config, "result": runner(synthetic_run(t, times, argmax), version="1.13")}

    rounds = []
    for k in range(2):
        rnd = {"round": k, "order": [], "loadavg_before": [1, 1, 1], "iters": 3,
               "ours": ours([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], 100.0 + k),
               "onnxruntime": runner(synthetic_run(1, [4.0] * 3), synthetic_run(2, [4.0] * 3), version="x"),
               "xnnpack": {"models": [{"model": "m", "runs": [synthetic_run(1, [1.0] * 3), synthetic_run(2, [0.5] * 3)],
                                       "check": {"max_abs_diff": 1e-5 * (k + 1), "max_abs_logit_ours": 9.0,
                                                 "n_logits": 1000}}]},
               "pytorch": [torch(1, "A", [8.0] * 3), torch(2, "A", [2000.0] * 3), torch(2, "C", [5.0] * 3, argmax=4),
                           torch(2, "B", [6.0] * 3) if k == 0 else
                           {"threads": 2, "config": "B", "result": {"error": "peer_torch.py exited with 1"}}]}
        rounds.append(rnd)
    return {"rounds": rounds, "skipped": {}}


@case
def test_report_ratios():
    import report_md
    import run_bench

    row = run_bench.merge_model("m", synthetic_raw())
    want = {"ours/onnxruntime 1T": 0.5, "ours/onnxruntime 2T": 0.25, "ours/pytorch 1T": 0.25,
            "ours/pytorch 2T": 0.2, "ours/xnnpack 1T": 2.0, "ours/xnnpack 2T": 2.0}
    check(row["ratios"] == want, "ratios %s" % row["ratios"])
    check(row["peers"]["pytorch"][2]["config"] == "C", "best PyTorch 2T configuration %s" % row["peers"]["pytorch"])
    check(sorted(row["pytorch_configs"][2]) == ["A", "B", "C"], "every configuration kept %s" % row["pytorch_configs"])
    check(row["pytorch_configs"][2]["A"]["median_ms"] == 2000.0, "configuration A's figure")
    check([r["round"] for r in row["pytorch_configs"][2]["B"]["rounds"]] == [0], "B pools its one good round")
    check(any("PyTorch 2T B round 2" in n for n in row["notes"]), "failed round not noted: %s" % row["notes"])
    check(row["peers"]["ours"][1]["iters"] == 6 and len(row["peers"]["ours"][1]["rounds"]) == 2, "ours pooled")
    ours2 = row["peers"]["ours"][2]
    check(ours2["sgemm_peak_gflops"] == 101.0 and abs(ours2["gflops"] - 2 * 10 / 1e6) < 1e-12,
          "ours GFLOP/s from the pooled median and the highest peak of the rounds: %s" % ours2)
    check(row["logits_check"]["pytorch 1T"]["argmax_equal"], "argmax equal")
    check(not row["logits_check"]["pytorch 2T"]["argmax_equal"], "argmax differs")
    table, detail = report_md.latency_tables([row], [1, 2], 6)
    check(row["xnnpack_check"] == {"max_abs_diff": 2e-5, "max_abs_logit_ours": 9.0, "n_logits": 1000},
          "XNNPACK's in-process check, worst round: %s" % row.get("xnnpack_check"))
    check("| m | 0.000 | 2.00 | 1.00 | 4.00 | 4.00 | 8.00 | 5.00 (C) | 1.00 | 0.50 | 0.50 | 0.25 | 0.25 | 0.20 | 2.00 | 2.00 |"
          in table[2], "table row names the PyTorch 2T configuration: %s" % table[2])
    check("| m | XNNPACK | 2 | 6 | 0.500 |" in "\n".join(detail), "XNNPACK percentiles row %s" % detail)
    check("| m | PyTorch (C) | 2 | 6 | 5.000 |" in "\n".join(detail), "percentiles row %s" % detail)
    check("| m | ours | 1 | 6 | 2.000 | 2.000 | 2.000 | 2.000 | 2.000 / 2.000 | 1.00 / 1.00 |" in detail,
          "per-round medians and loads %s" % detail)
    configs = report_md.torch_config_table([row], [1, 2])
    check(configs[2] == "| m | 2 | 2000.00 (2000.00, 6) | 6.00 (6.00, 3) | **5.00 (5.00, 6)** |",
          "configuration table %s" % configs)
    capped, _ = report_md.latency_tables([row], [1, 2], 7)
    check("| 2.00* | 1.00* | 4.00* | 4.00* | 8.00* | 5.00* (C) | 1.00* | 0.50* |" in capped[2],
          "a run short of its passes is starred: %s" % capped[2])


@case
def test_report_p10_ratios():
    """Ratios at the 10 % quantile next to the medians': a run whose passes were mostly slow keeps its
    fast-stretch ratio; the report prints them in their own table."""
    import report_md
    import run_bench

    raw = synthetic_raw()
    for rnd in raw["rounds"]:  # ours at 1T: one fast pass in three per round -> pooled 2, 2, 6, 6, 6, 6
        rnd["ours"]["models"][0]["runs"][0] = dict(rnd["ours"]["models"][0]["runs"][0],
                                                   **synthetic_run(1, [2.0, 6.0, 6.0]))
    row = run_bench.merge_model("m", raw)
    check(row["ratios"]["ours/onnxruntime 1T"] == 1.5, "median ratio %s" % row["ratios"])
    check(row["ratios_p10"]["ours/onnxruntime 1T"] == 0.5, "p10 ratio %s" % row["ratios_p10"])
    check(row["ratios_p10"]["ours/onnxruntime 2T"] == 0.25 and row["ratios_p10"]["ours/xnnpack 2T"] == 2.0,
          "p10 ratios of constant runs equal the medians' %s" % row["ratios_p10"])
    table = report_md.p10_ratio_table([row], [1, 2])
    check(table[2] == "| m | 0.50 | 0.25 | 0.25 | 0.20 | 2.00 | 2.00 |", "p10 table row %s" % table[2])


@case
def test_intake_section():
    """bench/intake_bench.py on the two bench photos: both sides timed in every round, the server's
    decode scale recorded, the report's table arithmetic."""
    need_ref()
    why = testlib.have_torch()
    if why:
        raise Skip(why)
    import intake_bench

    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([PYTHON, os.path.join(REPO, "bench", "make_images.py"), testlib.SHARED, tmp],
                           capture_output=True, text=True, timeout=300)
        if r.returncode == 3:
            raise Skip("no ../shared photos: %s" % r.stderr.strip())
        check(r.returncode == 0, "make_images exit %d: %s" % (r.returncode, r.stderr))
        images = json.loads(r.stdout)
        res = intake_bench.run_intake(BIN, REF, [MODEL], PYTHON, images, 2, 4, lambda msg: None)
    check("pil_skipped" not in res and res["model"] == MODEL and res["passes_per_round"] == 2, "results %s" % res)
    check(res["images"]["640x480"]["decode_scale"] == "1/1" and res["images"]["4000x3000"]["decode_scale"] == "1/4",
          "decode scales %s" % {n: r["decode_scale"] for n, r in res["images"].items()})
    for name, row in res["images"].items():
        for key in ("ours_decode", "ours_preprocess", "pil_decode", "pil_preprocess"):
            check(row[key]["iters"] == 4 and 0 < row[key]["min_ms"] <= row[key]["median_ms"], "%s %s" % (name, key))
        total = (row["ours_decode"]["median_ms"] + row["ours_preprocess"]["median_ms"]) / (
            row["pil_decode"]["median_ms"] + row["pil_preprocess"]["median_ms"])
        check(abs(row["ours_over_pil"] - total) < 1e-12, "%s ratio" % name)
    md = "\n".join(intake_bench.markdown(res))
    check(md.count("| photo_") == 2 + (0 if res["restart"].get("skipped") else 2) and
          "%.3f |" % res["images"]["640x480"]["ours_over_pil"] in md, "markdown table:\n%s" % md)
    if shutil.which("jpegtran"):  # the restart-marker rows: both thread counts timed in every round
        for name, row in res["restart"].get("images", {}).items():
            for key in ("t1_decode", "t1_preprocess", "t2_decode", "t2_preprocess"):
                check(row[key]["iters"] == 4 and 0 < row[key]["min_ms"] <= row[key]["median_ms"], "%s %s" % (name, key))
            t1 = row["t1_decode"]["median_ms"] + row["t1_preprocess"]["median_ms"]
            t2 = row["t2_decode"]["median_ms"] + row["t2_preprocess"]["median_ms"]
            check(abs(row["t2_over_t1"] - t2 / t1) < 1e-12 and row["file"].endswith("_rst.jpg"), "%s restart row" % name)
        check(sorted(res["restart"].get("images", {})) == sorted(res["images"]), "restart rows %s" % res["restart"])
    else:
        check("jpegtran" in res["restart"].get("skipped", ""), "restart section without jpegtran: %s" % res["restart"])


@case
def test_harness_two_rounds():
    need_ref()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = os.path.join(tmp, "out")
        r = subprocess.run([PYTHON, os.path.join(REPO, "bench", "run_bench.py"), "--bin", BIN, "--weights-dir", REF,
                            "--models", MODEL, "--threads", "1,2", "--iters", "5", "--warmup", "1", "--rounds", "2",
                            "--max-seconds", "60", "--no-wrk", "--no-intake", "--cache-dir", os.path.join(tmp, "cache"),
                            "--out-dir", out_dir, "--python", PYTHON, "--layer-prof", LAYER_PROF, "--prof-iters", "3",
                            "--xnnpack-bin", XNNPACK_BIN],
                           capture_output=True, text=True, timeout=900)
        check(r.returncode == 0, "run_bench exit %d: %s" % (r.returncode, (r.stdout + r.stderr)[-3000:]))
        with open(os.path.join(out_dir, "latest.json")) as f:
            res = json.load(f)
        with open(os.path.join(out_dir, "latest.md")) as f:
            md = f.read()
        prof_txt = {t: os.path.exists(os.path.join(out_dir, "layer_prof", "%s_%dT.txt" % (MODEL, t))) for t in (1, 2)}
    st = res["settings"]
    check(st["rounds"] == 2 and st["iters_per_round"] == [3, 2] and st["max_seconds_per_round"] == 30,
          "settings %s" % st)
    (row,) = res["latency"]
    check([x["round"] for x in row["rounds"]] == [0, 1] and all(len(x["loadavg_before"]) == 3 for x in row["rounds"]),
          "rounds %s" % row["rounds"])
    order = [x["order"] for x in row["rounds"]]
    check(order[1] == order[0][::-1] and order[0][0] == "ours", "ABBA order %s" % order)
    check(row["notes"] == [], "notes %s" % row["notes"])
    peers = [p for p in ("ours", "onnxruntime", "pytorch", "xnnpack") if p not in res["skipped"]]
    for peer, reason in res["skipped"].items():
        print("# test_harness_two_rounds: %s skipped (%s), its checks not run" % (peer, reason))
    for peer in peers:
        runs = row["peers"][peer]
        check(sorted(runs) == ["1", "2"], "%s thread counts %s" % (peer, runs))
        for t, run in runs.items():
            check(run["iters"] == 5 and [x["iters"] for x in run["rounds"]] == [3, 2], "%s %sT passes" % (peer, t))
            check(sorted(x for rnd in run["rounds"] for x in rnd["times_ms"])[0] == run["min_ms"],
                  "%s %sT pooled min" % (peer, t))
            check(all(rnd["min_ms"] <= rnd["median_ms"] for rnd in run["rounds"]), "round medians")
    if "pytorch" in peers:
        check(sorted(row["pytorch_configs"]["2"]) == ["A", "B", "C"] and list(row["pytorch_configs"]["1"]) == ["A"],
              "PyTorch configurations %s" % row["pytorch_configs"])
        best = row["peers"]["pytorch"]["2"]
        check(best["median_ms"] == min(c["median_ms"] for c in row["pytorch_configs"]["2"].values()),
              "PyTorch 2T is not the fastest configuration")
        check("(%s)" % best["config"] in md and "every configuration" in md, "markdown lacks the configuration")
    if "xnnpack" in peers:
        check(row["xnnpack_check"]["max_abs_diff"] <= 1e-4 * row["xnnpack_check"]["max_abs_logit_ours"],
              "XNNPACK logits vs ours: %s" % row["xnnpack_check"])
        check("ours/XNNPACK 1T" in md and "XNNPACK peer, every logit vs ours" in md, "markdown lacks XNNPACK")
    check("split over 2 rounds" in md and "round medians" in md, "markdown lacks the rounds")
    # the layer profile: per thread count every node once, the per-kernel sums adding up to the node sum
    prof = row["layer_profile"]
    check(sorted(prof) == ["1", "2"] and all(prof_txt.values()), "layer profile %s, text tables %s" % (
        sorted(prof), prof_txt))
    for t, p in prof.items():
        nodes_us = sum(n["median_us"] for n in p["nodes"])
        check(p["threads"] == int(t) and p["iters"] == 3 and len(p["nodes"]) > 10, "%sT profile header" % t)
        check(abs(sum(k["us"] for k in p["kernels"]) - p["sum_us"]) < 0.01 * p["sum_us"] + 0.1 and
              abs(nodes_us - p["sum_us"]) < 0.01 * p["sum_us"] + 0.1, "%sT kernel sums vs node sum" % t)
        check(sum(k["nodes"] for k in p["kernels"]) == len(p["nodes"]), "%sT kernel node counts" % t)
        check(any(k["kernel"].startswith("depthwise") for k in p["kernels"]), "%sT no depthwise kernel" % t)
    check("Where our time goes" in md and "sum of node medians" in md, "markdown lacks the layer profile")


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


sys.exit(testlib.finish())
