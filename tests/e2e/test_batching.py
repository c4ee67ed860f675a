#!/usr/bin/python3
"""Dynamic batching in `cnnserve serve` (--batch-max, --batch-delay-ms, --batch-models), end to end.

One worker and a long --batch-delay-ms make concurrent requests for a batched model meet in one
batch. Checks that every answer (all 1000 probabilities, so every logit's softmax) is byte-identical
to the same photo's answer alone, also with broken images and other models' requests mixed into
the queue, that a KServe request of several images answers each as alone, that models not listed are never batched, that SIGTERM with batched requests in flight
answers every request (200, or a clean 503) and exits 0, and that bad flag values are refused.
Behaviour only, never timings. Weights: $CNN_CACHE/ref (random AlexNet and MobileNetV3-Large of the
real shapes, from make ref) and ../shared/weights (real ShuffleNetV2) where present.
"""

import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

TIMEOUT = 600 if testlib.ASAN else 300
N = 6  # concurrent requests per round


def post(url, path, body, ctype="image/jpeg"):
    """(status, JSON answer, Server-Timing) of one POST on its own connection."""
    u = url.split("//", 1)[1]
    host, port = u.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        data = r.read()
        try:
            answer = json.loads(data)
        except ValueError:
            answer = {"raw": data[:200].decode(errors="replace")}
        return r.status, answer, r.getheader("Server-Timing") or ""
    except OSError as e:
        return None, {"error": str(e)}, ""
    finally:
        c.close()


def stable(answer):
    """The answer without what differs from run to run (id, timings, batch placement)."""
    return {k: v for k, v in answer.items() if k not in ("request_id", "timings_ms", "batch")}


def send_all(url, reqs):
    """reqs: [(path, body)] sent at once; the answers in order."""
    with concurrent.futures.ThreadPoolExecutor(len(reqs)) as ex:
        return list(ex.map(lambda pb: post(url, pb[0], pb[1]), reqs))


def weights_dir(tmp):
    """A directory of symlinks: random alexnet + mobilenet_v3_large, real shufflenet if present."""
    d = os.path.join(tmp, "w")
    os.makedirs(d, exist_ok=True)
    have = []
    for name in ("alexnet", "mobilenet_v3_large"):
        f = os.path.join(testlib.CACHE, "ref", name + ".safetensors")
        if os.path.exists(f):
            os.symlink(f, os.path.join(d, name + ".safetensors"))
            have.append(name)
    f = os.path.join(testlib.SHARED, "weights", "shufflenet_v2_x1_0.safetensors")
    if os.path.exists(f):
        os.symlink(os.path.abspath(f), os.path.join(d, "shufflenet_v2_x1_0.safetensors"))
        have.append("shufflenet_v2_x1_0")
    return d, have


def photos():
    rows = testlib.sample_photos()
    if len(rows) < N:
        raise testlib.Skip("needs ../shared/data/imagenet-sample")
    return [open(f, "rb").read() for f, _, _ in rows[:N]]


