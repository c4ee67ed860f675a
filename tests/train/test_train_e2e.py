#!/usr/bin/python3
"""End-to-end test of `cnnserve train --mode head` on a small subset of ../shared/data/monkeys
(3 classes x 10 photos plus a broken file, a non-image and a hidden file): the output file (tensors,
metadata), the --log-json shape, bit-identical output at 1 and 2 threads and on a rerun, PyTorch
loading the file into torchvision's model with the same logits as cnnserve, the file served over HTTP
with its labels, usage and data errors, and an interrupted run leaving no file.

Prints one "ok - / not ok - / skip - " line per case."""

import collections
import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
sys.path.insert(0, os.path.join(REPO, "deploy"))
import testlib  # noqa: E402
from testlib import run_train  # noqa: E402

BUILD = testlib.BUILD
BIN = testlib.BIN
SHARED = testlib.SHARED
MONKEYS = testlib.MONKEYS
BASE = "mobilenet_v3_small"
CLASSES = ["n0", "n1", "n2"]
NAMES = {"n0": "mantled howler", "n1": "patas monkey", "n2": "bald uakari"}
TIMEOUT = 600


def parse_safetensors(path):
    """Independent parse: header (ordered), data section bytes."""
    buf = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", buf, 0)
    header = json.loads(buf[8:8 + n].decode("utf-8"), object_pairs_hook=collections.OrderedDict)
    return header, buf[8 + n:], n


def tensor_bytes(header, data, name):
    a, b = header[name]["data_offsets"]
    return data[a:b]


def post_jpeg(url, path, timeout=120):
    """POST a file as image/jpeg; (status, parsed JSON or None, raw body)."""
    u = url.split("/", 3)
    host, port = u[2].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/" + u[3], body=open(path, "rb").read(), headers={"Content-Type": "image/jpeg"})
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    try:
        return r.status, json.loads(body), body
    except ValueError:
        return r.status, None, body


def make_subset(tmp):
    """data/<class>/ with 10 symlinked photos each, plus broken.jpg, notes.txt and .hidden.jpg; labels.tsv."""
    data = testlib.monkey_subset(tmp, CLASSES, 10, odd_files=True)
    labels = os.path.join(tmp, "labels.tsv")
    with open(labels, "w") as f:
        f.write("# folder\tname\n" + "".join("%s\t%s\n" % (c, NAMES[c]) for c in CLASSES))
    return data, labels


