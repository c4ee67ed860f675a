"""Shared harness of the Python tests (tests/*/test_*.py).

Result lines in the format tests/run.sh counts: "ok - NAME", "not ok - NAME: why" with detail lines
"#   ...", "skip - NAME: why". A case is a function run by run_case: it passes when it returns without
an error, fails on check()/assert or any exception (with the traceback's last lines), and skips
when it raises Skip. When a precondition (PyTorch, weights) is missing, skip_all reports every case it
would have run, one skip line each. Server runs `cnnserve serve` on a free 127.0.0.1 port.

Import from a test script with:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import testlib
"""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import traceback
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.join(REPO, os.environ.get("BIN", "bin"), "cnnserve")
CACHE = os.environ.get("CNN_CACHE", os.path.join(REPO, "cache"))
SHARED = os.environ.get("CNN_SHARED") or os.path.join(REPO, "..", "shared")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
ASAN = "asan" in BUILD


def sample_photos():
    """[(file, index, name)] of ../shared/data/imagenet-sample (labels.tsv), or [] when absent."""
    sample = os.path.join(SHARED, "data", "imagenet-sample")
    tsv = os.path.join(sample, "labels.tsv")
    if not os.path.exists(tsv):
        return []
    rows = []
    for line in open(tsv).read().splitlines()[1:]:
        f, idx, _, name = line.split("\t")
        rows.append((os.path.join(sample, f), int(idx), name))
    return rows


counts = {"pass": 0, "fail": 0, "skip": 0}


class Skip(Exception):
    """Raised by a case that cannot run here; the message says why."""


class Failure(AssertionError):
    """Raised by check(); the message says what differs."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def ok(name):
    counts["pass"] += 1
    print("ok - %s" % name, flush=True)


def not_ok(name, problems):
    """problems: non-empty list of strings; the first goes on the result line, all on detail lines."""
    counts["fail"] += 1
    for p in problems[:20]:
        for line in str(p).splitlines() or [""]:
            print("#   %s" % line)
    print("not ok - %s: %s" % (name, str(problems[0]).splitlines()[0] if str(problems[0]) else "failed"), flush=True)


def skip(name, why):
    counts["skip"] += 1
    print("skip - %s: %s" % (name, why), flush=True)


def report(name, problems):
    """ok when problems (a list of strings) is empty, else not ok."""
    if problems:
        not_ok(name, problems)
    else:
        ok(name)


def skip_all(names, why):
    """One skip line per case that cannot run."""
    for name in names:
        skip(name, why)


def run_case(name, fn, *args):
    """Runs fn(*args) as one case. fn may return a list of problems (empty = pass), or None."""
    t0 = time.time()
    try:
        problems = fn(*args) or []
    except Skip as e:
        return skip(name, str(e))
    except Failure as e:
        problems = [str(e)]
    except Exception as e:  # an unexpected error fails the case, with where it happened
        problems = ["%s: %s" % (type(e).__name__, e)] + traceback.format_exc().rstrip().splitlines()[-6:]
    print("# %.1f s" % (time.time() - t0))
    report(name, problems)


def finish():
    """Prints the totals; the exit status of the script (1 when a case failed)."""
    print("# %d passed, %d failed, %d skipped" % (counts["pass"], counts["fail"], counts["skip"]), flush=True)
    return 1 if counts["fail"] else 0


def have_torch():
    """None when torch and torchvision import, else why not."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        return "PyTorch/torchvision not importable (%s)" % e
    return None


def torch_and_tool(names, tool, threads=1):
    """The torch module (set to `threads` threads) when PyTorch and torchvision import and the test tool
    `tool` (a path under $BUILD/tests) is built; else None, after one skip line per case of names
    saying which is missing."""
    why = have_torch()
    if not why and not os.access(tool, os.X_OK):
        why = "%s not built (make test builds it)" % tool
    if why:
        skip_all(names, why)
        return None
    import torch
    torch.set_num_threads(threads)
    return torch


MONKEYS = os.path.join(SHARED, "data", "monkeys")