def case_identical(srv, imgs, models):
    """Each photo alone, then all at once (batched), then mixed with a broken image, a request for a
    model not batched and one with another top_k: every batched answer equals the photo's answer
    alone byte for byte, and batching did happen."""
    p = []
    batched_model, other = models[0], models[1] if len(models) > 1 else None
    path = "/v1/classify?model=%s&top_k=1000" % batched_model
    alone = []
    for img in imgs:
        st, a, _ = post(srv.url, path, img)
        testlib.check(st == 200, "alone: %s %s" % (st, a))
        testlib.check("batch" not in a, "a request alone reports a batch: %s" % a.get("batch"))
        alone.append(json.dumps(stable(a), sort_keys=True))
    sizes = []
    for rnd in range(2):
        reqs = [(path, img) for img in imgs]
        if rnd == 1:
            reqs.insert(2, (path, b"\xff\xd8\xff\xe0 not a jpeg"))
            reqs.insert(4, (path.replace("top_k=1000", "top_k=3"), imgs[0]))
            if other:
                reqs.insert(1, ("/v1/classify?model=%s" % other, imgs[1]))
        answers = send_all(srv.url, reqs)
        k = 0
        for (rpath, body), (st, a, timing) in zip(reqs, answers):
            if body.startswith(b"\xff\xd8\xff\xe0 not"):
                if st != 422 and st != 400:
                    p.append("round %d: broken image answered %s %s" % (rnd, st, a))
                continue
            if other and rpath.startswith("/v1/classify?model=%s" % other):
                if st != 200 or "batch" in a:
                    p.append("round %d: %s (not batched) answered %s, batch %s" % (rnd, other, st, a.get("batch")))
                continue
            if st != 200:
                p.append("round %d: request %d answered %s %s" % (rnd, k, st, a))
                continue
            b = a.get("batch")
            if b:
                sizes.append(b["size"])
                if not (2 <= b["size"] <= len(reqs)) or b["wait_ms"] < 0 or "batch_wait;dur=" not in timing:
                    p.append("round %d: batch field %s, Server-Timing %s" % (rnd, b, timing))
            if "top_k=3" in rpath:
                want = json.loads(alone[0])
                want["predictions"] = want["predictions"][:3]
                if stable(a) != want:
                    p.append("round %d: top_k=3 in a batch differs from the first 3 alone" % rnd)
                continue
            got = json.dumps(stable(a), sort_keys=True)
            if got != alone[k]:
                p.append("round %d: photo %d in a batch of %s differs from alone" % (rnd, k, b and b["size"]))
            k += 1
    if not sizes:
        p.append("no answer was batched (batch sizes seen: none)")
    print("# batch sizes seen: %s" % sorted(sizes))
    return p