def case_file_and_log(tmp, data, labels, out, log):
    problems = []
    rc, so, se = run_train("--base", "mnv3s", "--weights-dir", os.path.join(SHARED, "weights"), "--data", data,
                           "--labels", labels, "--out", out, "--epochs", "4", "--batch", "8", "--threads", "1",
                           "--log-json", log)
    if rc != 0:
        testlib.report("train: subset -> file with the base's tensors, the new head and metadata; --log-json",
                   ["exit %d: %s" % (rc, se[-800:])])
        return False
    if "broken.jpg" not in se or "warning" not in se:
        problems.append("no warning naming broken.jpg: " + se[-500:])
    if "notes.txt: not an image" not in se:
        problems.append("no warning for notes.txt")
    if ".hidden" in se:
        problems.append("hidden file mentioned")
    if "wrote " + out not in so:
        problems.append("summary line: " + so)
    header, body, hlen = parse_safetensors(out)
    base_h, base_body, _ = parse_safetensors(os.path.join(SHARED, "weights", BASE + ".safetensors"))
    if hlen % 8:
        problems.append("header length %d not a multiple of 8" % hlen)
    meta = header.get("__metadata__", {})
    want = {"architecture": BASE, "num_classes": "3", "padding": "tf_same", "mean": "0.5,0.5,0.5",
            "std": "0.5,0.5,0.5", "base": BASE + ".safetensors", "source": "cnnserve train"}
    for k, v in want.items():
        if meta.get(k) != v:
            problems.append("metadata %s = %r, want %r" % (k, meta.get(k), v))
    if json.loads(meta.get("labels", "null")) != [NAMES[c] for c in CLASSES]:
        problems.append("labels %r" % meta.get("labels"))
    if json.loads(meta.get("folders", "null")) != CLASSES:
        problems.append("folders %r" % meta.get("folders"))
    recipe = json.loads(meta.get("recipe", "{}"))
    for k, v in {"mode": "head", "epochs": 4, "batch": 8, "lr": 0.003, "seed": 1, "val_split": 0.3,
                 "momentum": 0.9, "weight_decay": 0.0001, "standardize": True}.items():
        if recipe.get(k) != v:
            problems.append("recipe %s = %r, want %r" % (k, recipe.get(k), v))
    try:
        val = float(meta["val_accuracy"])
        if not 0.0 <= val <= 1.0:
            problems.append("val_accuracy %r" % meta["val_accuracy"])
    except (KeyError, ValueError):
        problems.append("val_accuracy missing or not a number")
    names = [k for k in header if k != "__metadata__"]
    base_names = [k for k in base_h if k != "__metadata__"]
    if sorted(names) != sorted(base_names):
        problems.append("tensor names differ from the base file's")
    for k in names:
        if k in ("classifier.3.weight", "classifier.3.bias"):
            continue
        if header[k]["shape"] != base_h[k]["shape"] or tensor_bytes(header, body, k) != tensor_bytes(base_h, base_body, k):
            problems.append("tensor %s not copied unchanged" % k)
            break
    if header.get("classifier.3.weight", {}).get("shape") != [3, 1024] or \
            header.get("classifier.3.bias", {}).get("shape") != [3]:
        problems.append("head shapes %r %r" % (header.get("classifier.3.weight"), header.get("classifier.3.bias")))
    lg = json.load(open(log))
    if [e.get("epoch") for e in lg.get("epochs", [])] != [1, 2, 3, 4]:
        problems.append("log epochs %r" % lg.get("epochs"))
    for e in lg.get("epochs", []):
        if set(e) != {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}:
            problems.append("epoch keys %r" % sorted(e))
            break
    if lg.get("n_images") != 31 or lg.get("n_skipped") != 1 or lg.get("n_train", 0) + lg.get("n_val", 0) != 30:
        problems.append("log counts %r %r %r %r" % (lg.get("n_images"), lg.get("n_skipped"), lg.get("n_train"),
                                                    lg.get("n_val")))
    if not any(s.endswith("broken.jpg") for s in lg.get("skipped", [])):
        problems.append("log skipped %r" % lg.get("skipped"))
    if [c.get("folder") for c in lg.get("classes", [])] != CLASSES or lg.get("features", {}).get("dim") != 1024:
        problems.append("log classes/features %r %r" % (lg.get("classes"), lg.get("features")))
    if abs(lg.get("final", {}).get("val_accuracy", -1) - val) > 1e-6:
        problems.append("final val accuracy %r vs metadata %r" % (lg.get("final"), meta.get("val_accuracy")))
    # `cnnserve eval --subset val` re-creates the same split and scores the file through the service's
    # classification path: its top-1 is the validation accuracy train measured on its features.
    ev = os.path.join(tmp, "eval_val.json")
    p = subprocess.run([BIN, "eval", "--weights-dir", os.path.dirname(out), "--models",
                        os.path.basename(out)[:-len(".safetensors")], "--data", data, "--subset", "val", "--quiet",
                        "--out", ev], capture_output=True, timeout=TIMEOUT)
    if p.returncode != 0:
        problems.append("eval --subset val: exit %d %s" % (p.returncode, p.stderr.decode(errors="replace")[-300:]))
    else:
        metrics = (json.load(open(ev)).get("models") or [{}])[0].get("metrics", {})
        top1, xent = metrics.get("top1"), metrics.get("cross_entropy")
        if top1 is None or abs(top1 - val) > 1e-6:
            problems.append("eval --subset val top-1 %r, train's validation accuracy %r" % (top1, val))
        if xent is None or abs(xent - lg["final"]["val_loss"]) > 1e-4 * lg["final"]["val_loss"]:
            problems.append("eval --subset val cross-entropy %r, train's validation loss %r" % (
                xent, lg["final"]["val_loss"]))
    testlib.report("train: subset -> file with the base's tensors, the new head and metadata; --log-json; "
               "eval --subset val agrees", problems)
    return True


