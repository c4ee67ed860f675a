#!/usr/bin/python3
"""End-to-end test of the Open Inference Protocol (KServe v2 REST) routes of `cnnserve serve`.

Starts the real binary on ../shared/weights (the two real models) and talks to it with a small
client written from the protocol (kserve/open-inference-protocol inference_rest.md) and Triton's
binary tensor data and classification extensions, on http.client only. Checks every /v2 route, both
inputs ('image' BYTES as base64 JSON and as binary data; 'input' FP32 as flat/nested JSON and binary),
batches, top-k classification strings, binary outputs, errors, and that the answers equal
/v1/classify's on the same photos and that an FP32 tensor preprocessed by tests/tools/image_dump
gives bit-identical probabilities to the BYTES path. Prints one "ok - / not ok - / skip - " line per case.
"""

import base64
import http.client
import json
import os
import struct
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

REAL = ["mobilenet_v3_small", "shufflenet_v2_x1_0"]
IMAGE_DUMP = os.path.join(testlib.REPO, testlib.BUILD, "tests", "image_dump")
TIMEOUT = 300 if testlib.ASAN else 120


# ---------------------------------------------------------------------------------------- client

class OipError(Exception):
    pass


class Client:
    """The REST binding of the Open Inference Protocol, with the binary tensor data extension."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port

    def request(self, method, path, body=None, headers=None):
        """(status, headers (lower-case), body bytes) of one request on a fresh connection."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get(self, path):
        status, _, body = self.request("GET", path)
        return status, json.loads(body) if body else None

    def infer_raw(self, model, req, binary=b"", version=None, headers=None):
        """POST .../infer: the JSON request, then binary tensor data if any."""
        path = "/v2/models/%s%s/infer" % (model, "/versions/%s" % version if version else "")
        head = json.dumps(req).encode()
        h = {"Content-Type": "application/json"}
        if binary:
            h = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
        h.update(headers or {})
        return self.request("POST", path, head + binary, h)

    def infer(self, model, req, binary=b"", version=None):
        """The response object with every binary output decoded into "data" (FP32 -> floats,
        BYTES -> str); raises OipError(status, body) on an error status."""
        status, headers, body = self.infer_raw(model, req, binary, version)
        if status != 200:
            raise OipError(status, body)
        n_json = int(headers.get("inference-header-content-length", len(body)))
        resp = json.loads(body[:n_json])
        off = n_json
        for out in resp["outputs"]:
            size = out.get("parameters", {}).get("binary_data_size")
            if size is None:
                continue
            raw = body[off:off + size]
            off += size
            if out["datatype"] == "FP32":
                out["data"] = list(struct.unpack("<%df" % (size // 4), raw))
            else:
                items, p = [], 0
                while p < len(raw):
                    (n,) = struct.unpack("<I", raw[p:p + 4])
                    items.append(raw[p + 4:p + 4 + n].decode())
                    p += 4 + n
                out["data"] = items
        if off != len(body):
            raise OipError(200, "%d bytes after the binary outputs" % (len(body) - off))
        return resp


def image_request(images, k=None, binary_in=False, binary_out=False, req_id=None):
    """(request, binary) for BYTES 'image' of the given encoded images."""
    inp = {"name": "image", "datatype": "BYTES", "shape": [len(images)]}
    binary = b""
    if binary_in:
        binary = b"".join(struct.pack("<I", len(b)) + b for b in images)
        inp["parameters"] = {"binary_data_size": len(binary)}
    else:
        inp["data"] = [base64.b64encode(b).decode() for b in images]
    req = {"inputs": [inp]}
    out = {"name": "probabilities", "parameters": {}}
    if k:
        out["parameters"]["classification"] = k
    if binary_out:
        out["parameters"]["binary_data"] = True
    req["outputs"] = [out]
    if req_id is not None:
        req["id"] = req_id
    return req, binary


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def parse_class(s):
    score, index, label = s.split(":", 2)
    return f32(float(score)), int(index), label


def v1_classify(srv, model, path):
    c = Client(srv.url)
    status, _, body = c.request("POST", "/v1/classify?model=%s&top_k=5" % model, open(path, "rb").read(),
                                {"Content-Type": "image/jpeg"})
    return json.loads(body) if status == 200 else None


# ---------------------------------------------------------------------------------------- cases

def case_health_and_metadata(c, srv):
    p = []
    for path, want in (("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True})):
        status, body = c.get(path)
        if status != 200 or body != want:
            p.append("%s: %s %s" % (path, status, body))
    for path in ("/v2", "/v2/"):
        status, body = c.get(path)
        if status != 200 or body.get("name") != "cnnserve" or not body.get("version") or \
                sorted(body.get("extensions", [])) != ["binary_tensor_data", "classification"]:
            p.append("%s: %s %s" % (path, status, body))
    status, head, raw = c.request("HEAD", "/v2/health/live")
    if status != 200 or raw:
        p.append("HEAD /v2/health/live: %s %r" % (status, raw))
    testlib.report("v2_health_and_server_metadata", p)

    p = []
    for m in REAL:
        _, v1 = c.get("/v1/models/%s" % m)
        s = v1["input_size"]
        for path in ("/v2/models/%s" % m, "/v2/models/%s/versions/1" % m, "/v2/models/%s" % v1["aliases"][0]):
            status, md = c.get(path)
            want = {"name": m, "versions": ["1"], "platform": "cnnserve",
                    "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                               {"name": "input", "datatype": "FP32", "shape": [-1, 3, s, s]}],
                    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}]}
            if status != 200 or md != want:
                p.append("%s: %s %s" % (path, status, md))
        for path in ("/v2/models/%s/ready" % m, "/v2/models/%s/versions/1/ready" % m):
            status, body = c.get(path)
            if status != 200 or body != {"name": m, "ready": True}:
                p.append("%s: %s %s" % (path, status, body))
    testlib.report("v2_model_metadata_and_ready", p)


def error_is(c, p, what, status_want, got_status, body, needle=None):
    try:
        o = json.loads(body)
    except ValueError:
        o = None
    if got_status != status_want or not isinstance(o, dict) or list(o) != ["error"] or \
            not isinstance(o["error"], str) or (needle and needle not in o["error"]):
        p.append("%s: status %s (want %s) body %r (want {\"error\": ...%s...})" %
                 (what, got_status, status_want, body[:300], needle or ""))


def case_errors(c, srv, photo):
    p = []
    jpg = open(photo, "rb").read()
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/mobilenet_v3_small/versions/2",
                 "/v2/models/mobilenet_v3_small/versions/2/ready"):
        status, _, body = c.request("GET", path)
        error_is(c, p, path, 404, status, body)
    req, _ = image_request([jpg])
    status, _, body = c.infer_raw("nope", req)
    error_is(c, p, "infer unknown model", 404, status, body, "unknown model 'nope'")
    status, _, body = c.infer_raw("mobilenet_v3_small", req, version="3")
    error_is(c, p, "infer unknown version", 404, status, body, "no version '3'")
    bad = [
        ("not JSON", b"{", "not valid JSON"),
        ("empty body", b"", "empty body"),
        ("wrong datatype", {"inputs": [{"name": "input", "datatype": "INT8", "shape": [1, 3, 224, 224], "data": [0]}]},
         "datatype FP32"),
        ("image as FP32", {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [0]}]},
         "datatype BYTES"),
        ("wrong shape", {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 299, 299], "data": [0]}]},
         "[N,3,224,224]"),
        ("wrong rank", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": ["AA=="]}]},
         "shape [N]"),
        ("bad base64", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%%"]}]},
         "base64"),
        ("base64 with newline", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                             "data": [base64.encodebytes(jpg).decode()]}]}, "base64"),
        ("data count", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                    "data": [base64.b64encode(jpg).decode()]}]}, "flat array of 2"),
        ("unknown input", {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [0]}]},
         "unknown input"),
        ("unknown output", dict(req, outputs=[{"name": "logits"}]), "unknown output"),
        ("classification 1001", dict(req, outputs=[{"name": "probabilities", "parameters": {"classification": 1001}}]),
         "1..1000"),
        ("id not a string", dict(req, id=42), "\"id\""),
        ("batch 65", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [65], "data": []}]}, "1..64"),
    ]
    for what, r, needle in bad:
        body = r if isinstance(r, bytes) else json.dumps(r).encode()
        status, _, got = c.request("POST", "/v2/models/mobilenet_v3_small/infer", body,
                                   {"Content-Type": "application/json"})
        error_is(c, p, what, 400, status, got, needle)
    status, _, got = c.infer_raw("mobilenet_v3_small", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                                                    "data": [base64.b64encode(b"GIF89a").decode()]}]})
    error_is(c, p, "not an image", 415, status, got, "element 0")
    # binary extension errors
    head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "parameters": {"binary_data_size": len(jpg) + 4}}]}).encode()
    body = head + struct.pack("<I", len(jpg)) + jpg
    for what, ihcl, needle in (("header length beyond body", str(len(body) + 1), "Inference-Header-Content-Length"),
                               ("header length not a number", "12x", "Inference-Header-Content-Length"),
                               ("header length cuts the JSON", str(len(head) - 1), "not valid JSON")):
        status, _, got = c.request("POST", "/v2/models/mobilenet_v3_small/infer", body,
                                   {"Inference-Header-Content-Length": ihcl})
        error_is(c, p, what, 400, status, got, needle)
    status, _, got = c.request("POST", "/v2/models/mobilenet_v3_small/infer", body + b"xx",
                               {"Inference-Header-Content-Length": str(len(head))})
    error_is(c, p, "binary data longer than binary_data_size", 400, status, got, "binary_data_size is")
    status, _, got = c.request("POST", "/v2/models/mobilenet_v3_small/infer", body,
                               {"Content-Type": "application/json"})
    error_is(c, p, "binary data without Inference-Header-Content-Length", 400, status, got, "not valid JSON")
    status, _, got = c.request("POST", "/v2/models/mobilenet_v3_small/infer",
                               head + struct.pack("<I", len(jpg) + 9) + jpg,
                               {"Inference-Header-Content-Length": str(len(head))})
    error_is(c, p, "binary element length beyond data", 400, status, got, "declares")
    status, _, got = c.request("GET", "/v2/models/mobilenet_v3_small/infer")
    error_is(c, p, "GET on infer", 405, status, got)
    status, _, got = c.request("POST", "/v2/health/live", b"{}")
    error_is(c, p, "POST on live", 405, status, got)
    testlib.report("v2_errors_status_and_error_object", p)


