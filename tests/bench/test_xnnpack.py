#!/usr/bin/python3
"""The XNNPACK peer of `make bench` (bench/peer_xnnpack.c): on the random weights of `make ref`
($CNN_CACHE/ref) and the first reference input of each model, its logits at 1 and 2 threads equal
ours (checked in its process against model_run, every logit) and PyTorch's reference logits, within
the tolerance of our own parity tests; its argmax is ours. Also its flag and error handling. Never
asserts anything about speed. Skips without libxnnpack-dev (the peer is then not built) or without
the reference data."""

import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402
from testlib import CACHE, REPO, Skip, check  # noqa: E402

REF = os.path.join(CACHE, "ref")
PEER = os.path.join(REPO, testlib.BUILD, "bench", "peer_xnnpack")
# The mobile models, and the TF-SAME variant of mobilenet_v3_small (asymmetric padding, 1001 classes).
MODELS = ("mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v3_small_tf_same", "shufflenet_v2_x1_0")


def need_peer():
    if not os.access(PEER, os.X_OK):
        if not os.path.isfile("/usr/include/xnnpack.h"):
            raise Skip("libxnnpack-dev is not installed, so %s is not built (make deps)" % PEER)
        raise Skip("%s is not built" % PEER)


def read_f32(path):
    with open(path, "rb") as f:
        data = f.read()
    return list(struct.unpack("<%df" % (len(data) // 4), data))


def run_peer(*args, timeout=600):
    return subprocess.run([PEER, *args], capture_output=True, text=True, timeout=timeout)


def within(a, b):
    """max |a - b| and whether it is within our parity tests' tolerance (1e-4 of the largest logit + 1e-5)."""
    diff = max(abs(x - y) for x, y in zip(a, b))
    return diff, diff <= 1e-4 * max(abs(y) for y in b) + 1e-5


def case_model(model):
    need_peer()
    weights = os.path.join(REF, model + ".safetensors")
    inputs, logits = os.path.join(REF, model + ".inputs.f32"), os.path.join(REF, model + ".logits.f32")
    if not all(os.path.isfile(p) for p in (weights, inputs, logits)):
        raise Skip("no %s reference data in %s (make ref needs torch)" % (model, REF))
    with tempfile.TemporaryDirectory() as tmp:
        out, got = os.path.join(tmp, "out.json"), os.path.join(tmp, "logits.f32")
        r = run_peer("--weights-dir", REF, "--models", model, "--threads", "1,2", "--iters", "2", "--warmup", "0",
                     "--json", out, "--input", inputs, "--logits-out", got)
        check(r.returncode == 0, "exit %d: %s" % (r.returncode, r.stderr[-2000:]))
        with open(out) as f:
            res = json.load(f)
        mine = read_f32(got)
    (entry,) = res["models"]
    c = entry["check"]
    print("# %s: %d XNNPACK operators; max |logit - ours| %.3g (max |logit| %.3g)"
          % (model, entry["n_operators"], c["max_abs_diff"], c["max_abs_logit_ours"]))
    check([r["threads"] for r in entry["runs"]] == [1, 2], "thread counts %s" % entry["runs"])
    for run in entry["runs"]:
        check(run["max_abs_diff_ours"] <= 1e-4 * c["max_abs_logit_ours"] + 1e-5,
              "%dT: max |XNNPACK - ours| %g > tolerance (max |logit| %g)"
              % (run["threads"], run["max_abs_diff_ours"], c["max_abs_logit_ours"]))
        check(run["argmax_equal_ours"] and run["argmax"] == c["ours_argmax"], "%dT argmax %d, ours %d"
              % (run["threads"], run["argmax"], c["ours_argmax"]))
        check(len(run["times_ms"]) == 2 and all(t > 0 for t in run["times_ms"]), "passes %s" % run["times_ms"])
    torch = read_f32(logits)[:len(mine)]
    check(len(mine) == c["n_logits"] and len(mine) in (1000, 1001), "%d logits" % len(mine))
    diff, ok = within(mine, torch)
    print("# %s: max |XNNPACK - PyTorch| %.3g" % (model, diff))
    check(ok, "max |XNNPACK - PyTorch| %g > tolerance" % diff)
    check(mine.index(max(mine)) == torch.index(max(torch)), "argmax differs from PyTorch's")


def case_errors():
    need_peer()
    for bad in (["--threads", "0"], ["--threads", "1,x"], ["--iters", "0"], ["--frobnicate", "1"]):
        r = run_peer("--weights-dir", REF, "--models", "m", "--threads", "1", "--json", "/dev/null", *bad)
        check(r.returncode == 2 and "peer_xnnpack" in r.stderr, "%s: exit %d, %s" % (bad, r.returncode, r.stderr))
    r = run_peer("--weights-dir", REF)
    check(r.returncode == 2 and "required" in r.stderr, "missing flags: exit %d" % r.returncode)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        models = "nosuch"
        if os.path.isfile(os.path.join(REF, "alexnet.safetensors")):
            models += ",alexnet"  # a model the peer does not build: an error entry, not a crash
        r = run_peer("--weights-dir", REF, "--models", models, "--threads", "1", "--iters", "1", "--json", out)
        check(r.returncode == 1, "failing models: exit %d" % r.returncode)
        with open(out) as f:
            entries = json.load(f)["models"]
    check([e["model"] for e in entries] == models.split(",") and all("error" in e and "runs" not in e
                                                                      for e in entries), "entries %s" % entries)
    check("nosuch.safetensors" in entries[0]["error"], "missing file: %s" % entries[0]["error"])
    if len(entries) > 1:
        check("mobile models only" in entries[1]["error"], "alexnet: %s" % entries[1]["error"])


for m in MODELS:
    testlib.run_case("xnnpack peer logits equal ours and PyTorch's at 1 and 2 threads: " + m, case_model, m)
testlib.run_case("xnnpack peer: bad flags exit 2, unbuildable or missing models are errors in the JSON", case_errors)
sys.exit(testlib.finish())