def case_deterministic(tmp, data, labels, out):
    problems = []
    first = open(out, "rb").read()
    for threads, name in (("2", "t2.safetensors"), ("1", "again.safetensors")):
        path = os.path.join(tmp, name)
        rc, _, se = run_train("--base", BASE, "--weights-dir", os.path.join(SHARED, "weights"), "--data", data,
                              "--labels", labels, "--out", path, "--epochs", "4", "--batch", "8", "--threads",
                              threads)
        if rc != 0:
            problems.append("threads %s: exit %d %s" % (threads, rc, se[-300:]))
        elif open(path, "rb").read() != first:
            problems.append("threads %s: file differs" % threads)
    rc, _, _ = run_train("--base", BASE, "--weights-dir", os.path.join(SHARED, "weights"), "--data", data,
                         "--labels", labels, "--out", os.path.join(tmp, "seed2.safetensors"), "--epochs", "4",
                         "--batch", "8", "--seed", "2")
    if rc != 0 or open(os.path.join(tmp, "seed2.safetensors"), "rb").read() == first:
        problems.append("another seed gave the same file (or failed: exit %d)" % rc)
    testlib.report("train: bit-identical file at --threads 1 and 2 and on a rerun; another seed differs", problems)


def classify_probs(wdir, model, files):
    p = subprocess.run([BIN, "classify", "--weights-dir", wdir, "--model", model, "--threads", "1", "--json",
                        "--top-k", "3"] + files, capture_output=True, timeout=TIMEOUT)
    if p.returncode != 0:
        return None, p.stderr.decode(errors="replace")[-500:]
    return [json.loads(line) for line in p.stdout.decode().splitlines()], ""


def pytorch_vs_classify(tmp, wdir, model_name, test_files, n_classes):
    """Problems (a list) of the mobilenet_v3_small file WDIR/MODEL_NAME.safetensors loaded into torchvision's
    model with load_state_dict(strict=True): its probabilities on test_files against `classify`'s (both on
    our preprocessed inputs), within 1e-4 and the same top-1. Raises testlib.Skip without torch. Also used
    by test_train_full.py for a --mode full output."""
    try:
        import numpy as np
        import torch
        import torchvision
    except ImportError:
        raise testlib.Skip("python3-torch/torchvision not installed")
    import gen_reference
    import safetensors_io
    problems = []
    path = os.path.join(wdir, model_name + ".safetensors")
    model = torchvision.models.mobilenet_v3_small(num_classes=n_classes)
    gen_reference.apply_tf_same(model)
    sd = {k: torch.as_tensor(v) for k, v in safetensors_io.load_file(path).tensors_f32().items()}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        return ["load_state_dict: %s" % str(exc)[:500]]
    model.eval()
    # Our preprocessed inputs (the service's decode and resize) through image_dump, so the comparison
    # is about the network alone.
    dump = os.path.join(REPO, BUILD, "tests", "image_dump")
    args = [dump, "--min-short", "512", "--resize", "256", "--crop", "224", "--mean", "0.5,0.5,0.5", "--std",
            "0.5,0.5,0.5"]
    for i, f in enumerate(test_files):
        args += [f, os.path.join(tmp, "in%d" % i)]
    p = subprocess.run(args, capture_output=True, timeout=TIMEOUT)
    if p.returncode != 0:
        return ["image_dump: %s" % p.stderr.decode(errors="replace")[-300:]]
    x = torch.stack([torch.from_numpy(np.fromfile(os.path.join(tmp, "in%d.f32" % i), dtype="<f4").reshape(3, 224, 224))
                     for i in range(len(test_files))])
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    ours, err = classify_probs(wdir, model_name, test_files)
    if ours is None:
        return ["classify: " + err]
    worst = 0.0
    for i, a in enumerate(ours):
        for pred in a["predictions"]:
            worst = max(worst, abs(pred["score"] - float(probs[i, pred["index"]])))
        if a["predictions"][0]["index"] != int(probs[i].argmax()):
            problems.append("%s: top-1 %d, PyTorch %d" % (test_files[i], a["predictions"][0]["index"],
                                                          int(probs[i].argmax())))
    print("# largest |probability difference| vs PyTorch: %.3g" % worst)
    if worst > 1e-4:
        problems.append("probabilities differ by up to %.3g" % worst)
    return problems


def case_pytorch(tmp, wdir, model_name, test_files):
    testlib.run_case("train: PyTorch load_state_dict(strict) of the file gives cnnserve's probabilities",
                     pytorch_vs_classify, tmp, wdir, model_name, test_files, 3)