def case_oversize(wdir, photo):
    """--max-body-bytes applies to /v2 infer like /v1/classify: 413 {"error": ...}, declared or streamed."""
    p = []
    srv = testlib.Server(wdir, "--models", "mobilenet_v3_small", "--max-body-bytes", "64k")
    try:
        srv.wait_ready()
        c = Client(srv.url)
        # just over the limit (the server reads at most another limit's worth of a rejected body)
        req, _ = image_request([b"x"])
        body = json.dumps(dict(req, pad="x" * 70000)).encode()
        status, _, got = c.request("POST", "/v2/models/mobilenet_v3_small/infer", body)
        error_is(c, p, "declared oversize", 413, status, got, "65536")
        # chunked: no Content-Length, the limit applies while streaming
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        conn.request("POST", "/v2/models/mobilenet_v3_small/infer", body=iter([body[:40000], body[40000:]]),
                     encode_chunked=True)
        r = conn.getresponse()
        error_is(c, p, "chunked oversize", 413, r.status, r.read(), "65536")
        conn.close()
        small, _ = image_request([b"x"])
        status, _, got = c.request("POST", "/v2/models/mobilenet_v3_small/infer", json.dumps(small).encode())
        error_is(c, p, "server still answers", 415, status, got)
    finally:
        srv.stop()
    testlib.report("v2_oversize_413", p)


