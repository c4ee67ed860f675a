#!/usr/bin/python3
"""End-to-end test of `cnnserve train --mode full` on a tiny subset of ../shared/data/monkeys (3 classes x
8 photos plus a broken file, mobilenet_v3_small, batch 4, 2 epochs): the output file (all tensors,
metadata with the full recipe), the --log-json curves, `classify` loading the file with its labels, PyTorch
loading the file (load_state_dict strict) with classify's probabilities, a bit-identical file at --threads 1 and 2, SIGTERM mid-epoch and SIGINT at an epoch's end leaving a
loadable checkpoint and no output, --resume giving the same file and curves as the uninterrupted run,
and the usage/data errors of the full-mode flags.

Prints one "ok - / not ok - / skip - " line per case."""

import json
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import testlib  # noqa: E402
from testlib import run_train  # noqa: E402
from test_train_e2e import parse_safetensors, pytorch_vs_classify, tensor_bytes  # noqa: E402

BIN = testlib.BIN
SHARED = testlib.SHARED
MONKEYS = testlib.MONKEYS
BASE = "mobilenet_v3_small"
WEIGHTS = os.path.join(SHARED, "weights")
CLASSES = ["n0", "n1", "n2"]
TIMEOUT = 900
NAMES = ["train full: file, metadata recipe, --log-json; classify loads it with its labels",
         "train full: bit-identical file at --threads 1 and 2",
         "train full: SIGTERM mid-epoch / SIGINT leave a loadable checkpoint and no output; --resume gives the "
         "uninterrupted run's file and curves",
         "train full: usage and data errors of the full-mode flags",
         "train full: PyTorch load_state_dict(strict) of the file gives classify's probabilities"]


def common(data, out, threads="1", *extra):
    return ["--mode", "full", "--base", BASE, "--weights-dir", WEIGHTS, "--data", data, "--out", out, "--epochs", "2",
            "--batch", "4", "--threads", threads, "--lr", "0.01", "--lr-backbone", "0.002", "--warmup-epochs", "1",
            "--clip-grad", "5"] + list(extra)


def case_file(tmp, data, out, log):
    rc, so, se = run_train(*common(data, out, "1", "--log-json", log))
    testlib.check(rc == 0, "exit %d: %s" % (rc, se[-800:]))
    problems = []
    if "broken.jpg" not in se:
        problems.append("no warning naming broken.jpg")
    if "wrote " + out not in so:
        problems.append("summary line: " + so)
    header, _, _ = parse_safetensors(out)
    base_h, _, _ = parse_safetensors(os.path.join(WEIGHTS, BASE + ".safetensors"))
    meta = header.get("__metadata__", {})
    for k, v in {"architecture": BASE, "num_classes": "3", "padding": "tf_same", "source": "cnnserve train",
                 "base": BASE + ".safetensors", "labels": json.dumps(CLASSES, separators=(",", ":"))}.items():
        if meta.get(k) != v:
            problems.append("metadata %s = %r, want %r" % (k, meta.get(k), v))
    recipe = json.loads(meta.get("recipe", "{}"))
    want = {"mode": "full", "optimizer": "sgd", "epochs": 2, "batch": 4, "lr": 0.01, "lr_backbone": 0.002,
            "warmup_epochs": 1, "clip_grad": 5.0, "schedule": "cosine", "bn": "frozen", "dropout": "on",
            "momentum": 0.9, "nesterov": False, "weight_decay": 0.0001, "seed": 1, "val_split": 0.3}
    for k, v in want.items():
        if recipe.get(k) != v:
            problems.append("recipe %s = %r, want %r" % (k, recipe.get(k), v))
    if "checkpoint_step" in meta:
        problems.append("checkpoint_step in the output's metadata")
    if sorted(k for k in header if k != "__metadata__") != sorted(k for k in base_h if k != "__metadata__"):
        problems.append("tensor names differ from the base file's")
    if header.get("classifier.3.weight", {}).get("shape") != [3, 1024]:
        problems.append("head shape %r" % header.get("classifier.3.weight"))
    lg = json.load(open(log))
    if [e.get("epoch") for e in lg.get("epochs", [])] != [1, 2]:
        problems.append("log epochs %r" % lg.get("epochs"))
    for e in lg.get("epochs", []):
        if set(e) != {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} or \
                not all(isinstance(e[k], float) for k in ("train_loss", "val_loss", "val_accuracy")):
            problems.append("epoch record %r" % e)
            break
    if lg.get("n_skipped") != 1 or lg.get("n_train", 0) + lg.get("n_val", 0) != 24:
        problems.append("log counts skipped %r train %r val %r" % (lg.get("n_skipped"), lg.get("n_train"),
                                                                   lg.get("n_val")))
    if lg.get("recipe", {}).get("mode") != "full":
        problems.append("log recipe %r" % lg.get("recipe"))
    if abs(float(meta.get("val_accuracy", -1)) - lg["epochs"][-1]["val_accuracy"]) > 1e-6:
        problems.append("val_accuracy %r vs the log's %r" % (meta.get("val_accuracy"), lg["epochs"][-1]))
    photo = os.path.join(MONKEYS, "test", "n1", sorted(os.listdir(os.path.join(MONKEYS, "test", "n1")))[0])
    p = subprocess.run([BIN, "classify", "--weights-dir", os.path.dirname(out), "--model", "full1", "--json",
                        "--top-k", "3", photo], capture_output=True, timeout=TIMEOUT)
    if p.returncode != 0:
        problems.append("classify: exit %d %s" % (p.returncode, p.stderr.decode(errors="replace")[-300:]))
    else:
        preds = json.loads(p.stdout.decode().splitlines()[0]).get("predictions", [])
        if sorted(x.get("label") for x in preds) != CLASSES:
            problems.append("classify predictions %r" % preds)
    return problems


