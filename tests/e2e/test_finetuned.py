#!/usr/bin/python3
"""End-to-end test of serving fine-tuned models with the real binary: a weights directory with the two
real ../shared models and stand-in fine-tuned files (tests/tools/make_finetuned.py: the new last
layer holds the base classifier's rows of a few ImageNet classes, so the right answer is known: the
base model's probabilities of those classes, renormalized), classified through HTTP and the CLI,
GET /v1/models fields, --models/--default-model with file stems, bad files listed as failed, and
reloads (SIGHUP, POST /v1/models/reload) after adding/changing/removing/corrupting files while a
stream of requests runs: no request may fail, and a request started before its model was removed
still gets that model's answer.

Needs ../shared (weights and the ImageNet sample) and numpy; skips saying so otherwise.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402  (report, skip, Server)
import test_e2e as e2e  # noqa: E402  (curl, classify_cli_lines, strip_volatile: the e2e helpers)

REPO = e2e.REPO
sys.path.insert(0, os.path.join(REPO, "tests", "tools"))

BASE = "shufflenet_v2_x1_0"
PHOTOS = ["n01440764_tench.JPEG", "n01443537_goldfish.JPEG", "n01514859_hen.JPEG", "n01514668_cock.JPEG",
          "n01518878_ostrich.JPEG"]
# name -> (base, ImageNet classes whose rows make the layer, labels)
FINETUNED = {
    "fish": (BASE, [0, 1, 8], ["Tinca tinca", "Carassius auratus", "Gallus hen"]),
    "birds": (BASE, [8, 7, 9], ["hen", "cock", "ostrich"]),
    "mfish": ("mobilenet_v3_small", [1, 0], ["goldfish (m)", "tench (m)"]),
}


def make(wdir, name, base, classes, labels, extra=None):
    import make_finetuned
    make_finetuned.make(os.path.join(e2e.SHARED, "weights", base + ".safetensors"),
                        os.path.join(wdir, name + ".safetensors"), classes, labels, extra_meta=extra)


def replace_with_garbage(path):
    """Corrupts a model file the way a careful writer replaces one: a new file renamed over it (a file
    truncated in place under a running server's mapping is outside what any mmap-based server survives)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    os.rename(tmp, path)


def post(conn, path, body, timeout=None):
    conn.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
    r = conn.getresponse()
    return r.status, r.read()


def probs_of(srv, photo_bytes, model):
    """index -> score of every class of model (top_k=1000)."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=e2e.CURL_MAX_TIME)
    st, body = post(c, "/v1/classify?model=%s&top_k=1000" % model, photo_bytes)
    c.close()
    if st != 200:
        return None
    return {p["index"]: p["score"] for p in json.loads(body)["predictions"]}


def check_finetuned_answer(problems, what, answer_preds, base_probs, classes, labels, top_k):
    """The fine-tuned answer equals the base probabilities of its classes renormalized."""
    k = min(top_k, len(labels))
    if len(answer_preds) != k:
        problems.append("%s: %d predictions, want min(top_k %d, K %d)" % (what, len(answer_preds), top_k, len(labels)))
        return
    total = sum(base_probs.get(c, 0.0) for c in classes)
    want = sorted(((base_probs.get(c, 0.0) / total, i) for i, c in enumerate(classes)), key=lambda t: (-t[0], t[1]))
    for rank, p in enumerate(answer_preds):
        i = p["index"]
        if not 0 <= i < len(labels) or p["label"] != labels[i]:
            problems.append("%s: prediction %r does not carry the file's label of its index" % (what, p))
            continue
        q = base_probs.get(classes[i], 0.0) / total
        if abs(p["score"] - q) > 2e-4 + 2e-3 * q:
            problems.append("%s: %s score %.6f, base renormalized %.6f" % (what, p["label"], p["score"], q))
    if want[0][0] - want[1][0] > 1e-3 and answer_preds[0]["index"] != want[0][1]:
        problems.append("%s: top-1 %s, want %s" % (what, answer_preds[0]["label"], labels[want[0][1]]))


def case_classify(srv, photos):
    problems = []
    for name, (base, classes, labels) in FINETUNED.items():
        for fname, data in photos.items():
            base_probs = probs_of(srv, data, base)
            r = e2e.curl(srv.url + "/v1/classify?model=%s&top_k=10" % name, "-H", "Content-Type: image/jpeg",
                         "--data-binary", "@" + os.path.join(e2e.SAMPLE, fname))
            a = r.json() or {}
            if r.status != 200 or a.get("model") != name or base_probs is None:
                problems.append("%s %s: %s" % (name, fname, r.describe()))
                continue
            check_finetuned_answer(problems, "%s %s" % (name, fname), a["predictions"], base_probs, classes, labels, 10)
    r = e2e.curl(srv.url + "/v1/classify?model=fish&top_k=1", "-H", "Content-Type: image/jpeg", "--data-binary",
                 "@" + os.path.join(e2e.SAMPLE, PHOTOS[0]))
    preds = (r.json() or {}).get("predictions", [])
    if len(preds) != 1 or preds[0].get("label") != "Tinca tinca":
        problems.append("fish top_k=1 on the tench photo: %s" % r.describe())
    testlib.report("fine-tuned: HTTP answers carry the file's labels and equal the base's renormalized probabilities "
               "(3 files, 2 architectures, 5 photos; top_k capped at K)", problems)


def case_model_all(srv, photos):
    problems = []
    data = photos[PHOTOS[2]]
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=e2e.CURL_MAX_TIME)
    st, body = post(c, "/v1/classify?model=all&top_k=5", data)
    c.close()
    a = json.loads(body) if st == 200 else {}
    got = [r["model"] for r in a.get("results", [])]
    want = ["mobilenet_v3_small", "shufflenet_v2_x1_0", "birds", "fish", "mfish"]
    if got != want:
        problems.append("model=all ran %s, want %s (status %d)" % (got, want, st))
    for r in a.get("results", []):
        if r["model"] in FINETUNED:
            labels = FINETUNED[r["model"]][2]
            if len(r["predictions"]) != min(5, len(labels)) or any(p["label"] != labels[p["index"]] for p in r["predictions"]):
                problems.append("model=all %s: %s" % (r["model"], r["predictions"]))
        elif len(r["predictions"]) != 5 or any(not 0 <= p["index"] < 1000 for p in r["predictions"]):
            problems.append("model=all %s: %s" % (r["model"], r["predictions"]))
    testlib.report("fine-tuned: model=all runs the ImageNet and the fine-tuned models, each with its own labels", problems)


def case_models_endpoint(srv):
    problems = []
    r = e2e.curl(srv.url + "/v1/models")
    d = r.json() or {}
    by = {m["name"]: m for m in d.get("models", [])}
    if d.get("generation") != 1:
        problems.append("generation %r" % d.get("generation"))
    for name, (base, classes, labels) in FINETUNED.items():
        m = by.get(name, {})
        want = {"state": "ready", "classes": len(labels), "labels_count": len(labels), "labels": labels,
                "architecture": base, "base": base + ".safetensors", "fine_tuned": True, "val_accuracy": 0.5}
        for k, v in want.items():
            if m.get(k) != v:
                problems.append("%s.%s = %r, want %r" % (name, k, m.get(k), v))
        if not isinstance(m.get("recipe"), dict) or m["recipe"].get("mode") != "head":
            problems.append("%s.recipe = %r" % (name, m.get("recipe")))
        if not (m.get("params", 0) > 1000000 and m.get("macs", 0) > 1000000 and m.get("resident_bytes", 0) > 0):
            problems.append("%s: params/macs/resident_bytes %r" % (name, [m.get(k) for k in ("params", "macs", "resident_bytes")]))
    for name in ("mobilenet_v3_small", "shufflenet_v2_x1_0"):
        m = by.get(name, {})
        if m.get("state") != "ready" or m.get("classes") != 1000 or m.get("labels_count") != 1000 or m.get("fine_tuned"):
            problems.append("%s: %r" % (name, {k: m.get(k) for k in ("state", "classes", "labels_count", "fine_tuned")}))
    failed = {"unknown_arch": "unknown __metadata__ architecture 'resnet50'", "alex": "alias of alexnet",
              "imagenet_copy": "no __metadata__ labels list", "broken": "broken.safetensors",
              "bad_labels": "labels has 2 entries but the classifier has 3"}
    for name, why in failed.items():
        m = by.get(name, {})
        if m.get("state") != "failed" or why not in m.get("why", ""):
            problems.append("%s: state %r why %r, want failed with %r" % (name, m.get("state"), m.get("why"), why))
    r = e2e.curl(srv.url + "/v1/models/birds")
    if r.status != 200 or (r.json() or {}).get("labels") != FINETUNED["birds"][2]:
        problems.append("GET /v1/models/birds: %s" % r.describe())
    r = e2e.curl(srv.url + "/v1/classify?model=broken", "-H", "Content-Type: image/jpeg", "--data-binary",
                 "@" + os.path.join(e2e.SAMPLE, PHOTOS[0]))
    if r.status != 404 or "broken" in ((r.json() or {}).get("error", {}).get("loaded_models") or []):
        problems.append("model=broken: %s" % r.describe())
    log = "\n".join(srv.log())
    for name in failed:
        if "model_failed" not in log or name not in log:
            problems.append("no model_failed log line for %s" % name)
    testlib.report("fine-tuned: GET /v1/models shows classes, labels, base, recipe, val_accuracy, params; bad files "
               "(unknown architecture, alias name, ImageNet copy, garbage, label count) failed with the reason", problems)


def case_names_and_cli(wdir, photos):
    problems = []
    srv = testlib.Server(wdir, "--workers", "1", "--models", "fish, birds,shufflenet", "--default-model", "birds")
    try:
        srv.wait_ready()
        photo = os.path.join(e2e.SAMPLE, PHOTOS[3])
        r = e2e.curl(srv.url + "/v1/classify", "-H", "Content-Type: image/jpeg", "--data-binary", "@" + photo)
        a = r.json() or {}
        if r.status != 200 or a.get("model") != "birds":
            problems.append("default model: %s" % r.describe())
        r = e2e.curl(srv.url + "/v1/models")
        loaded = [m["name"] for m in (r.json() or {}).get("models", []) if m.get("state") in ("ready", "loaded")]
        if sorted(loaded) != ["birds", "fish", "shufflenet_v2_x1_0"] or (r.json() or {}).get("default_model") != "birds":
            problems.append("--models fish,birds,shufflenet loaded %s" % loaded)
        r = e2e.curl(srv.url + "/v1/models/reload", "-X", "POST")
        if r.status != 403 or (r.json() or {}).get("error", {}).get("code") != "forbidden":
            problems.append("reload without --admin-reload: %s" % r.describe())
        lines = e2e.classify_cli_lines(wdir, "birds", [photo], problems, e2e.CURL_MAX_TIME)
        r = e2e.curl(srv.url + "/v1/classify?model=birds&top_k=5", "-H", "Content-Type: image/jpeg", "--data-binary",
                     "@" + photo)
        if lines and e2e.strip_volatile(json.loads(lines[0])) != e2e.strip_volatile(r.json() or {}):
            problems.append("classify --model birds differs from HTTP: %s vs %s" % (lines[0][:300], r.body[:300]))
    finally:
        srv.stop()
    for models, want in (("fish,nosuch", "unknown model 'nosuch'"), ("broken", "model broken")):
        p = subprocess.run([e2e.BIN, "serve", "--port", "0", "--weights-dir", wdir, "--models", models],
                           capture_output=True, timeout=120)
        if p.returncode == 0 or want not in p.stderr.decode():
            problems.append("--models %s: exit %d, stderr %r" % (models, p.returncode, p.stderr[-300:]))
    testlib.report("fine-tuned: --models/--default-model take file stems, classify --model equals HTTP, reload over "
               "HTTP is 403 without --admin-reload, unknown or broken named models stop the start", problems)


class Stream:
    """Threads posting classify requests on keep-alive connections until stopped; records every failure."""

    def __init__(self, port, data, n_threads=3):
        self.port, self.data = port, data
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.n_ok, self.failures = 0, []
        self.birds_labels = set()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(n_threads)]
        for t in self.threads:
            t.start()

    def run(self, i):
        queries = ["?model=shufflenet_v2_x1_0", "?model=birds&top_k=10", "?model=all&top_k=3", ""]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=e2e.CURL_MAX_TIME)
        n = i
        while not self.stop_ev.is_set():
            q = queries[n % len(queries)]
            n += 1
            try:
                st, body = post(conn, "/v1/classify" + q, self.data)
                a = json.loads(body)
            except (OSError, http.client.HTTPException, ValueError) as ex:
                with self.lock:
                    self.failures.append("%s: %r" % (q, ex))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=e2e.CURL_MAX_TIME)
                continue
            with self.lock:
                if st != 200:
                    self.failures.append("%s: %d %s" % (q, st, body[:200]))
                else:
                    self.n_ok += 1
                    if "birds" in q:
                        self.birds_labels.add(tuple(sorted(p["label"] for p in a["predictions"])))
        conn.close()

    def finish(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(e2e.CURL_MAX_TIME)


def slow_request_start(port, model, data):
    """Sends the headers and half the body of a classify request; returns the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=e2e.CURL_MAX_TIME)
    s.sendall(("POST /v1/classify?model=%s&top_k=3 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
               "Content-Length: %d\r\nConnection: close\r\n\r\n" % (model, len(data))).encode() + data[:len(data) // 2])
    return s


def slow_request_finish(s, data):
    s.sendall(data[len(data) // 2:])
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        chunks.append(b)
    s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def wait_generation(srv, gen, limit_s=120):
    t_end = time.time() + limit_s
    while time.time() < t_end:
        d = e2e.curl(srv.url + "/v1/models", timeout=10).json() or {}
        if d.get("generation", 0) >= gen:
            return d
        time.sleep(0.05)
    return None


def case_reload_under_load(srv, wdir, photos):
    problems = []
    data = photos[PHOTOS[2]]
    stream = Stream(srv.port, data)
    time.sleep(0.5)
    slow = slow_request_start(srv.port, "fish", data)
    time.sleep(0.2)  # the request has started: it holds generation 1
    # Add, change (new file renamed over the old), remove, corrupt; then SIGHUP.
    make(wdir, "newbie", "mobilenet_v3_small", [7, 8], ["new cock", "new hen"])
    tmpdir = tempfile.mkdtemp(dir=wdir)
    make(tmpdir, "birds", BASE, [9, 8], ["ostrich v2", "hen v2"])
    os.rename(os.path.join(tmpdir, "birds.safetensors"), os.path.join(wdir, "birds.safetensors"))
    os.rmdir(tmpdir)
    os.unlink(os.path.join(wdir, "fish.safetensors"))
    replace_with_garbage(os.path.join(wdir, "mfish.safetensors"))
    srv.proc.send_signal(signal.SIGHUP)
    d = wait_generation(srv, 2)
    by = {m["name"]: m for m in (d or {}).get("models", [])}
    if d is None:
        problems.append("no generation 2 after SIGHUP")
    if by.get("newbie", {}).get("labels") != ["new cock", "new hen"] or by["newbie"].get("state") not in ("loaded", "ready"):
        problems.append("new file: %r" % by.get("newbie"))
    if by.get("birds", {}).get("labels") != ["ostrich v2", "hen v2"]:
        problems.append("changed file not reloaded: %r" % by.get("birds", {}).get("labels"))
    if "fish" in by:
        problems.append("removed file still listed: %r" % by["fish"])
    if by.get("mfish", {}).get("state") != "failed" or "mfish.safetensors" not in by.get("mfish", {}).get("why", ""):
        problems.append("corrupted file: %r" % by.get("mfish"))
    status, body = slow_request_finish(slow, data)
    try:
        a = json.loads(body)
    except ValueError:
        a = {}
    if status != 200 or a.get("model") != "fish" or [p["label"] for p in a.get("predictions", [])][:1] != ["Gallus hen"]:
        problems.append("request started before fish was removed: %d %r" % (status, body[:300]))
    r = e2e.curl(srv.url + "/v1/classify?model=fish", "-H", "Content-Type: image/jpeg", "--data-binary",
                 "@" + os.path.join(e2e.SAMPLE, PHOTOS[2]))
    if r.status != 404:
        problems.append("model=fish after its removal: %s" % r.describe())
    r = e2e.curl(srv.url + "/v1/classify?model=newbie", "-H", "Content-Type: image/jpeg", "--data-binary",
                 "@" + os.path.join(e2e.SAMPLE, PHOTOS[2]))
    if r.status != 200 or (r.json() or {}).get("predictions", [{}])[0].get("label") not in ("new cock", "new hen"):
        problems.append("model=newbie: %s" % r.describe())

    # Restore mfish, reload over HTTP; then a burst of SIGHUPs, all under the same stream.
    make(wdir, "mfish", *FINETUNED["mfish"])
    r = e2e.curl(srv.url + "/v1/models/reload", "-X", "POST")
    rl = (r.json() or {}).get("reload", {})
    if (r.status != 200 or rl.get("generation") != 3 or "mfish" not in rl.get("loaded", [])
            or "mfish" in [f.get("model") for f in rl.get("failed", [])] or rl.get("reloaded") != 1):
        problems.append("POST /v1/models/reload: %s" % r.describe())
    for i in range(6):
        if i % 2:
            make(wdir, "flip", BASE, [0, 1], ["a", "b"])
        elif os.path.exists(os.path.join(wdir, "flip.safetensors")):
            os.unlink(os.path.join(wdir, "flip.safetensors"))
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
    d = wait_generation(srv, 4)
    time.sleep(1.0)
    stream.finish()
    if stream.failures:
        problems.append("%d of %d requests failed during the reloads: %s" % (
            len(stream.failures), stream.n_ok + len(stream.failures), stream.failures[:5]))
    if stream.n_ok < 10:
        problems.append("only %d requests completed during the reloads" % stream.n_ok)
    old = tuple(sorted(FINETUNED["birds"][2]))
    new = tuple(sorted(["ostrich v2", "hen v2"]))
    if not stream.birds_labels <= {old, new} or new not in stream.birds_labels:
        problems.append("model=birds answers had label sets %s" % stream.birds_labels)
    if srv.proc.poll() is not None:
        problems.append("server exited with %s" % srv.proc.returncode)
    # Every request has ended: no generation may still map a removed or replaced file.
    stale = ["?"]
    for _ in range(100):
        with open("/proc/%d/maps" % srv.proc.pid) as f:
            stale = sorted({ln.split(None, 5)[-1].strip() for ln in f if ".safetensors (deleted)" in ln})
        if not stale:
            break
        time.sleep(0.1)
    if stale:
        problems.append("old generations still map removed/replaced files: %s" % stale)
    m = e2e.curl(srv.url + "/metrics").body.decode()
    for want in ('cnnserve_requests_total{route="/v1/classify",model="fish",code="200"}',
                 'cnnserve_model_state{model="newbie",state="ready"} 1', "cnnserve_models_generation"):
        if want not in m:
            problems.append("metrics lack %s" % want)
    log = "\n".join(srv.log())
    if "reloaded" not in log or "model_failed" not in log:
        problems.append("no reloaded/model_failed log lines")
    print("# %d requests answered during %d reloads" % (stream.n_ok, 8))
    testlib.report("fine-tuned: SIGHUP / POST /v1/models/reload add, reload, drop and fail models under a stream of "
               "requests: none fails, an in-flight request on a removed model finishes, metrics keep its series",
               problems)


MONKEYS = os.path.join(e2e.SHARED, "data", "monkeys")


def case_train_then_serve(srv, wdir, tmp):
    """`cnnserve train` on a small monkeys subset (3 classes x 10 photos) writes into the served
    directory; SIGHUP serves it; HTTP answers carry the labels file's names and agree with the CLI."""
    name = "fine-tuned: cnnserve train on 30 monkey photos, SIGHUP serves it, HTTP answers carry its labels"
    if not os.path.isdir(os.path.join(MONKEYS, "train")):
        testlib.skip(name, "../shared/data/monkeys absent")
        return
    problems = []
    classes = {"n0": "mantled howler", "n1": "patas monkey", "n2": "bald uakari"}
    data = os.path.join(tmp, "monkeys3")
    train_files = {}
    for c in classes:
        os.makedirs(os.path.join(data, c))
        files = sorted(os.listdir(os.path.join(MONKEYS, "train", c)))[:10]
        for f in files:
            os.symlink(os.path.join(MONKEYS, "train", c, f), os.path.join(data, c, f))
        train_files[c] = [os.path.join(MONKEYS, "train", c, f) for f in files]
    labels_file = os.path.join(tmp, "monkey_labels.tsv")
    with open(labels_file, "w") as f:
        for c, label in classes.items():
            f.write("%s\t%s\n" % (c, label))
    out = os.path.join(wdir, "monkeys.safetensors")
    t0 = time.time()
    p = subprocess.run([e2e.BIN, "train", "--base", "mobilenet_v3_small", "--weights-dir", wdir, "--data", data,
                        "--labels", labels_file, "--out", out, "--epochs", "20", "--val-split", "0.3", "--seed", "3",
                        "--threads", "2"], capture_output=True, timeout=900)
    print("# train: exit %d in %.1f s" % (p.returncode, time.time() - t0))
    if p.returncode != 0 or not os.path.exists(out):
        testlib.report(name, ["train: exit %d: %s" % (p.returncode, p.stderr[-500:])])
        return
    gen = (e2e.curl(srv.url + "/v1/models").json() or {}).get("generation", 0)
    srv.proc.send_signal(signal.SIGHUP)
    d = wait_generation(srv, gen + 1) or {}
    m = {x["name"]: x for x in d.get("models", [])}.get("monkeys", {})
    if m.get("state") not in ("loaded", "ready") or m.get("labels") != list(classes.values()) or m.get("classes") != 3:
        problems.append("GET /v1/models monkeys: %r" % {k: m.get(k) for k in ("state", "labels", "classes", "why")})
    if m.get("base") != "mobilenet_v3_small.safetensors" or not isinstance(m.get("recipe"), dict) \
            or m["recipe"].get("epochs") != 20 or not isinstance(m.get("val_accuracy"), (int, float)):
        problems.append("monkeys base/recipe/val_accuracy: %r" % {k: m.get(k) for k in ("base", "recipe", "val_accuracy")})
    n_right = n_all = 0
    paths = [f for c in classes for f in train_files[c][:4]]
    lines = e2e.classify_cli_lines(wdir, "monkeys", paths, problems, e2e.CURL_MAX_TIME) or []
    for i, (c, path) in enumerate((c, f) for c in classes for f in train_files[c][:4]):
        r = e2e.curl(srv.url + "/v1/classify?model=monkeys&top_k=5", "-H", "Content-Type: image/jpeg",
                     "--data-binary", "@" + path)
        a = r.json() or {}
        preds = a.get("predictions", [])
        if r.status != 200 or a.get("model") != "monkeys" or len(preds) != 3 or \
                sorted(p["label"] for p in preds) != sorted(classes.values()):
            problems.append("%s: %s" % (os.path.basename(path), r.describe()))
            continue
        if any(p["label"] != list(classes.values())[p["index"]] for p in preds):
            problems.append("%s: index/label mismatch %r" % (os.path.basename(path), preds))
        n_all += 1
        n_right += preds[0]["label"] == classes[c]
        if i < len(lines) and e2e.strip_volatile(json.loads(lines[i])) != e2e.strip_volatile(a):
            problems.append("%s: classify --json differs from HTTP" % os.path.basename(path))
    print("# monkeys (3 classes, 10 photos each, 20 epochs): %d of %d training photos right through HTTP" % (n_right, n_all))
    if n_all and n_right < n_all * 3 // 4:
        problems.append("only %d of %d training photos classified as their class" % (n_right, n_all))
    testlib.report(name, problems)


def main():
    if not os.path.exists(e2e.BIN):
        testlib.report("fine-tuned e2e: binary", ["%s not built" % e2e.BIN])
        return 1
    for base in ("shufflenet_v2_x1_0", "mobilenet_v3_small"):
        if not os.path.exists(os.path.join(e2e.SHARED, "weights", base + ".safetensors")):
            testlib.skip("fine-tuned e2e", "../shared/weights/%s.safetensors absent" % base)
            return 0
    if not all(os.path.exists(os.path.join(e2e.SAMPLE, p)) for p in PHOTOS):
        testlib.skip("fine-tuned e2e", "../shared/data/imagenet-sample absent")
        return 0
    try:
        import numpy  # noqa: F401
    except ImportError:
        testlib.skip("fine-tuned e2e", "python3-numpy absent (tests/tools/make_finetuned.py needs it)")
        return 0
    os.makedirs(e2e.CACHE, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="e2e-ft-", dir=e2e.CACHE)
    try:
        return run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    wdir = os.path.join(tmp, "weights")
    os.makedirs(wdir)
    for base in ("shufflenet_v2_x1_0", "mobilenet_v3_small"):
        os.symlink(os.path.join(e2e.SHARED, "weights", base + ".safetensors"),
                   os.path.join(wdir, base + ".safetensors"))
    for name, spec in FINETUNED.items():
        make(wdir, name, *spec)
    make(wdir, "unknown_arch", BASE, [0, 1], ["a", "b"], {"architecture": "resnet50"})
    make(wdir, "alex", BASE, [0, 1], ["a", "b"])
    make(wdir, "bad_labels", BASE, [0, 1, 2], ["a", "b"], {"labels": json.dumps(["a", "b"]), "num_classes": "3"})
    os.symlink(os.path.join(e2e.SHARED, "weights", BASE + ".safetensors"), os.path.join(wdir, "imagenet_copy.safetensors"))
    with open(os.path.join(wdir, "broken.safetensors"), "wb") as f:
        f.write(b"garbage")
    with open(os.path.join(wdir, "notes.txt"), "w") as f:
        f.write("not a model")
    photos = {p: open(os.path.join(e2e.SAMPLE, p), "rb").read() for p in PHOTOS}

    srv = testlib.Server(wdir, "--workers", "2", "--queue", "64", "--admin-reload", "1")
    if srv.port is None:
        testlib.report("fine-tuned e2e: server starts", ["no 'listening' line; log: %s" % srv.log()[-10:]])
        srv.stop()
        return 1
    try:
        srv.wait_ready()
        case_classify(srv, photos)
        case_model_all(srv, photos)
        case_models_endpoint(srv)
        case_names_and_cli(wdir, photos)
        case_reload_under_load(srv, wdir, photos)
        case_train_then_serve(srv, wdir, tmp)
        rc = srv.stop()
        testlib.report("fine-tuned: SIGTERM after the reloads exits 0", [] if rc == 0 else ["exit %r" % rc])
    finally:
        if srv.proc.poll() is None:
            srv.stop()
    return 0


if __name__ == "__main__":
    rc = main()
    sys.exit(testlib.finish() or rc)