def case_equals_v1(c, srv, photos):
    """BYTES (base64 JSON, one request per photo) top-5 == /v1/classify's predictions; the
    probabilities are a distribution whose top entries are those scores."""
    p = []
    for m in REAL:
        for path, _, _ in photos:
            v1 = v1_classify(srv, m, path)
            req, _ = image_request([open(path, "rb").read()], req_id=os.path.basename(path))
            try:
                top = c.infer(m, req)
                req["outputs"] = [{"name": "probabilities", "parameters": {"classification": 5}}]
                cls = c.infer(m, req)
            except OipError as e:
                p.append("%s %s: %s" % (m, path, e))
                continue
            out = top["outputs"][0]
            probs = [f32(x) for x in out["data"]]
            if top.get("id") != os.path.basename(path) or top.get("model_name") != m or \
                    out["shape"] != [1, 1000] or out["datatype"] != "FP32" or len(probs) != 1000:
                p.append("%s %s: response %s" % (m, path, json.dumps(top)[:200]))
                continue
            want = [(f32(q["score"]), q["index"], q["label"]) for q in v1["predictions"]]
            got = [parse_class(s) for s in cls["outputs"][0]["data"]]
            if got != want or cls["outputs"][0]["shape"] != [1, 5] or cls["outputs"][0]["datatype"] != "BYTES":
                p.append("%s %s: classification %s != /v1 %s" % (m, os.path.basename(path), got, want))
            if [probs[i] for _, i, _ in want] != [s for s, _, _ in want]:
                p.append("%s %s: probabilities at the top-5 indices differ from /v1 scores" % (m, path))
            if abs(sum(probs) - 1) > 1e-3 or max(probs) != want[0][0]:
                p.append("%s %s: probabilities sum %.6f max %.9g" % (m, path, sum(probs), max(probs)))
    testlib.report("v2_bytes_equals_v1_classify_%d_photos_x_%d_models" % (len(photos), len(REAL)), p)


