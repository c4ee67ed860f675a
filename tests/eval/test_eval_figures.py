#!/usr/bin/python3
"""tools/eval_figures.py draws every figure, as valid PNG (960 px wide) and SVG files, from eval reports
and train logs. The reports are built around metrics computed by $BUILD/tests/eval_metrics_tool (the
eval module's JSON) on seeded random scores, so the figures are drawn from the real schema."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402
from testlib import Skip  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
TOOL = os.path.join(BUILD, "tests", "eval_metrics_tool")
SCRIPT = os.path.join(REPO, "tools", "eval_figures.py")




def need():
    try:
        import matplotlib  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as e:
        raise Skip("python3-matplotlib / numpy missing (make deps): %s" % e)
    if not os.access(TOOL, os.X_OK):
        raise Skip("%s not built" % TOOL)


def metrics(seed, k, n, skill):
    import numpy as np
    rng = np.random.default_rng(seed)
    label = rng.integers(0, k, size=n)
    logits = rng.standard_normal((n, k)).astype(np.float32)
    logits[np.arange(n), label] += skill
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("%d %d\n" % (n, k))
        for i in range(n):
            f.write("%d %s\n" % (label[i], " ".join("%.9g" % v for v in logits[i])))
    try:
        out = subprocess.run([TOOL, "--logits", f.name], capture_output=True, text=True, check=True, timeout=120)
    finally:
        os.unlink(f.name)
    return json.loads(out.stdout)


def report(seed, k, n):
    models = []
    for i, (arch, macs, skill) in enumerate((("mobilenet_v3_small", 56511424, 3.0),
                                               ("shufflenet_v2_x1_0", 144907992, 3.5))):
        t = {key: {"median": 1.0 + i, "mean": 1.2 + i} for key in
             ("read_ms", "decode_ms", "preprocess_ms", "inference_ms", "total_ms")}
        models.append({"model": "ds_" + arch, "architecture": arch, "params": 2000000, "macs": macs,
                       "num_classes": k, "images": n, "skipped": 0, "timing": dict(t, wall_s=1.0, images_per_s=n),
                       "metrics": metrics(seed + i, k, n, skill)})
    models.append({"model": "broken", "architecture": "alexnet", "error": "no image could be classified"})
    return {"report": 1, "models": models}


def train_log(arch, epochs=5):
    return {"base": arch, "epochs": [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "train_accuracy": 0.5 + e / 20,
                                      "val_loss": 1.2 / (e + 1), "val_accuracy": 0.45 + e / 20, "seconds": 0.1}
                                     for e in range(epochs)]}


def check_png(path):
    with open(path, "rb") as f:
        head = f.read(33)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path + ": not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    assert width >= 800 and 300 <= height <= 1200, "%s: %dx%d" % (path, width, height)


def check_svg(path, texts):
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg"), path
    body = open(path).read()
    for t in texts:
        assert t in body, "%s lacks %r" % (path, t)


def test_all_figures():
    need()
    with tempfile.TemporaryDirectory() as tmp:
        args = [PYTHON, SCRIPT, "--out-dir", os.path.join(tmp, "fig")]
        for name, seed, k, n in (("monkeys", 1, 10, 120), ("fruits", 5, 13, 150)):
            path = os.path.join(tmp, name + ".json")
            with open(path, "w") as f:
                json.dump(report(seed, k, n), f)
            args += ["--eval", "%s=%s" % (name, path)]
            for arch in ("mobilenet_v3_small", "shufflenet_v2_x1_0"):
                lp = os.path.join(tmp, "%s_%s.log.json" % (name, arch))
                with open(lp, "w") as f:
                    json.dump(train_log(arch), f)
                args += ["--train", "%s=%s" % (name, lp)]
        res = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        written = res.stdout.split()
        want = {"roc_monkeys", "roc_fruits", "training_monkeys", "training_fruits", "test_time_accuracy",
                "accuracy_vs_macs"}
        assert {os.path.splitext(os.path.basename(p))[0] for p in written} == want, written
        assert len(written) == 2 * len(want)
        for p in written:
            assert os.path.getsize(p) > 5000, p
            if p.endswith(".png"):
                check_png(p)
        fig = os.path.join(tmp, "fig")
        check_svg(os.path.join(fig, "roc_monkeys.svg"), ["false positive rate", "true positive rate",
                                                         "MobileNetV3-Small macro (AUC", "ShuffleNetV2"])
        check_svg(os.path.join(fig, "training_fruits.svg"), ["epoch", "accuracy (%)", "validation"])
        check_svg(os.path.join(fig, "test_time_accuracy.svg"), ["test time per image", "monkeys", "fruits"])
        check_svg(os.path.join(fig, "accuracy_vs_macs.svg"), ["multiply-accumulates", "log scale"])


def test_bad_argument():
    need()
    res = subprocess.run([PYTHON, SCRIPT, "--out-dir", "/tmp", "--eval", "nofile"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0 and "NAME=FILE" in res.stderr


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            testlib.run_case("eval_figures_" + name[len("test_"):], fn)
    sys.exit(testlib.finish())
