#!/usr/bin/python3
"""The web page at / in a real browser: Debian's chromium + chromium-driver driven by python3-selenium
(headless, a fresh profile, no network beyond 127.0.0.1). Starts the real binary on ../shared/weights
plus a fine-tuned stand-in (tests/tools/make_finetuned.py), opens / at 360x740 and 1280x800, uploads
photos through the file input and checks what a person sees: the top label of every ImageNet model
in "all models" mode, drawn timing bars, readable errors (422 broken file, 415 not an image, 413 too
large, 503 busy with Retry-After), EXIF orientation, keyboard operation, drop and paste (raw body),
the reports (links, rendered REPORT.md), and no browser console errors. Also the page's headers (CSP,
ETag -> 304, Cache-Control) and /reports/ path-traversal protection over plain HTTP.

Screenshots go to $BUILD/test-logs/browser/. Where the weights or the sample photo are missing every
case skips; where chromium, chromium-driver or selenium are missing the browser cases skip; each
says why.
"""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402
from testlib import check, Failure  # noqa: E402

REPO, BUILD, BIN = testlib.REPO, testlib.BUILD, testlib.BIN
SHARED = os.path.realpath(testlib.SHARED)  # chromedriver takes only canonical upload paths
WEIGHTS = os.path.join(SHARED, "weights")
GOLDFISH = os.path.join(SHARED, "data", "imagenet-sample", "n01443537_goldfish.JPEG")
SHOTS = os.path.join(REPO, BUILD, "test-logs", "browser")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 300 if testlib.ASAN else 60
MAX_BODY = 1 << 20
VIEWPORTS = [(360, 740), (1280, 800)]

CASES = ["page headers: CSP, ETag/304, Cache-Control", "reports: listing and path traversal over HTTP",
         "goldfish in all models (and the fine-tuned one) at 360x740",
         "goldfish in all models (and the fine-tuned one) at 1280x800",
         "readable errors: 422 broken, 415 not an image, 413 too large, 503 busy",
         "EXIF orientation in the preview and the answer", "keyboard: reach every control, pick a model, classify",
         "drop and paste a photo: sent as the raw body",
         "reports section links the files", "no reports: the page says how to make them",
         "browser console has no errors", "servers exit 0 on SIGTERM (no sanitizer report)"]


def why_no_server():
    """None when the binary, the weights and the sample photo are here, else why not."""
    if not os.access(BIN, os.X_OK):
        return "%s not built" % BIN
    if not os.path.exists(GOLDFISH):
        return "sample photo %s missing" % GOLDFISH
    if not any(f.endswith(".safetensors") for f in (os.listdir(WEIGHTS) if os.path.isdir(WEIGHTS) else [])):
        return "no weights in %s" % WEIGHTS
    return None


def why_no_browser():
    """None when Chromium can be driven here, else why not."""
    if not os.path.exists(CHROMIUM) or not os.path.exists(CHROMEDRIVER):
        return "chromium or chromium-driver not installed (make deps installs them)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "python3-selenium not installed (make deps installs it)"
    return None


# ---------------------------------------------------------------- server and HTTP


def start_server(weights_dir, *flags):
    """testlib.Server with one worker, ready (every model warmed up)."""
    srv = testlib.Server(weights_dir, "--workers", "1", *flags, clean_env=True, listen_s=WAIT_S)
    seen = srv.wait_ready(limit_s=WAIT_S) if srv.port else []
    if not seen or seen[-1][0] != 200:
        srv.stop()
        raise Failure("server not ready (%s): %s" % (seen[-3:], srv.log()[-5:]))
    return srv