def case_batch_and_binary(c, photos):
    """A batch of N images as base64 JSON, as binary elements, with binary and JSON outputs: all the
    same values, and row i equals the single-image answer of photo i."""
    p = []
    imgs = [open(path, "rb").read() for path, _, _ in photos]
    for m in REAL:
        singles = [c.infer(m, image_request([b])[0])["outputs"][0]["data"] for b in imgs]
        variants = {}
        for binary_in in (False, True):
            for binary_out in (False, True):
                req, binary = image_request(imgs, binary_in=binary_in, binary_out=binary_out, req_id="batch")
                try:
                    r = c.infer(m, req, binary)
                except OipError as e:
                    p.append("%s in=%s out=%s: %s" % (m, binary_in, binary_out, e))
                    continue
                out = r["outputs"][0]
                if out["shape"] != [len(imgs), 1000] or r.get("id") != "batch" or \
                        ("binary_data_size" in out.get("parameters", {})) != binary_out:
                    p.append("%s: shape %s id %s params %s" % (m, out["shape"], r.get("id"), out.get("parameters")))
                variants[(binary_in, binary_out)] = [f32(x) for x in out["data"]]
        base = variants.get((False, False))
        for key, v in variants.items():
            if v != base:
                p.append("%s: batch answer %s differs from base64/JSON" % (m, key))
        if base:
            for i, s in enumerate(singles):
                if base[i * 1000:(i + 1) * 1000] != [f32(x) for x in s]:
                    p.append("%s: batch row %d differs from the single-image answer" % (m, i))
        req, binary = image_request(imgs, k=3, binary_in=True, binary_out=True)
        r = c.infer(m, req, binary)
        out = r["outputs"][0]
        rows = [out["data"][i * 3:(i + 1) * 3] for i in range(len(imgs))]
        if out["shape"] != [len(imgs), 3] or out["datatype"] != "BYTES" or len(out["data"]) != 3 * len(imgs):
            p.append("%s: binary classification output %s" % (m, out))
        elif base:
            for i, row in enumerate(rows):
                probs = base[i * 1000:(i + 1) * 1000]
                order = sorted(range(1000), key=lambda j: (-probs[j], j))[:3]
                if [parse_class(s)[:2] for s in row] != [(probs[j], j) for j in order]:
                    p.append("%s: binary classification row %d %s != top-3 of the probabilities" % (m, i, row))
    testlib.report("v2_batch_%d_base64_binary_in_out_equal" % len(imgs), p)