def monkey_subset(tmp, classes, per_class, odd_files=False):
    """tmp/data/<class>/ holding the first per_class photos of ../shared/data/monkeys/train/<class>
    (symlinks) and <classes[1]>/broken.jpg (a JPEG header, no image); with odd_files also
    <classes[1]>/notes.txt (not an image) and <classes[2]>/.hidden.jpg (a hidden copy of a photo).
    Returns the data folder."""
    data = os.path.join(tmp, "data")
    for c in classes:
        os.makedirs(os.path.join(data, c))
        for f in sorted(os.listdir(os.path.join(MONKEYS, "train", c)))[:per_class]:
            os.symlink(os.path.join(MONKEYS, "train", c, f), os.path.join(data, c, f))
    with open(os.path.join(data, classes[1], "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a JPEG")
    if odd_files:
        with open(os.path.join(data, classes[1], "notes.txt"), "w") as f:
            f.write("not an image\n")
        first = sorted(os.listdir(os.path.join(data, classes[2])))[0]
        shutil.copyfile(os.path.join(data, classes[2], first), os.path.join(data, classes[2], ".hidden.jpg"))
    return data


def run_train(*args, timeout=900):
    """`cnnserve train ARGS`: (exit status, stdout, stderr) as text."""
    p = subprocess.run([BIN, "train"] + list(args), capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def train_errors(prefix, defaults, cases, out):
    """Each (args, message) case runs `cnnserve train PREFIX ARGS` plus every (option, value) of defaults
    that ARGS lacks, and must exit 1 with message on stderr; none may write out. Returns the problems."""
    problems = []
    for args, msg in cases:
        full = list(prefix) + list(args)
        for opt, val in defaults:
            if opt not in args:
                full += [opt, val]
        rc, _, se = run_train(*full)
        if rc != 1 or msg not in se:
            problems.append("%s: exit %d, %r (want 1 and %r)" % (" ".join(args), rc, se.strip()[-300:], msg))
    if os.path.exists(out):
        problems.append("a failed run wrote %s" % out)
    return problems


def http_get(url, timeout=10):
    """(status, body bytes) of one GET, or (None, b"") when the server does not answer."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", u.path + ("?" + u.query if u.query else ""))
        r = conn.getresponse()
        return r.status, r.read()
    except OSError:
        return None, b""
    finally:
        conn.close()


class Server:
    """`cnnserve serve` on 127.0.0.1 with an ephemeral port (--port 0; the port is read from the
    'listening' log line); stderr collected in a thread (log()). env adds variables; clean_env drops
    the caller's CNNSERVE_* variables first."""

    def __init__(self, weights_dir, *flags, env=None, clean_env=False, bin_path=BIN, listen_s=120):
        base = {k: v for k, v in os.environ.items() if not (clean_env and k.startswith("CNNSERVE_"))}
        cmd = [bin_path, "serve", "--host", "127.0.0.1", "--port", "0", "--weights-dir", weights_dir] + list(flags)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=dict(base, **(env or {})))
        self.lines = []
        self.lock = threading.Lock()
        self.port = None
        self.listening = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.listening.wait(listen_s)
        self.url = "http://127.0.0.1:%s" % self.port

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self.lock:
                self.lines.append(line)
            port = None
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                    port = event.get("port") if event.get("event") == "listening" else None
                except ValueError:
                    pass
            else:
                m = re.search(r" listening .*port=(\d+)", line)
                port = int(m.group(1)) if m else None
            if port is not None and self.port is None:
                self.port = port
                self.listening.set()
        self.listening.set()

    def log(self):
        with self.lock:
            return list(self.lines)

    def wait_ready(self, path="/readyz", limit_s=300):
        """Polls path until 200 or the process exits; returns the (status, JSON "status") pairs seen."""
        seen = []
        t_end = time.time() + limit_s
        while self.port is not None and time.time() < t_end and self.proc.poll() is None:
            status, body = http_get(self.url + path)
            try:
                state = json.loads(body).get("status")
            except (ValueError, AttributeError):
                state = None
            seen.append((status, state))
            if status == 200:
                break
            time.sleep(0.01)
        return seen

    def stop(self, sig=signal.SIGTERM, limit_s=120):
        """Sends sig and waits; the exit status, or None when it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(limit_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.reader.join(10)