def request(srv, method, path, headers=None, body=None):
    """(status, headers dict lower-cased, body bytes); the path is sent as is (no normalization)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=WAIT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except OSError:
        return None, {}, b""
    finally:
        conn.close()


# ---------------------------------------------------------------- browser


def start_browser(profile_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--user-data-dir=" + profile_dir]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    d.set_script_timeout(WAIT_S)
    return d


class Browser:
    """One Chromium; console entries collected across cases, with the error answers each case
    provoked on purpose (the browser logs every 4xx/5xx fetch as a network error)."""

    def __init__(self, profile_dir):
        self.d = start_browser(profile_dir)
        self.log = []
        self.expected = []  # (path substring, status) of error answers provoked on purpose

    def collect(self):
        self.log.extend(self.d.get_log("browser"))

    def open(self, url, size):
        w, h = size
        self.d.set_window_size(w, h)
        # The layout viewport is exactly w px (a phone's overlay scrollbar takes no width).
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": w < 600})
        self.d.get(url)
        self.wait(lambda: self.js("return document.querySelectorAll('input[name=model]').length > 0 || "
                                  "/Could not/.test(document.getElementById('server-meta').textContent)"),
                  "the model list")
        self.collect()

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def wait(self, cond, what, limit_s=None):
        t_end = time.time() + (limit_s or WAIT_S)
        while time.time() < t_end:
            v = cond()
            if v:
                return v
            time.sleep(0.05)
        raise Failure("timed out waiting for %s" % what)

    def upload(self, path):
        """Chooses path in the file input and waits until the answer (results or an error) is drawn."""
        self.js("document.getElementById('results').replaceChildren(); document.getElementById('error').hidden = true;")
        self.d.find_element("id", "file").send_keys(path)
        self.wait(lambda: self.js("return !document.getElementById('status').classList.contains('busy') && "
                                  "(document.querySelectorAll('.result').length > 0 || "
                                  "!document.getElementById('error').hidden)"), "an answer to %s" % path)

    def screenshot(self, name):
        """Full-page PNG into SHOTS (the viewport stretched to the page's height)."""
        size = self.js("return [window.innerWidth, window.innerHeight, document.documentElement.scrollHeight]")
        w, h, full = size
        mobile = w < 600
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": w, "height": max(h, full), "deviceScaleFactor": 1, "mobile": mobile})
        path = os.path.join(SHOTS, name)
        self.d.save_screenshot(path)
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": mobile})
        print("# screenshot %s" % path)

    def quit(self):
        self.d.quit()


def result_cards(b):
    """[{model, labels, widths: {stage: px}, total_px}] of the drawn result cards."""
    return b.js("""
        return [...document.querySelectorAll('.result')].map(c => ({
            model: c.dataset.model,
            labels: [...c.querySelectorAll('.pred')].map(p => p.dataset.label),
            shown_top: (c.querySelector('.pred.first .label') || {}).textContent,
            widths: Object.fromEntries([...c.querySelectorAll('.stack > i')].map(
                i => [i.dataset.stage, i.getBoundingClientRect().width])),
            stack_px: c.querySelector('.stack').getBoundingClientRect().width,
        }));""")


def imagenet_models(srv):
    """Loaded models with ImageNet's 1000 labels (the real ones in ../shared/weights)."""
    st, _, body = request(srv, "GET", "/v1/models")
    check(st == 200, "GET /v1/models: %s" % st)
    return [m["name"] for m in json.loads(body)["models"]
            if m.get("state") in ("ready", "loaded") and m.get("classes") == 1000 and not m.get("fine_tuned")]


FT_NAME = "pond"
BROKEN_NAME = "garbage"  # a weights file that fails to load: listed as not loaded, never offered
FT_LABELS = ["Goldie the goldfish", "tench", "great white shark"]


def make_weights(tmp):
    """The real ../shared/weights files plus a fine-tuned stand-in (tests/tools/make_finetuned.py:
    shufflenet's rows for goldfish, tench and great white shark under other labels), or why not."""
    d = os.path.join(tmp, "weights")
    os.makedirs(d)
    for f in os.listdir(WEIGHTS):
        if f.endswith(".safetensors"):
            os.symlink(os.path.join(WEIGHTS, f), os.path.join(d, f))
    base = os.path.join(WEIGHTS, "shufflenet_v2_x1_0.safetensors")
    if not os.path.exists(base):
        return d, "no shufflenet_v2_x1_0 base file for the fine-tuned stand-in"
    sys.path.insert(0, os.path.join(REPO, "tests", "tools"))
    try:
        import make_finetuned
    except ImportError as e:
        return d, "tests/tools/make_finetuned.py not importable (%s)" % e
    make_finetuned.make(base, os.path.join(d, FT_NAME + ".safetensors"), [1, 0, 2], FT_LABELS)
    with open(os.path.join(d, BROKEN_NAME + ".safetensors"), "wb") as f:
        f.write(b"not a safetensors file")
    return d, None


def loaded_models(srv):
    st, _, body = request(srv, "GET", "/v1/models")
    return [m["name"] for m in json.loads(body)["models"] if m.get("state") in ("ready", "loaded")]


# ---------------------------------------------------------------- cases


def case_headers(srv):
    st, h, body = request(srv, "GET", "/")
    check(st == 200 and h.get("content-type", "").startswith("text/html"), "GET /: %s %s" % (st, h))
    html = body.decode()
    csp = h.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    check(directives.get("default-src") == ["'none'"], "CSP default-src: %r" % csp)
    check(directives.get("script-src") == ["'self'"], "CSP script-src must be 'self' only: %r" % csp)
    check("'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, "CSP allows inline/eval: %r" % csp)
    check(directives.get("frame-ancestors") == ["'none'"], "CSP frame-ancestors: %r" % csp)
    check(not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), "inline <script> in the page")
    check(not re.search(r"\sstyle=|\son[a-z]+=", html), "inline style or event handler attribute in the page")
    check(h.get("x-content-type-options") == "nosniff", "nosniff: %r" % h)
    for path, ctype in [("/", "text/html"), ("/index.html", "text/html"), ("/app.js", "text/javascript"),
                        ("/app.css", "text/css")]:
        st, h, body = request(srv, "GET", path)
        check(st == 200 and h.get("content-type", "").startswith(ctype), "%s: %s %r" % (path, st, h))
        check(h.get("cache-control") == "no-cache", "%s Cache-Control %r" % (path, h.get("cache-control")))
        etag = h.get("etag", "")
        check(re.fullmatch(r'"[0-9a-f]{16}"', etag), "%s ETag %r" % (path, etag))
        st2, h2, body2 = request(srv, "GET", path, {"If-None-Match": etag})
        check(st2 == 304 and body2 == b"" and h2.get("etag") == etag, "%s If-None-Match: %s %r" % (path, st2, h2))
        st3, _, _ = request(srv, "GET", path, {"If-None-Match": '"0000000000000000", W/%s' % etag})
        check(st3 == 304, "%s If-None-Match list with a weak tag: %s" % (path, st3))
        st4, _, body4 = request(srv, "GET", path, {"If-None-Match": '"0000000000000000"'})
        check(st4 == 200 and body4 == body, "%s stale ETag: %s" % (path, st4))
        st5, h5, body5 = request(srv, "HEAD", path)
        check(st5 == 200 and body5 == b"" and h5.get("etag") == etag, "HEAD %s: %s" % (path, st5))
    st, h, _ = request(srv, "POST", "/", body=b"x")
    check(st == 405 and "GET" in h.get("allow", ""), "POST /: %s %r" % (st, h))
    # The JSON API keeps its no-store policy.
    st, h, _ = request(srv, "GET", "/v1/models")
    check(h.get("cache-control") == "no-store", "/v1/models Cache-Control %r" % h.get("cache-control"))


def make_reports(tmp):
    """A reports directory like `make paper`'s, plus things that must never be served."""
    d = os.path.join(tmp, "reports")
    os.makedirs(os.path.join(d, "figures"))
    os.makedirs(os.path.join(d, ".git"))
    with open(os.path.join(d, "REPORT.md"), "w") as f:
        f.write("# Paper report\n\nTest accuracy on **imagenet-sample**, see [the JSON](imagenet.json).\n\n"
                "| model | top-1 |\n|---|---:|\n| mobilenet_v3_small | 0.61 |\n| shufflenet_v2_x1_0 | 0.69 |\n\n"
                "![ROC curves](figures/roc.png)\n\n- a [bad link](javascript:alert(1))\n- `code`\n")
    with open(os.path.join(d, "imagenet.json"), "w") as f:
        json.dump({"models": [{"name": "mobilenet_v3_small", "top1": 0.61}]}, f)
    os.makedirs(os.path.join(d, "out", "logs"))
    with open(os.path.join(d, "out", "logs", "train_monkeys_mobilenet_v3_small_head_30_epochs_seed_1.json"), "w") as f:
        json.dump({"epochs": []}, f)
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(img).line([(20, 280), (380, 20)], fill="blue", width=4)
    img.save(os.path.join(d, "figures", "roc.png"))
    with open(os.path.join(d, "figures", "roc.svg"), "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300"><line x1="20" y1="280" '
                'x2="380" y2="20" stroke="red" stroke-width="4"/></svg>')
    with open(os.path.join(d, ".secret.md"), "w") as f:
        f.write("hidden\n")
    with open(os.path.join(d, ".git", "config.txt"), "w") as f:
        f.write("hidden\n")
    with open(os.path.join(d, "run.sh"), "w") as f:
        f.write("echo not a report type\n")
    outside = os.path.join(tmp, "outside.txt")
    with open(outside, "w") as f:
        f.write("outside the reports directory\n")
    os.symlink(outside, os.path.join(d, "leak.txt"))
    os.symlink(tmp, os.path.join(d, "up"))
    return d


def case_reports_http(srv):
    st, _, body = request(srv, "GET", "/v1/reports")
    check(st == 200, "/v1/reports: %s" % st)
    listing = json.loads(body)
    paths = [f["path"] for f in listing["files"]]
    check(listing["configured"] is True, "configured: %r" % listing)
    check(paths == ["REPORT.md", "figures/roc.png", "figures/roc.svg", "imagenet.json",
                    "out/logs/train_monkeys_mobilenet_v3_small_head_30_epochs_seed_1.json"],
          "listed %r (hidden, symlinked-out and non-report files must not be)" % paths)
    st, h, body = request(srv, "GET", "/reports/REPORT.md")
    check(st == 200 and body.startswith(b"# Paper report") and h.get("content-type", "").startswith("text/plain"),
          "REPORT.md: %s %r" % (st, h))
    etag = h.get("etag", "")
    check(etag and h.get("cache-control") == "no-cache", "REPORT.md validators %r" % h)
    st, _, _ = request(srv, "GET", "/reports/REPORT.md", {"If-None-Match": etag})
    check(st == 304, "REPORT.md If-None-Match: %s" % st)
    st, h, body = request(srv, "GET", "/reports/figures/roc.svg")
    check(st == 200 and h.get("content-type") == "image/svg+xml" and "sandbox" in h.get("content-security-policy", ""),
          "SVG served without a sandboxing CSP: %s %r" % (st, h))
    st, h, body = request(srv, "GET", "/reports/figures/roc.png")
    check(st == 200 and body[:8] == b"\x89PNG\r\n\x1a\n" and h.get("content-type") == "image/png", "PNG: %s" % st)
    for bad in ["/reports/../../../../etc/passwd", "/reports/%2e%2e/outside.txt", "/reports/..%2foutside.txt",
                "/reports/leak.txt", "/reports/up/outside.txt", "/reports/.secret.md", "/reports/.git/config.txt",
                "/reports/run.sh", "/reports//etc/passwd", "/reports/figures/../../outside.txt",
                "/reports/%00REPORT.md", "/reports/figures", "/reports/missing.md", "/reports/"]:
        st, _, body = request(srv, "GET", bad)
        check(st == 404 and b"outside the reports" not in body and b"hidden" not in body and b"root:" not in body,
              "%s: %s %r" % (bad, st, body[:200]))


def case_all_models(b, srv, size, names, ft_why):
    w, h = size
    b.open(srv.url + "/", size)
    check(b.js("return document.querySelector('input[name=model]:checked').value") == "all",
          "'all models' is not the default with %d models" % len(loaded_models(srv)))
    b.upload(GOLDFISH)
    b.collect()
    check(b.js("return document.getElementById('error').hidden"), "error shown: %s" % b.js(
        "return document.getElementById('error').textContent"))
    cards = result_cards(b)
    loaded = loaded_models(srv)
    check(sorted(c["model"] for c in cards) == sorted(loaded), "cards %r, loaded %r" % ([c["model"] for c in cards], loaded))
    for c in cards:
        if c["model"] == FT_NAME:
            check(c["labels"] == FT_LABELS, "fine-tuned %s: labels %r, expected %r" % (FT_NAME, c["labels"], FT_LABELS))
        if c["model"] in names:
            check(c["labels"] and c["labels"][0] == "goldfish" and c["shown_top"] == "goldfish",
                  "%s: top label %r, not goldfish" % (c["model"], c["labels"][:3]))
            check(len(c["labels"]) == 5, "%s: %d labels, top_k is 5" % (c["model"], len(c["labels"])))
        check(c["widths"].get("inference", 0) >= 1, "%s: inference bar not drawn: %r" % (c["model"], c["widths"]))
        check(sum(c["widths"].values()) <= c["stack_px"] + 1, "%s: bar overflows: %r" % (c["model"], c["widths"]))
    picker = b.js("return [...document.querySelectorAll('label.model')].map(l => l.innerText)")
    for name in names:
        entry = [p for p in picker if p.startswith(name)]
        check(entry and re.search(r"\d M params · [\d.]+ M MACs · 256→224 px · 1000 classes", entry[0]),
              "picker entry of %s: %r" % (name, entry))
    if not ft_why:
        check(FT_NAME in [c["model"] for c in cards], "no card for the fine-tuned model %s" % FT_NAME)
        check(not any(p.startswith(BROKEN_NAME) for p in picker), "the failed model is offered: %r" % picker)
        off = b.js("return document.querySelector('details.missing').textContent")
        check(BROKEN_NAME + " (failed)" in off, "the failed model is not listed as not loaded: %r" % off)
        ft = [p for p in picker if p.startswith(FT_NAME)]
        check(ft and "fine-tuned" in ft[0] and "from shufflenet_v2_x1_0" in ft[0] and "3 classes" in ft[0],
              "picker entry of the fine-tuned model: %r" % picker)
    longest = max(sum(c["widths"].values()) for c in cards)
    check(longest >= 0.95 * cards[0]["stack_px"], "the slowest model's bar does not span the scale: %r" % cards)
    # The preview shows the photo at its real size; nothing is wider than the screen.
    nat = b.js("const i = document.getElementById('preview-img'); return [i.naturalWidth, i.naturalHeight, "
               "document.getElementById('preview-info').textContent]")
    check(nat[:2] == [376, 263] and "376 × 263 px" in nat[2], "preview: %r" % nat)
    overflow = b.js("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    check(overflow[0] <= overflow[1], "page wider than the %d px screen: %r" % (w, overflow))
    status = b.js("return document.getElementById('status').textContent")
    check("goldfish" in status and "Round trip" in status, "status line %r" % status)
    b.screenshot("goldfish-all-%dx%d.png" % (w, h))


def held_upload(srv, n_declared, n_sent):
    """A classify request that sends n_sent of n_declared body bytes and then waits: those bytes
    stay buffered on the server until the socket closes."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT_S)
    s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
              % n_declared)
    chunk = b"\xff" * 65536
    left = n_sent
    while left > 0:
        s.sendall(chunk[:min(left, len(chunk))])
        left -= min(left, len(chunk))
    return s


def queued_bytes(local_port, remote_port):
    """tx + rx queue bytes of the loopback TCP socket local_port -> remote_port (/proc/net/tcp), or
    None when there is no such socket."""
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == local_port and int(f[2].split(":")[1], 16) == remote_port:
            tx, rx = f[4].split(":")
            return int(tx, 16) + int(rx, 16)
    return None


def classify_status(srv, data):
    """Status of one raw-body classify request; read even when the server answered before taking the
    whole body (then the send fails but the answer is there)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT_S) as s:
        try:
            s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data) + data)
        except OSError:
            pass
        head = b""
        try:
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(m.group(1)) if m else None