def case_fp32(c, srv, photos):
    """FP32 'input' = the preprocessed tensor (tests/tools/image_dump with the model's resize, crop,
    mean, std and the server's DCT decode target) gives bit-identical probabilities to the BYTES path;
    as binary, flat JSON and nested JSON, one at a time and as a batch."""
    if not os.access(IMAGE_DUMP, os.X_OK):
        testlib.skip("v2_fp32_equals_bytes", "no %s (make test builds it)" % IMAGE_DUMP)
        return
    p = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in REAL:
            _, info = c.get("/v1/models/%s" % m)
            s, rs = info["input_size"], info["resize_size"]
            tensors = []
            for i, (path, _, _) in enumerate(photos):
                prefix = os.path.join(tmp, "%s_%d" % (m, i))
                r = subprocess.run([IMAGE_DUMP, "--min-short", str(2 * rs), "--resize", str(rs), "--crop", str(s),
                                    "--mean", ",".join("%r" % x for x in info["mean"]),
                                    "--std", ",".join("%r" % x for x in info["std"]), path, prefix],
                                   capture_output=True, timeout=TIMEOUT)
                if r.returncode != 0 or "status=ok" not in r.stdout.decode():
                    p.append("image_dump %s: %s %s" % (path, r.stdout[-200:], r.stderr[-200:]))
                    continue
                tensors.append(open(prefix + ".f32", "rb").read())
            if len(tensors) != len(photos):
                continue
            want = []
            for path, _, _ in photos:
                want += [f32(x) for x in c.infer(m, image_request([open(path, "rb").read()])[0])["outputs"][0]["data"]]
            n = len(tensors)
            flat = list(struct.unpack("<%df" % (n * 3 * s * s), b"".join(tensors)))
            nested = [[[flat[((b * 3 + ch) * s + y) * s:((b * 3 + ch) * s + y + 1) * s] for y in range(s)]
                       for ch in range(3)] for b in range(n)]
            base = {"name": "input", "datatype": "FP32", "shape": [n, 3, s, s]}
            variants = {
                "binary": ({"inputs": [dict(base, parameters={"binary_data_size": len(flat) * 4})]},
                           b"".join(tensors)),
                "flat JSON": ({"inputs": [dict(base, data=flat)]}, b""),
                "nested JSON": ({"inputs": [dict(base, data=nested)]}, b""),
            }
            for what, (req, binary) in variants.items():
                req["outputs"] = [{"name": "probabilities", "parameters": {"binary_data": True}}]
                try:
                    got = c.infer(m, req, binary)["outputs"][0]["data"]
                except OipError as e:
                    p.append("%s %s: %s" % (m, what, e))
                    continue
                if got != want:
                    diff = sum(1 for a, b in zip(got, want) if a != b)
                    p.append("%s %s: %d of %d probabilities differ from the BYTES path" % (m, what, diff, len(want)))
            one = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, s, s],
                               "parameters": {"binary_data_size": len(tensors[0])}}]}
            got = [f32(x) for x in c.infer(m, one, tensors[0])["outputs"][0]["data"]]
            if got != want[:1000]:
                p.append("%s: single binary FP32 differs from the BYTES path" % m)
    testlib.report("v2_fp32_equals_bytes_binary_flat_nested_batch_%d" % len(photos), p)


def case_metrics(c):
    status, _, body = c.request("GET", "/metrics")
    text = body.decode()
    p = []
    for route, code in (("/v2/models/{name}/infer", "200"), ("/v2/models/{name}/infer", "400"),
                        ("/v2/health/ready", "200"), ("/v2/models/{name}", "200"), ("/v2", "200")):
        if not any(line.startswith("cnnserve_requests_total{route=\"%s\"" % route) and 'code="%s"' % code in line
                   for line in text.splitlines()):
            p.append("no cnnserve_requests_total for route %s code %s" % (route, code))
    testlib.report("v2_metrics_labelled_by_route", p)


def case_not_ready(wdir):
    """Before warm-up ends and while draining, /v2/health/ready and model ready are 503 ready=false
    (not asserted: a fast warm-up may beat the first probe); live stays 200 throughout."""
    srv = testlib.Server(wdir, "--models", "mobilenet_v3_small")
    p = []
    try:
        c = Client(srv.url)
        status, body = c.get("/v2/health/ready")
        if (status, body) not in ((200, {"ready": True}), (503, {"ready": False})):
            p.append("ready at start: %s %s" % (status, body))
        srv.wait_ready()
        status, body = c.get("/v2/health/ready")
        if status != 200 or body != {"ready": True}:
            p.append("ready after warm-up: %s %s" % (status, body))
    finally:
        srv.stop()
    testlib.report("v2_ready_states", p)


