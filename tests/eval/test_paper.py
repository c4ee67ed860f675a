#!/usr/bin/python3
"""tools/paper.py (`make paper`) end to end on a miniature of ../shared/data (a few photos per class from
imagenet-sample laid out as monkeys/, fruits-360/ and imagenet-sample/) with one real base model: the
real binary trains, evaluates and the report has every table, the skipped models with their reason
and the figures; --mode full with a --torch-dir result puts PyTorch's figures, both sides' threads and
load and the top-1 difference beside ours, and --publish stores the JSON the tables come from."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402
from testlib import Skip  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(REPO, os.environ.get("BIN", "bin"), "cnnserve")
SHARED = os.environ.get("CNN_SHARED") or os.path.join(REPO, "..", "shared")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
SAMPLE = os.path.join(SHARED, "data", "imagenet-sample")
BASE = os.path.join(SHARED, "weights", "mobilenet_v3_small.safetensors")
CLASSES = {"n0": "goldfish", "n1": "tench", "n2": "_hen."}




def need():
    if not os.path.isfile(BASE) or not os.path.isdir(SAMPLE):
        raise Skip("../shared weights or imagenet-sample absent")
    if not os.access(BIN, os.X_OK):
        raise Skip("bin/cnnserve not built")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise Skip("python3-matplotlib missing (make deps)")


def mini_data(root):
    """monkeys/{train,test}, fruits-360/train and imagenet-sample (20 photos) from imagenet-sample."""
    photos = sorted(os.listdir(SAMPLE))
    by_class = {}
    for folder, key in CLASSES.items():
        src = os.path.join(SAMPLE, [p for p in photos if key in p][0])
        by_class[folder] = src
    for sub, n in (("monkeys/train", 6), ("monkeys/test", 2), ("fruits-360/train", 6)):
        for folder, src in by_class.items():
            d = os.path.join(root, sub, folder)
            os.makedirs(d)
            for i in range(n):
                shutil.copy(src, os.path.join(d, "%s_%d.jpg" % (folder, i)))
    with open(os.path.join(root, "monkeys", "monkey_labels.txt"), "w") as f:
        f.write("Label,  Latin Name , Common Name , Train Images , Validation Images\n")
        for folder, key in CLASSES.items():
            f.write("%s , latin_%s , common_%s , 6 , 2\n" % (folder, folder, key.strip("_.")))
    os.makedirs(os.path.join(root, "imagenet-sample"))
    with open(os.path.join(SAMPLE, "labels.tsv")) as f:
        lines = f.read().splitlines()
    with open(os.path.join(root, "imagenet-sample", "labels.tsv"), "w") as f:
        f.write(lines[0] + "\n")
        for line in lines[1:21]:
            name, rest = line.split("\t", 1)
            f.write(os.path.join(SAMPLE, name) + "\t" + rest + "\n")


def run_paper(tmp, mode, *extra):
    data, weights, out = os.path.join(tmp, "data"), os.path.join(tmp, "w"), os.path.join(tmp, "paper")
    if not os.path.isdir(data):
        mini_data(data)
        os.makedirs(weights)
        os.symlink(BASE, os.path.join(weights, "mobilenet_v3_small.safetensors"))
    res = subprocess.run([PYTHON, os.path.join(REPO, "tools", "paper.py"), "--bin", BIN, "--weights-dir", weights,
                          "--data-dir", data, "--out-dir", out, "--mode", mode, "--epochs", "3", "--python", PYTHON,
                          "--publish", os.path.join(tmp, "pub")] + list(extra), capture_output=True, text=True,
                         timeout=900)
    report = open(os.path.join(out, "REPORT.md")).read() if os.path.isfile(os.path.join(out, "REPORT.md")) else ""
    return res, report, out


def test_head_mode_report():
    need()
    with tempfile.TemporaryDirectory() as tmp:
        res, report, out = run_paper(tmp, "head")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        for text in ("## Table III", "## monkeys", "## fruits", "## ImageNet sample", "MobileNetV3-Small",
                     "- shufflenet_v2_x1_0: no weights file", "- alexnet: no weights file",
                     "the 30 % validation part of fruits-360/train", "best val acc", "macro AUC"):
            assert text in report, "REPORT.md lacks %r" % text
        # the monkeys table has a real test row: 6 test photos of 3 classes, copies of 3 photos
        row = [line for line in report.splitlines() if line.startswith("| MobileNetV3-Small | 6 |")]
        assert row, "no monkeys test row with 6 images"
        for fig in ("roc_monkeys", "roc_fruits", "training_monkeys", "training_fruits", "test_time_accuracy",
                    "accuracy_vs_macs"):
            assert os.path.getsize(os.path.join(out, "out", "figures", fig + ".png")) > 5000, fig
            assert "](out/figures/%s.png)" % fig in report, fig
            assert os.path.isfile(os.path.join(tmp, "pub", "figures", fig + ".png")), fig
        pub = open(os.path.join(tmp, "pub", "REPORT.md")).read()
        assert "](figures/roc_monkeys.png)" in pub and "](out/figures/roc_monkeys.png)" in report
        assert os.path.isfile(os.path.join(out, "out", "weights", "monkeys_mobilenet_v3_small.safetensors"))


def test_full_mode_report():
    need()
    with tempfile.TemporaryDirectory() as tmp:
        # a tools/torch_finetune.py result for monkeys (fields as it writes them, values made up)
        tdir = os.path.join(tmp, "torch")
        os.makedirs(tdir)
        torch_res = {"base": "mobilenet_v3_small", "recipe": {"threads": 1}, "threads": 1, "n_val": 6,
                     "epochs": [{"epoch": 1, "load_average": 7.2}], "train_seconds": 123.0,
                     "train_images_per_s": 1.25, "val_accuracy": 0.5, "val_cross_entropy": 0.75,
                     "test_accuracy": 0.25, "test_cross_entropy": 1.5, "load_average": {"start": 3.0, "end": 9.4}}
        with open(os.path.join(tdir, "monkeys_mobilenet_v3_small.json"), "w") as f:
            json.dump(torch_res, f)
        res, report, _ = run_paper(tmp, "full", "--torch-dir", tdir, "--threads", "2")
        assert res.returncode == 0, res.stderr[-2000:]
        assert "is not supported by this `cnnserve train`" not in report, report[:3000]
        assert "Mode: `--mode full`" in report and "| MobileNetV3-Small |" in report, report[:3000]
        monkeys = report.split("## monkeys")[1].split("## fruits")[0]
        rows = [line for line in monkeys.splitlines() if line.startswith("| MobileNetV3-Small |")]
        assert len(rows) == 2, monkeys
        # training row: ours' threads, PyTorch's val top-1 / CE / time / images/s / threads and load range
        assert "| 2 thr, load" in rows[0] and "| 50.00 % | 0.7500 | 123 s | 1.2 | 1 thr, load 3-9 |" in rows[0], rows[0]
        # test row: PyTorch's test top-1 / CE and the difference in points
        assert "| 25.00 % | 1.5000 | " in rows[1] and " points |" in rows[1], rows[1]
        fruits = report.split("## fruits")[1]
        assert [line for line in fruits.splitlines() if line.startswith("| MobileNetV3-Small |") and "n/a" in line]
        pub = os.path.join(tmp, "pub")
        ours = json.load(open(os.path.join(pub, "ours_monkeys_mobilenet_v3_small_train.json")))
        assert ours["threads"] == 2 and len(ours["load_average"]) == 2 and ours["recipe"]["mode"] == "full", ours
        ev = json.load(open(os.path.join(pub, "ours_monkeys_mobilenet_v3_small_eval.json")))
        assert ev["model"]["images"] == 6 and "predictions" not in ev["model"], list(ev["model"])
        assert json.load(open(os.path.join(pub, "torch_monkeys_mobilenet_v3_small.json"))) == torch_res
        assert not os.path.exists(os.path.join(pub, "torch_fruits_mobilenet_v3_small.json"))
        # PyTorch's fruits result arrives later: --report-only writes the report again, running nothing
        with open(os.path.join(tdir, "fruits_mobilenet_v3_small.json"), "w") as f:
            json.dump(dict(torch_res, val_accuracy=0.875), f)
        stamp = os.path.getmtime(os.path.join(tmp, "paper", "out", "logs", "train_fruits_mobilenet_v3_small.json"))
        res2, report2, _ = run_paper(tmp, "full", "--torch-dir", tdir, "--report-only")
        assert res2.returncode == 0, res2.stderr[-2000:]
        assert "train " not in res2.stdout + res2.stderr, res2.stdout
        assert stamp == os.path.getmtime(os.path.join(tmp, "paper", "out", "logs",
                                                      "train_fruits_mobilenet_v3_small.json"))
        assert report2.split("\n")[2] == report.split("\n")[2], (report2[:500], report[:500])  # the run's date
        fruits2 = report2.split("## fruits")[1]
        assert "| 87.50 % | 0.7500 | 123 s |" in fruits2, fruits2
        assert report2.split("## fruits")[0] == report.split("## fruits")[0]
        assert os.path.isfile(os.path.join(pub, "torch_fruits_mobilenet_v3_small.json"))
        assert "Fine-tuning runs built from git " in report
        # --only another model: this one's fine-tuning is kept (same command), evaluated and reported again
        res3, report3, _ = run_paper(tmp, "full", "--torch-dir", tdir, "--threads", "2", "--only",
                                     "shufflenet_v2_x1_0")
        assert res3.returncode == 0, res3.stdout[-2000:] + res3.stderr[-2000:]
        assert "kept mobilenet_v3_small on monkeys" in res3.stdout and "train " not in res3.stdout, res3.stdout
        assert stamp == os.path.getmtime(os.path.join(tmp, "paper", "out", "logs",
                                                      "train_fruits_mobilenet_v3_small.json"))

        def train_row(rep, ds):
            return [line for line in rep.split("## " + ds)[1].splitlines() if line.startswith("| MobileNetV3-Small |")][0]
        for ds in ("monkeys", "fruits"):
            assert train_row(report3, ds) == train_row(report2, ds), (train_row(report3, ds), train_row(report2, ds))
        # another recipe cannot keep the earlier run
        res4, _, _ = run_paper(tmp, "full", "--threads", "2", "--epochs-fruits", "1", "--only", "shufflenet_v2_x1_0")
        assert res4.returncode == 1 and "no earlier run of fruits_mobilenet_v3_small" in res4.stdout, res4.stdout


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            testlib.run_case("paper_" + name[len("test_"):], fn)
    sys.exit(testlib.finish())