def case_pytorch(tmp, out):
    """The trained file (backbone convolutions and BatchNorm gamma/beta changed, running statistics kept) in
    PyTorch gives classify's probabilities."""
    header, data, _ = parse_safetensors(out)
    base_h, base_d, _ = parse_safetensors(os.path.join(WEIGHTS, BASE + ".safetensors"))
    problems = []
    for name, changed in (("features.0.0.weight", True), ("features.0.1.weight", True), ("features.0.1.bias", True),
                          ("features.0.1.running_mean", False), ("features.0.1.running_var", False)):
        if (tensor_bytes(header, data, name) != tensor_bytes(base_h, base_d, name)) != changed:
            problems.append("%s %s the base file's" % (name, "equals" if changed else "differs from"))
    photos = [os.path.join(MONKEYS, "test", c, f) for c in CLASSES
              for f in sorted(os.listdir(os.path.join(MONKEYS, "test", c)))[:2]]
    return problems + pytorch_vs_classify(tmp, os.path.dirname(out), "full1", photos, len(CLASSES))


def case_threads(tmp, data, out):
    other = os.path.join(tmp, "w", "full2.safetensors")
    rc, _, se = run_train(*common(data, other, "2"))
    testlib.check(rc == 0, "threads 2: exit %d: %s" % (rc, se[-500:]))
    testlib.check(open(other, "rb").read() == open(out, "rb").read(), "--threads 2 gave another file than 1")