def case_finetuned(photos):
    """A fine-tuned file (tests/tools/make_finetuned.py: mobilenet_v3_small's rows of tench, goldfish
    and great white shark under its own labels) is served under its stem with K = 3: metadata, the
    probabilities [N,3] and its labels in the classification strings equal /v1/classify's answer."""
    name = "v2_finetuned_model_k3_own_labels"
    base = os.path.join(testlib.SHARED, "weights", "mobilenet_v3_small.safetensors")
    try:
        import numpy  # noqa: F401  (make_finetuned.py needs it)
        sys.path.insert(0, os.path.join(testlib.REPO, "tests", "tools"))
        import make_finetuned
    except ImportError as e:
        return testlib.skip(name, "tests/tools/make_finetuned.py not importable (%s)" % e)
    p = []
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(base, os.path.join(tmp, "mobilenet_v3_small.safetensors"))
        make_finetuned.make(base, os.path.join(tmp, "fishes.safetensors"), [0, 1, 2], ["Tench", "Gold fish", "Shark"])
        srv = testlib.Server(tmp)
        try:
            srv.wait_ready()
            c = Client(srv.url)
            status, md = c.get("/v2/models/fishes")
            if status != 200 or md.get("name") != "fishes" or \
                    md.get("outputs") != [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]:
                p.append("metadata: %s %s" % (status, md))
            imgs = [open(path, "rb").read() for path, _, _ in photos]
            req, _ = image_request(imgs, k=3)
            cls = c.infer("fishes", req)["outputs"][0]
            probs = c.infer("fishes", image_request(imgs)[0])["outputs"][0]
            if cls["shape"] != [len(imgs), 3] or probs["shape"] != [len(imgs), 3]:
                p.append("shapes %s %s" % (cls["shape"], probs["shape"]))
            for i, (path, _, _) in enumerate(photos):
                v1 = v1_classify(srv, "fishes", path)
                want = [(f32(q["score"]), q["index"], q["label"]) for q in v1["predictions"]]
                got = [parse_class(x) for x in cls["data"][i * 3:(i + 1) * 3]]
                if got != want:
                    p.append("%s: %s != /v1 %s" % (os.path.basename(path), got, want))
                row = [f32(x) for x in probs["data"][i * 3:(i + 1) * 3]]
                if [row[j] for _, j, _ in want] != [sc for sc, _, _ in want]:
                    p.append("%s: probabilities %s vs /v1 %s" % (os.path.basename(path), row, want))
            over, _ = image_request(imgs[:1], k=4)
            status, _, body = c.infer_raw("fishes", over)
            error_is(c, p, "classification 4 of 3 classes", 400, status, body, "1..3")
        finally:
            srv.stop()
    testlib.report(name, p)


def main():
    photos = testlib.sample_photos()
    wdir = os.path.join(testlib.SHARED, "weights")
    if not all(os.path.exists(os.path.join(wdir, m + ".safetensors")) for m in REAL) or not photos:
        testlib.skip("kserve", "needs ../shared/weights (%s) and ../shared/data/imagenet-sample" % ", ".join(REAL))
        return testlib.finish()
    if not os.access(testlib.BIN, os.X_OK):
        testlib.report("kserve", ["no %s: run make" % testlib.BIN])
        return testlib.finish()
    photos = photos[::125][:8]
    srv = testlib.Server(wdir, "--models", ",".join(REAL))
    try:
        srv.wait_ready()
        c = Client(srv.url)
        case_health_and_metadata(c, srv)
        case_errors(c, srv, photos[0][0])
        case_equals_v1(c, srv, photos)
        case_batch_and_binary(c, photos[:4])
        case_fp32(c, srv, photos[:3])
        case_metrics(c)
    finally:
        srv.stop()
    case_oversize(wdir, photos[0][0])
    case_not_ready(wdir)
    case_finetuned(photos[:3])
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