def case_kserve(srv, imgs, model):
    """KServe v2: one request of N images (its items run in batches) answers, per item, exactly what a
    one-image request answers (FP32 probabilities, binary output: every bit); an item that does not
    decode fails the request naming it, as one by one."""
    import base64
    import struct

    def infer(images):
        req = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                           "data": [base64.b64encode(b).decode() for b in images]}],
               "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
        body = json.dumps(req).encode()
        u = srv.url.split("//", 1)[1].split(":")
        c = http.client.HTTPConnection(u[0], int(u[1]), timeout=TIMEOUT)
        try:
            c.request("POST", "/v2/models/%s/infer" % model, body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            n_json = int(r.getheader("Inference-Header-Content-Length") or len(data))
            return r.status, json.loads(data[:n_json]), data[n_json:]
        finally:
            c.close()

    p = []
    singles = []
    for img in imgs:
        st, a, b = infer([img])
        testlib.check(st == 200, "one image: %s %s" % (st, a))
        singles.append(b)
    st, a, b = infer(imgs + imgs[:3])
    testlib.check(st == 200, "%d images: %s %s" % (len(imgs) + 3, st, a))
    k = len(singles[0]) // 4
    want = b"".join(singles + singles[:3])
    if b != want:
        rows = [i for i in range(len(imgs) + 3) if b[i * 4 * k:(i + 1) * 4 * k] != want[i * 4 * k:(i + 1) * 4 * k]]
        p.append("%d-image request: items %s differ from one-image requests (%d vs %d bytes)"
                 % (len(imgs) + 3, rows, len(b), len(want)))
    if len(struct.unpack("<%df" % k, singles[0])) != k:
        p.append("probabilities of %d classes unreadable" % k)
    st, a, _ = infer(imgs[:2] + [b"\xff\xd8\xff not a jpeg"] + imgs[2:4])
    if st not in (400, 422) or "element 2" not in json.dumps(a):
        p.append("a broken third image: %s %s" % (st, a))
    return p


def case_sigterm(tmp, wdir, imgs, model):
    """SIGTERM while a batch waits for more requests (--batch-delay-ms 1000) and runs: every request
    is answered 200 or 503 (draining), none is dropped, and the server exits 0."""
    srv = testlib.Server(wdir, "--workers", "1", "--models", model, "--batch-models", model, "--batch-max", "8",
                         "--batch-delay-ms", "1000", "--drain-timeout", "120", clean_env=True)
    try:
        seen = srv.wait_ready()
        testlib.check(seen and seen[-1][0] == 200, "not ready: %s" % seen[-3:])
        path = "/v1/classify?model=%s" % model
        with concurrent.futures.ThreadPoolExecutor(N) as ex:
            futs = [ex.submit(post, srv.url, path, img) for img in imgs]
            time.sleep(0.5 * (4 if testlib.ASAN else 1))
            srv.proc.send_signal(signal.SIGTERM)
            answers = [f.result() for f in futs]
        rc = srv.stop()
    finally:
        srv.stop()
    p = []
    for i, (st, a, _) in enumerate(answers):
        if st not in (200, 503):
            p.append("request %d: %s %s" % (i, st, a))
    if rc != 0:
        p.append("exit status %s; log tail %s" % (rc, srv.log()[-5:]))
    print("# statuses %s" % [a[0] for a in answers])
    return p


def case_flags(tmp, wdir):
    """Bad --batch-max / --batch-delay-ms / CNNSERVE_BATCH_MAX values exit 2 naming the flag; an
    unknown name in --batch-models stops the start naming it."""
    p = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNSERVE_")}
    base = [testlib.BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--weights-dir", wdir]
    for flag, value, msg in (("--batch-max", "0", b"--batch-max: expected an integer in 1..64"),
                             ("--batch-max", "65", b"--batch-max: expected an integer in 1..64"),
                             ("--batch-max", "x", b"--batch-max: expected an integer in 1..64"),
                             ("--batch-delay-ms", "-1", b"--batch-delay-ms"),
                             ("--batch-delay-ms", "1001", b"--batch-delay-ms")):
        r = subprocess.run(base + [flag, value], capture_output=True, timeout=60, env=env)
        if r.returncode != 2 or msg not in r.stderr:
            p.append("%s %s: exit %d, %s" % (flag, value, r.returncode, r.stderr[-200:]))
    r = subprocess.run(base, capture_output=True, timeout=60, env=dict(env, CNNSERVE_BATCH_MAX="0"))
    if r.returncode != 2 or b"CNNSERVE_BATCH_MAX" not in r.stderr:
        p.append("CNNSERVE_BATCH_MAX=0: exit %d, %s" % (r.returncode, r.stderr[-200:]))
    r = subprocess.run(base + ["--batch-models", "alexnet,nosuchmodel"], capture_output=True, timeout=120, env=env)
    if r.returncode == 0 or b"'nosuchmodel' is not a model name" not in r.stderr:
        p.append("--batch-models alexnet,nosuchmodel: exit %d, %s" % (r.returncode, r.stderr[-300:]))
    return p


def main():
    names = ["batching: each photo in mixed batches byte-identical to alone; unlisted model never batched",
             "batching: SIGTERM with batched requests in flight answers each (200/503), exit 0",
             "batching: bad --batch-max / --batch-delay-ms / --batch-models values refused",
             "batching: a KServe request of N images answers each as a one-image request, bit for bit",
             "batching: the server of the mixed-batch cases exits 0 on SIGTERM (no crash, no sanitizer report)"]
    tmp = tempfile.mkdtemp(prefix="cnn_batching_")
    wdir, have = weights_dir(tmp)
    if "alexnet" not in have:
        testlib.skip_all(names, "no $CNN_CACHE/ref/alexnet.safetensors (run make ref; needs python3-torch)")
        return testlib.finish()
    try:
        imgs = photos()
    except testlib.Skip as e:
        testlib.skip_all(names, str(e))
        return testlib.finish()
    # alexnet batched; the other loaded model (shufflenet if present, else mobilenet_v3_large) not
    other = [m for m in ("shufflenet_v2_x1_0", "mobilenet_v3_large") if m in have][:1]
    srv = testlib.Server(wdir, "--workers", "1", "--models", ",".join(["alexnet"] + other), "--batch-models",
                         "alexnet", "--batch-max", "8", "--batch-delay-ms", "1000", clean_env=True)
    try:
        seen = srv.wait_ready()
        if not seen or seen[-1][0] != 200:
            for name in (names[0], names[3]):
                testlib.report(name, ["server not ready: %s; log %s" % (seen[-3:], srv.log()[-5:])])
        else:
            testlib.run_case(names[0], case_identical, srv, imgs, ["alexnet"] + other)
            testlib.run_case(names[3], case_kserve, srv, imgs, "alexnet")
    finally:
        rc = srv.stop()
    testlib.report(names[4], [] if rc == 0 else ["exit status %s; log tail %s" % (rc, srv.log()[-8:])])
    testlib.run_case(names[1], case_sigterm, tmp, wdir, imgs, "alexnet")
    testlib.run_case(names[2], case_flags, tmp, wdir)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
