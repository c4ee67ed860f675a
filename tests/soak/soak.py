#!/usr/bin/python3
"""`make soak`: SOAK_SECONDS (default 600) of mixed good and broken traffic against `cnnserve serve`
with default flags, RSS sampled every 5 s. Exits non-zero on any 5xx answer other than 503 (and the
501/505 that the HTTP rules prescribe for two of the broken requests), on the server dying, or on RSS growth over 10 % (the last minute's peak against the peak of the minute after
warm-up). Not part of `make test` (it takes minutes).

Traffic, from SOAK_CLIENTS threads (default 8): good JPEG classifications on kept-alive connections,
bad parameters, corrupt and truncated images, malformed framing (raw sockets), bodies cut short,
connections reset mid-body, slow header senders, and GET /healthz, /metrics, /v1/models.
"""

import http.client
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(REPO, os.environ.get("BIN", "bin"), "cnnserve")
SHARED = os.environ.get("CNN_SHARED", os.path.join(REPO, "..", "shared"))
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "8"))

lock = threading.Lock()
counts = {}
bad = []


def count(kind, status, expected=()):
    """expected: statuses this request must get (501/505 are the right answers to some broken framing)."""
    with lock:
        counts[(kind, status)] = counts.get((kind, status), 0) + 1
        if 500 <= status < 600 and status != 503 and status not in expected:
            bad.append("%s -> %d" % (kind, status))


def raw(port, data, read=True, timeout=10):
    """Sends data; returns the status of the answer (0 when none)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return -1
    try:
        s.sendall(data)
        if not read:
            return 0
        out = b""
        while b"\r\n\r\n" not in out:
            b = s.recv(4096)
            if not b:
                break
            out += b
        m = re.match(rb"HTTP/1\.[01] (\d{3})", out)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0
    finally:
        s.close()


def client(port, photos, t_end, rng):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.time() < t_end:
        kind = rng.choice(["good"] * 6 + ["params", "corrupt", "truncated", "framing", "cut", "reset", "slow", "get"])
        try:
            if kind == "good":
                conn.request("POST", "/v1/classify?top_k=3", rng.choice(photos), {"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                r.read()
                count(kind, r.status)
            elif kind == "params":
                q = rng.choice(["?top_k=0", "?top_k=5%00", "?model=%ff", "?top_k=1&top_k=2", "?x=1", "?model=nope"])
                conn.request("POST", "/v1/classify" + q, photos[0], {"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                r.read()
                count(kind, r.status)
            elif kind == "corrupt":
                p = bytearray(rng.choice(photos))
                for _ in range(20):
                    p[rng.randrange(len(p))] = rng.randrange(256)
                conn.request("POST", "/v1/classify", bytes(p), {"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                r.read()
                count(kind, r.status)
            elif kind == "truncated":
                p = rng.choice(photos)
                conn.request("POST", "/v1/classify", p[:rng.randrange(1, len(p))], {"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                r.read()
                count(kind, r.status)
            elif kind == "get":
                conn.request("GET", rng.choice(["/healthz", "/readyz", "/metrics", "/v1/models", "/nope"]))
                r = conn.getresponse()
                r.read()
                count(kind, r.status)
            elif kind == "framing":
                data, expected = rng.choice([
                    (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello", ()),
                    (b"GET /healthz HTTP/1.1\r\n\r\n", ()),
                    (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", (501,)),
                    (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", ()),
                    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nbad line\r\n\r\n", ()),
                    (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", (505,)),
                    (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ()),
                    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200), ()),
                ])
                count(kind, raw(port, data), expected)
            elif kind == "cut":
                p = rng.choice(photos)
                head = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(p)
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(head + p[:len(p) // 2])
                s.shutdown(socket.SHUT_WR)
                s.settimeout(35)
                try:
                    s.recv(4096)
                except OSError:
                    pass
                s.close()
                count(kind, 0)
            elif kind == "reset":
                p = rng.choice(photos)
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(p) + p[:rng.randrange(len(p))])
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
                count(kind, 0)
            elif kind == "slow":
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                for c in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[:rng.randrange(1, 20)]:
                    s.send(bytes([c]))
                    time.sleep(0.05)
                s.close()
                count(kind, 0)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def rss_kib(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    sample = os.path.join(SHARED, "data", "imagenet-sample")
    weights = os.path.join(SHARED, "weights")
    if not os.path.isdir(sample) or not os.path.isdir(weights):
        print("soak: needs %s and %s" % (sample, weights))
        return 2
    photos = [open(os.path.join(sample, f), "rb").read() for f in sorted(os.listdir(sample))
              if f.lower().endswith((".jpeg", ".jpg"))][:16]
    proc = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--weights-dir", weights],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = None
    for line in proc.stderr:
        m = re.search(rb" listening .*port=(\d+)", line)
        if m:
            port = int(m.group(1))
        if b" ready " in line:
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    t0 = time.time()
    t_end = t0 + SECONDS
    threads = [threading.Thread(target=client, args=(port, photos, t_end, random.Random(i))) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    samples = []
    while time.time() < t_end and proc.poll() is None:
        time.sleep(5)
        samples.append((time.time() - t0, rss_kib(proc.pid)))
        print("t=%4.0f s  rss=%.1f MiB  answers=%d" % (samples[-1][0], samples[-1][1] / 1024.0, sum(counts.values())))
        sys.stdout.flush()
    for t in threads:
        t.join(60)
    alive = proc.poll() is None
    proc.terminate()
    rc = proc.wait(60)
    warm = [r for t, r in samples if 60 <= t < 120] or [r for _, r in samples[:12]]
    last = [r for t, r in samples if t >= samples[-1][0] - 60] if samples else []
    growth = (max(last) / max(warm) - 1.0) if warm and last and max(warm) else 0.0
    print("answers by kind and status:")
    for (kind, status), n in sorted(counts.items()):
        print("  %-10s %3d  %d" % (kind, status, n))
    print("RSS: peak %.1f MiB in 60-120 s, peak %.1f MiB in the last minute: %+.1f %%" %
          (max(warm) / 1024.0 if warm else 0, max(last) / 1024.0 if last else 0, 100 * growth))
    problems = []
    if not alive:
        problems.append("the server died (exit status %s)" % rc)
    if bad:
        problems.append("%d 5xx answers other than 503, e.g. %s" % (len(bad), bad[:5]))
    if growth > 0.10:
        problems.append("RSS grew %.1f %% (> 10 %%)" % (100 * growth))
    if not counts.get(("good", 200)):
        problems.append("no good request answered 200")
    for p in problems:
        print("soak: FAIL: " + p)
    print("soak: %s" % ("FAIL" if problems else "pass"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