def interrupted(args, sig, trigger):
    """Runs train, sends sig once a stderr line starts with trigger; (exit status, stderr)."""
    # train keeps a signal ignored when it started (as under nohup); a test suite started in the background
    # by a non-interactive shell inherits SIGINT ignored, so the child gets the default disposition back
    p = subprocess.Popen([BIN, "train"] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    lines = []
    for line in p.stderr:
        lines.append(line)
        if line.startswith(trigger):
            p.send_signal(sig)
    try:
        rc = p.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    return rc, "".join(lines)


def case_resume(tmp, data, out, log):
    problems = []
    want_log = json.load(open(log))
    for name, sig, trigger, code in (("term", signal.SIGTERM, "cnnserve train: training on", 143),
                                     ("int", signal.SIGINT, "epoch 1/2", 130)):
        path = os.path.join(tmp, "w", "r_%s.safetensors" % name)
        ckpt = path[:-len(".safetensors")] + ".ckpt"
        args = common(data, path, "2", "--log-json", path + ".json")
        rc, se = interrupted(args, sig, trigger)
        if rc != code or "--resume" not in se:
            problems.append("%s: exit %d (want %d): %s" % (name, rc, code, se[-400:]))
            continue
        if os.path.exists(path):
            problems.append("%s: an interrupted run wrote %s" % (name, path))
        if sorted(os.listdir(ckpt)) != ["model.safetensors", "state.bin"]:
            problems.append("%s: checkpoint folder holds %r" % (name, os.listdir(ckpt)))
        p = subprocess.run([BIN, "classify", "--weights-dir", ckpt, "--model", "model", "--top-k", "1",
                            os.path.join(data, "n0", sorted(os.listdir(os.path.join(data, "n0")))[0])],
                           capture_output=True, timeout=TIMEOUT)
        if p.returncode != 0:
            problems.append("%s: classify cannot load the checkpoint: %s" % (name, p.stderr.decode()[-300:]))
        rc, _, se = run_train(*(args + ["--resume"]))
        if rc != 0:
            problems.append("%s: --resume exit %d: %s" % (name, rc, se[-400:]))
            continue
        if open(path, "rb").read() != open(out, "rb").read():
            problems.append("%s: the resumed run's file differs from the uninterrupted run's" % name)
        got = json.load(open(path + ".json"))
        for a, b in zip(want_log["epochs"], got["epochs"]):
            if any(a[k] != b[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")):
                problems.append("%s: epoch %d curves %r, uninterrupted %r" % (name, a["epoch"], b, a))
        if len(got["epochs"]) != len(want_log["epochs"]):
            problems.append("%s: %d epochs in the resumed log" % (name, len(got["epochs"])))
    return problems


def case_errors(tmp, data):
    problems = []
    out = os.path.join(tmp, "err", "e.safetensors")
    os.makedirs(os.path.dirname(out))
    base = ["--base", BASE, "--weights-dir", WEIGHTS, "--data", data, "--out", out]
    usage = [
        (["--mode", "full", "--optimizer", "rmsprop"], "--optimizer must be sgd, adam or adamw"),
        (["--mode", "full", "--schedule", "linear"], "--schedule must be const, cosine or step"),
        (["--mode", "full", "--bn", "on"], "--bn must be frozen or train"),
        (["--mode", "full", "--dropout", "yes"], "--dropout must be on or off"),
        (["--mode", "full", "--optimizer", "adam", "--nesterov"], "--nesterov applies to --optimizer sgd"),
        (["--mode", "full", "--nesterov", "--momentum", "0"], "--nesterov needs a --momentum above 0"),
        (["--mode", "full", "--optimizer", "adamw", "--momentum", "0.5"], "--momentum applies to --optimizer sgd"),
        (["--mode", "full", "--step-size", "2"], "--step-size and --gamma apply to --schedule step"),
        (["--mode", "full", "--schedule", "step"], "--schedule step needs --step-size"),
        (["--mode", "full", "--epochs", "3", "--warmup-epochs", "3"], "--warmup-epochs 3 must be fewer"),
        (["--mode", "full", "--clip-grad", "0"], "--clip-grad must be greater than 0"),
        (["--mode", "full", "--clip-grad", "-1"], "--clip-grad"),
        (["--mode", "full", "--lr-backbone", "x"], "--lr-backbone"),
        (["--mode", "full", "--raw-features"], "--raw-features applies to --mode head only"),
        (["--mode", "full", "--lr", "0"], "--lr must be greater than 0"),
        (["--mode", "fast"], "--mode must be 'head'"),
        (["--optimizer", "adam"], "--optimizer applies to --mode full only"),
        (["--resume"], "--resume applies to --mode full only"),
        (["--mode", "head", "--bn", "train"], "--bn applies to --mode full only"),
    ]
    for args, msg in usage:
        rc, _, se = run_train(*(base + args))
        if rc != 2 or msg not in se:
            problems.append("%s: exit %d, %r (want 2 and %r)" % (" ".join(args), rc, se.strip()[-200:], msg))
    one = os.path.join(tmp, "one")
    os.makedirs(os.path.join(one, "a"))
    os.symlink(os.path.join(data, "n0", sorted(os.listdir(os.path.join(data, "n0")))[0]),
               os.path.join(one, "a", "x.jpg"))
    data_errors = [
        (["--data", one], "1 class folder, at least 2 needed"),
        (["--resume"], "--resume: no checkpoint"),
        (["--data", data, "--weights-dir", os.path.join(tmp, "nowhere")], "cannot load the base model"),
        (["--out", os.path.join(tmp, "no", "dir", "m.safetensors")], "cannot write into the folder of --out"),
        (["--checkpoint-dir", os.path.join(tmp, "no", "dir", "ck")], "cannot create the checkpoint folder"),
    ]
    return problems + testlib.train_errors(["--mode", "full", "--base", BASE, "--epochs", "1"],
                                           [("--weights-dir", WEIGHTS), ("--data", data), ("--out", out)],
                                           data_errors, out)


def case_recipe_mismatch(tmp, data):
    """--resume with another recipe than the checkpoint's is refused."""
    path = os.path.join(tmp, "w", "r_term.safetensors")
    rc, _, se = run_train(*(common(data, path, "2", "--lr", "0.02") + ["--resume"]))
    if rc != 1 or "another recipe" not in se:
        return ["--resume with another --lr: exit %d %r" % (rc, se[-300:])]
    return []


def main():
    if not os.path.exists(os.path.join(WEIGHTS, BASE + ".safetensors")) or \
            not os.path.isdir(os.path.join(MONKEYS, "train")):
        testlib.skip_all(NAMES, "../shared weights or data/monkeys absent")
        return testlib.finish()
    with tempfile.TemporaryDirectory() as tmp:
        data = testlib.monkey_subset(tmp, CLASSES, 8)
        os.makedirs(os.path.join(tmp, "w"))
        out = os.path.join(tmp, "w", "full1.safetensors")
        log = os.path.join(tmp, "full1.json")
        testlib.run_case(NAMES[0], case_file, tmp, data, out, log)
        if os.path.exists(out):
            testlib.run_case(NAMES[4], case_pytorch, tmp, out)
            testlib.run_case(NAMES[1], case_threads, tmp, data, out)
            testlib.run_case(NAMES[2], lambda: case_resume(tmp, data, out, log) + case_recipe_mismatch(tmp, data))
        else:
            testlib.skip_all(NAMES[1:3] + NAMES[4:], "no output from the first run")
        testlib.run_case(NAMES[3], case_errors, tmp, data)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