def case_serve(wdir, model_name, test_files, truth):
    problems = []
    srv = testlib.Server(wdir, "--workers", "1")
    try:
        srv.wait_ready()
        status, body = testlib.http_get(srv.url + "/v1/models")
        names = [m.get("name") for m in json.loads(body).get("models", [])] if status == 200 else []
        if model_name not in names:
            problems.append("/v1/models lacks %s: %s %r" % (model_name, status, body[:300]))
        n_right = 0
        for f, c in zip(test_files, truth):
            status, a, body = post_jpeg(srv.url + "/v1/classify?model=%s&top_k=3" % model_name, f)
            preds = (a or {}).get("predictions", [])
            if status != 200 or len(preds) != 3:
                problems.append("%s: status %s %r" % (f, status, body[:300]))
                continue
            for p in preds:
                if p.get("label") != NAMES[CLASSES[p.get("index")]]:
                    problems.append("%s: index %r labelled %r" % (f, p.get("index"), p.get("label")))
            n_right += preds[0]["label"] == NAMES[c]
        print("# top-1 through HTTP: %d of %d test photos" % (n_right, len(test_files)))
        if n_right < len(test_files) - 1:
            problems.append("only %d of %d test photos right" % (n_right, len(test_files)))
    finally:
        srv.stop()
    testlib.report("train: the trained file served over HTTP, predictions carry its labels", problems)