def error_text(b):
    return b.js("return document.getElementById('error').hidden ? '' : document.getElementById('error').innerText")


def case_errors(b, srv, tmp):
    b.open(srv.url + "/", VIEWPORTS[0])
    data = open(GOLDFISH, "rb").read()
    broken = os.path.join(tmp, "broken.jpg")
    with open(broken, "wb") as f:
        f.write(data[:len(data) // 3])
    b.expected.append(("/v1/classify", 422))
    b.upload(broken)
    t = error_text(b)
    check("could not be decoded" in t and "truncated" in t.lower() and "{" not in t, "422 shown as %r" % t)
    check(not b.js("return document.querySelectorAll('.result').length"), "results drawn for a broken file")
    b.screenshot("error-422-broken-360x740.png")

    text = os.path.join(tmp, "notes.txt")
    with open(text, "w") as f:
        f.write("this is not a photo\n")
    b.expected.append(("/v1/classify", 415))
    b.upload(text)
    t = error_text(b)
    check("not an image" in t and "JPEG, PNG or WebP" in t and "{" not in t, "415 shown as %r" % t)

    big = os.path.join(tmp, "big.jpg")
    with open(big, "wb") as f:
        f.write(data[:2] + b"\0" * (MAX_BODY + 4096))
    b.expected.append(("/v1/classify", 413))
    b.upload(big)
    t = error_text(b)
    check("too large" in t and "1.0 MiB" in t and "{" not in t, "413 shown as %r" % t)

    # 503: another client holds almost all of --max-buffered-bytes, so the page's upload is refused.
    s = held_upload(srv, MAX_BODY - 16, MAX_BODY - len(data) // 2)
    try:
        # Wait until the server has read every held byte (both sockets' queues empty).
        t_end = time.time() + WAIT_S
        port = s.getsockname()[1]
        while queued_bytes(port, srv.port) or queued_bytes(srv.port, port):
            check(time.time() < t_end, "the server never read the held upload")
            time.sleep(0.05)
        check(classify_status(srv, data) == 503, "the held upload did not make the server busy")
        b.expected.append(("/v1/classify", 503))
        b.upload(GOLDFISH)
        t = error_text(b)
        check("busy" in t and re.search(r"Try again in \d+ seconds?", t) and "{" not in t, "503 shown as %r" % t)
        check(b.js("return !!document.querySelector('#error button')"), "no Retry button after a 503")
        b.screenshot("error-503-busy-360x740.png")
    finally:
        s.close()
    t_end = time.time() + WAIT_S  # the server releases the held bytes once it sees the close
    while classify_status(srv, data) != 200:
        check(time.time() < t_end, "the server stayed busy after the held upload closed")
        time.sleep(0.05)
    b.js("document.querySelector('#error button').click()")
    b.wait(lambda: b.js("return document.querySelectorAll('.result').length > 0 || "
                        "(!document.getElementById('status').classList.contains('busy') && "
                        "!document.getElementById('error').hidden)"), "the retried answer")
    check(b.js("return document.querySelectorAll('.result').length") > 0, "Retry did not classify: %r" % error_text(b))
    b.collect()


def case_exif(b, srv, tmp):
    from PIL import Image
    img = Image.open(GOLDFISH).convert("RGB")  # 376x263
    # Stored rotated 90 degrees counter-clockwise, with orientation 6 saying "rotate 90 clockwise to view".
    stored = img.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = os.path.join(tmp, "goldfish-exif6.jpg")
    stored.save(path, quality=92, exif=exif.tobytes())
    b.open(srv.url + "/", VIEWPORTS[1])
    b.upload(path)
    nat = b.js("const i = document.getElementById('preview-img'); return [i.naturalWidth, i.naturalHeight, "
               "document.getElementById('preview-info').textContent, document.getElementById('status').textContent]")
    check(nat[:2] == [376, 263], "preview not upright: natural size %r (stored 263x376)" % nat[:2])
    check("EXIF orientation 6" in nat[2] and "376 × 263 px" in nat[2], "preview caption %r" % nat[2])
    check("EXIF orientation 6" in nat[3] and "376 × 263 upright" in nat[3], "answer summary %r" % nat[3])
    b.screenshot("exif-orientation-1280x800.png")


def case_keyboard(b, srv, names):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    b.open(srv.url + "/", VIEWPORTS[1])
    b.d.find_element("id", "file").send_keys(GOLDFISH)  # the OS file dialog itself is out of a browser test's reach
    b.wait(lambda: b.js("return document.querySelectorAll('.result').length > 0"), "the first answer")
    b.js("document.activeElement.blur(); window.scrollTo(0, 0)")
    seen = []
    for _ in range(40):
        ActionChains(b.d).send_keys(Keys.TAB).perform()
        info = b.js("const e = document.activeElement; return [e.id || e.tagName, e.name || '', e.value || '', "
                    "getComputedStyle(e.matches('input.visually-hidden') ? e.nextElementSibling : e).outlineStyle]")
        seen.append(info)
        if info[0] == "go":
            break
    ids = [s[0] for s in seen]
    for want in ["file", "camera", "topk", "go"]:
        check(want in ids, "Tab never reaches #%s: %r" % (want, ids))
    check(any(s[1] == "model" for s in seen), "Tab never reaches the model radios: %r" % ids)
    for s in seen:
        if s[0] in ("file", "camera", "go", "topk"):
            check(s[3] not in ("none", ""), "#%s has no visible focus outline" % s[0])
    # Back to the checked radio ("all"), arrow to the next model, Enter on Classify.
    radio = [s for s in seen if s[1] == "model"][0]
    check(radio[2] == "all", "the focused radio is %r" % radio)
    b.js("document.querySelector('input[name=model]:checked').focus()")
    ActionChains(b.d).send_keys(Keys.ARROW_DOWN).perform()
    chosen = b.js("return document.querySelector('input[name=model]:checked').value")
    check(chosen != "all", "arrow key did not change the model")
    b.js("document.getElementById('topk').focus()")
    ActionChains(b.d).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).send_keys("3").perform()
    b.js("document.getElementById('go').focus()")
    b.js("document.getElementById('results').replaceChildren()")
    ActionChains(b.d).send_keys(Keys.ENTER).perform()
    b.wait(lambda: b.js("return document.querySelectorAll('.result').length > 0 || "
                        "!document.getElementById('error').hidden"), "the keyboard-started answer")
    cards = result_cards(b)
    check([c["model"] for c in cards] == [chosen], "cards %r after choosing %s" % ([c["model"] for c in cards], chosen))
    check(len(cards[0]["labels"]) == 3, "top 3 typed, %d labels shown" % len(cards[0]["labels"]))
    if chosen in names:
        check(cards[0]["labels"][0] == "goldfish", "%s says %r" % (chosen, cards[0]["labels"][:1]))
    b.screenshot("keyboard-one-model-1280x800.png")
    b.collect()


def body_bytes_sum(srv):
    st, _, body = request(srv, "GET", "/metrics")
    m = re.search(rb"^cnnserve_request_body_bytes_sum (\d+)", body, re.M)
    check(st == 200 and m, "no cnnserve_request_body_bytes_sum in /metrics")
    return int(m.group(1))


def case_drop_paste(b, srv, names):
    """A file dropped on the zone, then one pasted, each sent as the raw body (the server counts exactly
    the file's bytes: no base64, no multipart)."""
    import base64
    data = open(GOLDFISH, "rb").read()
    b.open(srv.url + "/", VIEWPORTS[1])
    for how in ("drop", "paste"):
        before = body_bytes_sum(srv)
        b.js("document.getElementById('results').replaceChildren()")
        b.js("""
            const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'dropped-goldfish.jpg', {type: 'image/jpeg'}));
            if (arguments[1] === 'drop') {
                const zone = document.getElementById('drop');
                zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
                zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
            } else {
                document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));
            }""", base64.b64encode(data).decode(), how)
        b.wait(lambda: b.js("return !document.getElementById('status').classList.contains('busy') && "
                            "(document.querySelectorAll('.result').length > 0 || "
                            "!document.getElementById('error').hidden)"), "the answer to the %s" % how)
        cards = result_cards(b)
        check(cards and all(c["labels"][0] == "goldfish" for c in cards if c["model"] in names),
              "%s: cards %r, error %r" % (how, [(c["model"], c["labels"][:1]) for c in cards], error_text(b)))
        sent = body_bytes_sum(srv) - before
        check(sent == len(data), "%s: the server received %d body bytes for a %d-byte file" % (how, sent, len(data)))
        info = b.js("return document.getElementById('preview-info').textContent")
        check("dropped-goldfish.jpg" in info and "376 × 263 px" in info, "%s: preview caption %r" % (how, info))
    b.collect()


def case_reports_page(b, srv):
    b.open(srv.url + "/", VIEWPORTS[0])
    b.wait(lambda: b.js("return document.querySelectorAll('#reports a').length > 0"), "the report links")
    links = b.js("return [...document.querySelectorAll('#reports a')].map(a => a.getAttribute('href'))")
    for want in ["/reports/REPORT.md", "/reports/imagenet.json", "/reports/figures/roc.png", "/reports/figures/roc.svg"]:
        check(want in links, "%s not linked: %r" % (want, links))
    check(not any("secret" in l or "leak" in l or "run.sh" in l for l in links), "links %r" % links)
    b.wait(lambda: b.js("return [...document.querySelectorAll('#reports img')].every(i => i.complete && "
                        "i.naturalWidth > 0)"), "the figure thumbnails", limit_s=20)
    # Figures: one thumbnail per stem with a link per format.
    figs = b.js("return [...document.querySelectorAll('#reports figure')].map(f => f.innerText)")
    check(len(figs) == 1 and "PNG" in figs[0] and "SVG" in figs[0], "figure entries %r" % figs)
    # REPORT.md rendered in the page: its table, its figure, its safe links.
    b.js("document.querySelector('#reports button[data-path=\"REPORT.md\"]').click()")
    b.wait(lambda: b.js("return document.querySelectorAll('#report-view td').length > 0"), "the rendered report")
    b.wait(lambda: b.js("const i = document.querySelector('#report-view img'); return i && i.complete && "
                        "i.naturalWidth > 0"), "the report's figure", limit_s=20)
    view = b.js("const v = document.getElementById('report-view'); return [v.innerText, "
                "[...v.querySelectorAll('a')].map(a => a.getAttribute('href')), "
                "[...v.querySelectorAll('td')].map(t => t.textContent), document.activeElement.textContent, "
                "v.querySelector('img').getAttribute('src')]")
    check(view[2] == ["mobilenet_v3_small", "0.61", "shufflenet_v2_x1_0", "0.69"], "table cells %r" % view[2])
    align = b.js("return [...document.querySelectorAll('#report-view td')].map(t => getComputedStyle(t).textAlign)")
    check(align[1] == "right" and align[0] in ("left", "start"), "column alignment %r ('---:' is right)" % align)
    check("/reports/imagenet.json" in view[1] and not any("javascript" in h for h in view[1]), "links %r" % view[1])
    check(view[4] == "/reports/figures/roc.png" and view[3] == "REPORT.md", "figure %r, focus on %r" % (view[4], view[3]))
    overflow = b.js("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    check(overflow[0] <= overflow[1], "reports make the page wider than the screen: %r" % overflow)
    b.js("document.getElementById('reports-section').scrollIntoView()")
    b.screenshot("reports-360x740.png")
    b.collect()


def case_no_reports(b, srv):
    b.open(srv.url + "/", VIEWPORTS[0])
    b.wait(lambda: b.js("return !/Loading/.test(document.getElementById('reports').textContent)"), "the reports section")
    t = b.js("return document.getElementById('reports').innerText")
    check("--reports-dir" in t and "cnnserve eval" in t and "make paper" in t, "no-reports text %r" % t)
    b.collect()


def case_console(b):
    b.collect()
    problems = []
    allowed = list(b.expected)
    for e in b.log:
        if e.get("level") not in ("SEVERE", "ERROR"):
            continue
        msg = e.get("message", "")
        m = re.search(r"(\S+) - Failed to load resource: the server responded with a status of (\d+)", msg)
        hit = m and next((x for x in allowed if x[0] in m.group(1) and int(m.group(2)) == x[1]), None)
        if hit and e.get("source") == "network":
            allowed.remove(hit)  # each provoked error answer excuses exactly one network line
            continue
        problems.append("console: %s" % msg)
    check(not problems, "; ".join(problems[:10]))
    # Each provoked error answer was logged: the log is really captured, so its silence means something.
    check(b.expected and not allowed, "provoked error answers missing from the console log: %r" % allowed)


def case_servers_exit(servers):
    codes = [(s, s.stop()) for s in servers]
    for s, rc in codes:
        check(rc == 0, "server exited %r: %s" % (rc, "\n".join(s.log()[-15:])))


def main():
    why = why_no_server()
    if why:
        testlib.skip_all(CASES, why)
        return 0
    os.makedirs(SHOTS, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="cnnserve-browser-")
    srv = bare = b = None
    try:
        reports = make_reports(tmp)
        wdir, ft_why = make_weights(tmp)
        if ft_why:
            print("# without a fine-tuned model: %s" % ft_why)
        srv = start_server(wdir, "--reports-dir", reports, "--max-body-bytes", str(MAX_BODY),
                           "--max-buffered-bytes", str(MAX_BODY))
        names = imagenet_models(srv)
        print("# server %s, ImageNet models %r, models %r" % (srv.url, names, loaded_models(srv)))
        testlib.run_case(CASES[0], case_headers, srv)
        testlib.run_case(CASES[1], case_reports_http, srv)
        why = why_no_browser()
        if why:
            testlib.skip_all(CASES[2:11], why)
            stopping, srv = [srv], None
            testlib.run_case(CASES[11], case_servers_exit, stopping)
            return testlib.finish()
        print("# %s" % subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip())
        b = Browser(os.path.join(tmp, "profile"))
        testlib.run_case(CASES[2], case_all_models, b, srv, VIEWPORTS[0], names, ft_why)
        testlib.run_case(CASES[3], case_all_models, b, srv, VIEWPORTS[1], names, ft_why)
        testlib.run_case(CASES[4], case_errors, b, srv, tmp)
        testlib.run_case(CASES[5], case_exif, b, srv, tmp)
        testlib.run_case(CASES[6], case_keyboard, b, srv, names)
        testlib.run_case(CASES[7], case_drop_paste, b, srv, names)
        testlib.run_case(CASES[8], case_reports_page, b, srv)
        bare = start_server(WEIGHTS)
        testlib.run_case(CASES[9], case_no_reports, b, bare)
        testlib.run_case(CASES[10], case_console, b)
        stopping, srv, bare = [srv, bare], None, None
        testlib.run_case(CASES[11], case_servers_exit, stopping)
    finally:
        if b:
            b.quit()
        for s in (srv, bare):
            if s:
                s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