def case_errors(tmp, data):
    problems = []
    w = os.path.join(SHARED, "weights")
    out = os.path.join(tmp, "err.safetensors")
    wlink = os.path.join(tmp, "wlink")  # the base file, and another name for it
    os.makedirs(wlink)
    os.symlink(os.path.join(w, BASE + ".safetensors"), os.path.join(wlink, BASE + ".safetensors"))
    os.symlink(os.path.join(w, BASE + ".safetensors"), os.path.join(wlink, "alias.safetensors"))
    usage = [
        ([], "--base is required"),
        (["--base", "resnet50", "--data", data, "--out", out], "unknown --base"),
        (["--base", BASE, "--out", out], "--data is required"),
        (["--base", BASE, "--data", data], "--out FILE or --name NAME is required"),
        (["--base", BASE, "--data", data, "--out", out, "--lr", "abc"], "--lr"),
        (["--base", BASE, "--data", data, "--out", out, "--lr", "0"], "--lr must be greater than 0"),
        (["--base", BASE, "--data", data, "--out", out, "--epochs", "0"], "--epochs"),
        (["--base", BASE, "--data", data, "--out", out, "--val-split", "1.5"], "--val-split"),
        (["--base", BASE, "--data", data, "--out", out, "--mode", "fast"], "--mode must be 'head'"),
        (["--base", BASE, "--data", data, "--out", out, "--optimizer", "adam"], "applies to --mode full only"),
        (["--base", BASE, "--data", data, "--out", os.path.join(tmp, "x.bin")], "must end in .safetensors"),
        (["--base", BASE, "--data", data, "--out", out, "--name", "other"], "differs from the --out file's stem"),
        (["--base", BASE, "--data", data, "--name", "mnv3s"], "ImageNet model's name"),
        (["--base", BASE, "--data", data, "--name", "../x"], "model name must be"),
        (["--base", BASE, "--data", data, "--out", out, "--bogus", "1"], "unknown flag"),
        (["--base", BASE, "--data", data, "--weights-dir", wlink, "--out", os.path.join(wlink, "alias.safetensors")],
         "is the base model's file"),
    ]
    for args, msg in usage:
        rc, _, se = run_train(*(["--weights-dir", w] + args if "--weights-dir" not in args else args))
        if rc != 2 or msg not in se:
            problems.append("%s: exit %d, %r (want 2 and %r)" % (" ".join(args), rc, se.strip()[-200:], msg))
    one = os.path.join(tmp, "one")
    os.makedirs(os.path.join(one, "a"))
    os.symlink(os.path.join(data, "n0", sorted(os.listdir(os.path.join(data, "n0")))[0]),
               os.path.join(one, "a", "x.jpg"))
    empty = os.path.join(tmp, "emptycls")
    os.makedirs(os.path.join(empty, "b"))
    os.symlink(os.path.join(one, "a"), os.path.join(empty, "a"))
    allbroken = os.path.join(tmp, "allbroken")
    os.makedirs(os.path.join(allbroken, "b"))
    os.symlink(os.path.join(one, "a"), os.path.join(allbroken, "a"))
    with open(os.path.join(allbroken, "b", "bad.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    nonutf8 = os.path.join(tmp, "nonutf8")
    os.makedirs(os.fsencode(os.path.join(nonutf8, "ok")))
    os.makedirs(os.path.join(nonutf8.encode(), b"\xff\xfe"))
    os.symlink(os.path.join(one, "a", "x.jpg"), os.path.join(nonutf8, "ok", "x.jpg"))
    os.symlink(os.path.join(one, "a", "x.jpg").encode(), os.path.join(nonutf8.encode(), b"\xff\xfe", b"y.jpg"))
    badlabels = os.path.join(tmp, "bad_labels.tsv")
    with open(badlabels, "w") as f:
        f.write("n0 no tab here\n")
    data_errors = [
        (["--data", one], "1 class folder, at least 2 needed"),
        (["--data", empty], "has no images"),
        (["--data", allbroken], "class 'b' has no readable training image"),
        (["--data", os.path.join(tmp, "missing")], "cannot open data folder"),
        (["--data", nonutf8], "is not valid UTF-8"),
        (["--data", data, "--labels", badlabels], "expected 'folder<TAB>name'"),
        (["--data", data, "--weights-dir", os.path.join(tmp, "nowhere")], "cannot load the base model"),
        (["--data", data, "--out", os.path.join(tmp, "no", "dir", "m.safetensors")], "temporary file"),
    ]
    problems += testlib.train_errors(["--base", BASE, "--epochs", "1"], [("--weights-dir", w), ("--out", out)],
                                     data_errors, out)
    rc, so, se = run_train("--base", BASE, "--weights-dir", wlink, "--data", data, "--name", "by_name", "--epochs",
                           "1", "--val-split", "0")
    path = os.path.join(wlink, "by_name.safetensors")
    if rc != 0 or not os.path.exists(path):
        problems.append("--name without --out: exit %d, no %s: %s" % (rc, path, se[-300:]))
    elif "val_accuracy" in parse_safetensors(path)[0]["__metadata__"] or "no validation split" not in so:
        problems.append("--val-split 0: val_accuracy in the metadata or summary %r" % so)
    leftovers = [f for f in os.listdir(tmp) if ".tmp-" in f]
    if leftovers:
        problems.append("temporary files left: %r" % leftovers)
    testlib.report("train: usage errors exit 2, data errors exit 1, each with a clear message and no file; "
               "--name alone writes <weights-dir>/NAME.safetensors; --val-split 0", problems)


def case_interrupt(tmp):
    """SIGINT while features are computed: the process stops and leaves no output or temporary file."""
    problems = []
    outdir = os.path.join(tmp, "interrupted")
    os.makedirs(outdir)
    out = os.path.join(outdir, "m.safetensors")
    p = subprocess.Popen([BIN, "train", "--base", BASE, "--weights-dir", os.path.join(SHARED, "weights"), "--data",
                          os.path.join(MONKEYS, "train"), "--out", out, "--threads", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         # SIGINT's default back: a suite started in the background inherits it ignored
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    line = p.stderr.readline().decode(errors="replace")  # "... features on 1 threads": extraction starts
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    p.stderr.close()
    if "features on" not in line:
        problems.append("unexpected first line %r" % line)
    if rc == 0:
        testlib.skip("train: SIGINT during feature extraction leaves no file", "the run finished before the signal")
        return
    if os.listdir(outdir):
        problems.append("left behind: %r" % os.listdir(outdir))
    testlib.report("train: SIGINT during feature extraction leaves no file", problems)


def main():
    weights = os.path.join(SHARED, "weights", BASE + ".safetensors")
    if not os.path.exists(weights) or not os.path.isdir(os.path.join(MONKEYS, "train")):
        testlib.skip("train e2e", "../shared weights or data/monkeys absent")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data, labels = make_subset(tmp)
        wdir = os.path.join(tmp, "weights")
        os.makedirs(wdir)
        out = os.path.join(wdir, "monkeys3.safetensors")
        if case_file_and_log(tmp, data, labels, out, os.path.join(tmp, "log.json")):
            case_deterministic(tmp, data, labels, out)
            tests = []
            for c in CLASSES:
                tests += [(os.path.join(MONKEYS, "test", c, f), c)
                          for f in sorted(os.listdir(os.path.join(MONKEYS, "test", c)))[:2]]
            case_pytorch(tmp, wdir, "monkeys3", [f for f, _ in tests])
            case_serve(wdir, "monkeys3", [f for f, _ in tests], [c for _, c in tests])
        case_errors(tmp, data)
        case_interrupt(tmp)
    return 0


if __name__ == "__main__":
    main()
    sys.exit(testlib.finish())
