#!/usr/bin/python3
"""Deployment files against the server they deploy.

Parses the Dockerfile, deploy/docker-compose.yml and deploy/k8s/*.yaml and checks that their port,
probe paths, CNNSERVE_* variables, stop signal and grace periods agree with the server: its defaults
come from `cnnserve serve --help` (the binary, else the usage text in server/config.c), its routes
from openapi.yaml. A live case starts bin/cnnserve on ../shared/weights and hits the manifests'
probe paths, then stops it with the manifests' stop signal. Also checks that .ci/run runs the
README's install and test commands and that the README's configuration table matches the flags.
Prints one "ok - / not ok - / skip - " line per case; exits non-zero on a failure.
"""

import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402
from testlib import BIN, SHARED, report, skip  # noqa: E402

ROOT = testlib.REPO


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


# ---- what the server actually uses -------------------------------------------------------------

def server_usage():
    """`cnnserve serve --help` text, from the built binary or else the source; None if neither."""
    exe = BIN
    if os.access(exe, os.X_OK):
        r = subprocess.run([exe, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30, check=False)
        text = r.stdout.decode("utf-8", "replace")
        if "--port" in text:
            return text
    src = os.path.join(ROOT, "server", "config.c")
    if not os.path.exists(src):
        return None
    m = re.search(r"usage_text\[\]\s*=\s*((?:\s*\"(?:[^\"\\]|\\.)*\")+)\s*;", read("server/config.c"))
    if not m:
        return None
    parts = re.findall(r"\"((?:[^\"\\]|\\.)*)\"", m.group(1))
    return "".join(parts).replace("\\n", "\n").replace('\\"', '"')


def server_facts(usage):
    """Default port, drain timeout and the set of CNNSERVE_* variables, from the usage text."""
    facts = {"flags": set(re.findall(r"^\s+--([a-z][a-z-]*)\s", usage, re.M))}
    facts["env"] = {"CNNSERVE_" + f.upper().replace("-", "_") for f in facts["flags"]}
    m = re.search(r"--port\b.*?\(default (\d+)", usage)
    facts["port"] = int(m.group(1)) if m else None
    m = re.search(r"--drain-timeout\b.*?\(default (\d+)", usage)
    facts["drain_s"] = int(m.group(1)) if m else None
    return facts


OPENAPI = "openapi.yaml"


def server_routes():
    """Paths of openapi.yaml (the document the server embeds and serves), or None."""
    if not os.path.exists(os.path.join(ROOT, OPENAPI)):
        return None
    doc = yaml.safe_load(read(OPENAPI))
    return set((doc or {}).get("paths", {}) or {})


# ---- helpers ---------------------------------------------------------------------------------

K8S_UNITS = {"": 1, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3}
COMPOSE_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def k8s_bytes(q):
    """Kubernetes memory quantity ("512Mi", "1G") -> bytes."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", str(q))
    if not m:
        raise ValueError("bad memory quantity %r" % q)
    return int(m.group(1)) * K8S_UNITS[m.group(2) or ""]


def compose_bytes(q):
    """Compose byte value ("512m", "512M", "1g": binary units, as docker reads them) -> bytes."""
    m = re.fullmatch(r"(\d+)([bkmg])?b?", str(q).lower())
    if not m:
        raise ValueError("bad compose byte value %r" % q)
    return int(m.group(1)) * COMPOSE_UNITS[m.group(2) or "b"]


def k8s_cpu(q):
    s = str(q)
    return int(s[:-1]) / 1000.0 if s.endswith("m") else float(s)


def duration_s(v):
    """Compose duration ("30s", "1m30s") -> seconds."""
    total, rest = 0.0, str(v)
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", rest):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def dockerfile_instructions(text):
    """[(stage_index, INSTRUCTION, args)] with continuation lines joined and comments dropped."""
    out, stage, buf = [], -1, ""
    for line in text.splitlines():
        if not buf and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, args = buf.strip().partition(" ")
            word = word.upper()
            if word == "FROM":
                stage += 1
            out.append((stage, word, args.strip()))
        buf = ""
    return out


def env_pairs(args):
    """ENV args ("A=1 B=2" or "A 1") -> dict."""
    if "=" not in args.split()[0]:
        k, _, v = args.partition(" ")
        return {k: v.strip()}
    return dict(tok.split("=", 1) for tok in args.split())


# ---- cases -------------------------------------------------------------------------------------

def check_dockerfile(facts):
    name = "Dockerfile: runtime stage port, healthcheck, stop signal, user, variables"
    if not os.path.exists(os.path.join(ROOT, "Dockerfile")):
        return report(name, ["Dockerfile missing"])
    ins = dockerfile_instructions(read("Dockerfile"))
    last = max(s for s, _, _ in ins)
    rt = [(w, a) for s, w, a in ins if s == last]
    p = []
    frm = [a for w, a in rt if w == "FROM"][0]
    if not frm.startswith("debian:bookworm-slim"):
        p.append("runtime stage is FROM %s, expected debian:bookworm-slim" % frm)
    env = {}
    for w, a in rt:
        if w == "ENV":
            env.update(env_pairs(a))
    port = int(env.get("CNNSERVE_PORT", facts["port"]))
    if port != facts["port"]:
        p.append("CNNSERVE_PORT=%s differs from the server default %s" % (port, facts["port"]))
    exposed = [a.split("/")[0] for w, a in rt if w == "EXPOSE"]
    if exposed != [str(port)]:
        p.append("EXPOSE %s, expected %d" % (exposed, port))
    unknown = sorted(k for k in env if k.startswith("CNNSERVE_") and k not in facts["env"])
    if unknown:
        p.append("ENV sets variables the server does not read: %s" % unknown)
    hc = [a for w, a in rt if w == "HEALTHCHECK"]
    if len(hc) != 1:
        p.append("expected one HEALTHCHECK, got %d" % len(hc))
    else:
        m = re.search(r"http://[^/\s\"]+:([^/\s\"]+)(/[\w./-]*)", hc[0])
        if not m:
            p.append("HEALTHCHECK has no http URL: %s" % hc[0])
        else:
            hc_port = m.group(1).replace("${CNNSERVE_PORT}", str(port)).replace("$CNNSERVE_PORT", str(port))
            if hc_port != str(port):
                p.append("HEALTHCHECK port %s, expected %d" % (m.group(1), port))
            if m.group(2) != "/readyz":
                p.append("HEALTHCHECK path %s, expected /readyz" % m.group(2))
    stop = [a for w, a in rt if w == "STOPSIGNAL"]
    if stop != ["SIGTERM"]:
        p.append("STOPSIGNAL %s, expected SIGTERM" % stop)
    user = [a for w, a in rt if w == "USER"]
    uid = user[-1].split(":")[0] if user else "0"
    if not uid.isdigit() or int(uid) == 0:
        p.append("runtime USER %r: expected a numeric non-root uid (k8s runAsNonRoot checks it)" % uid)
    wdir = env.get("CNNSERVE_WEIGHTS_DIR")
    copies = [a for w, a in rt if w == "COPY" and "--from=weights" in a]
    if not wdir or not copies or copies[0].split()[-1].rstrip("/") != wdir.rstrip("/"):
        p.append("CNNSERVE_WEIGHTS_DIR=%s is not where the weights stage is copied (%s)" % (wdir, copies))
    report(name, p)
    return {"port": port, "uid": int(uid) if uid.isdigit() else None}


def check_compose(facts, image):
    name = "docker-compose.yml: parses; port, healthcheck, stop signal, variables, limits"
    doc = yaml.safe_load(read("deploy/docker-compose.yml"))
    p = []
    svc = (doc.get("services") or {}).get("cnnserve")
    if not svc:
        return report(name, ["no services.cnnserve"]), None
    env = {str(k): str(v) for k, v in (svc.get("environment") or {}).items()}
    port = int(env.get("CNNSERVE_PORT", image["port"]))
    unknown = sorted(k for k in env if k.startswith("CNNSERVE_") and k not in facts["env"])
    if unknown:
        p.append("environment sets variables the server does not read: %s" % unknown)
    targets = [str(x).rsplit(":", 1)[-1].split("/")[0] for x in svc.get("ports") or []]
    if targets != [str(port)]:
        p.append("ports map container port(s) %s, the server listens on %d" % (targets, port))
    test = " ".join(str(t) for t in (svc.get("healthcheck") or {}).get("test") or [])
    if "http://127.0.0.1:%d/readyz" % port not in test:
        p.append("healthcheck %r does not request /readyz on port %d" % (test, port))
    if svc.get("stop_signal") != "SIGTERM":
        p.append("stop_signal %r, expected SIGTERM" % svc.get("stop_signal"))
    grace = duration_s(svc.get("stop_grace_period", "10s"))
    drain = int(env.get("CNNSERVE_DRAIN_TIMEOUT", facts["drain_s"] or 0))
    if grace <= drain:
        p.append("stop_grace_period %ss does not exceed the drain timeout %ss" % (grace, drain))
    build = svc.get("build") or {}
    if os.path.normpath(os.path.join(ROOT, "deploy", build.get("context", "."), build.get("dockerfile", "Dockerfile"))) \
            != os.path.join(ROOT, "Dockerfile"):
        p.append("build does not point at the repository's Dockerfile: %s" % build)
    res = ((svc.get("deploy") or {}).get("resources") or {})
    limits = {}
    try:
        limits["memory"] = compose_bytes(res["limits"]["memory"])
        limits["request"] = compose_bytes(res["reservations"]["memory"])
        limits["cpus"] = float(res["limits"]["cpus"])
        if limits["request"] > limits["memory"]:
            p.append("memory reservation above the limit")
    except (KeyError, TypeError, ValueError) as e:
        p.append("deploy.resources limits/reservations: %s" % e)
    report(name, p)
    return limits


def load_k8s():
    docs = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "k8s", "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for d in yaml.safe_load_all(f):
                if d:
                    docs.setdefault(d.get("kind"), []).append((os.path.basename(path), d))
    return docs


def check_k8s(facts, image, compose_limits):
    p = []
    try:
        docs = load_k8s()
    except yaml.YAMLError as e:
        return report("k8s: manifests parse", [str(e)]), None
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "Kustomization"):
        if len(docs.get(kind, [])) != 1:
            p.append("expected one %s, got %d" % (kind, len(docs.get(kind, []))))
    report("k8s: manifests parse (Deployment, Service, HorizontalPodAutoscaler, Kustomization)", p)
    if p:
        return None

    kust = docs["Kustomization"][0][1]
    files = {os.path.basename(x) for x in glob.glob(os.path.join(ROOT, "deploy", "k8s", "*.yaml"))}
    listed = set(kust.get("resources") or [])
    report("k8s: kustomization lists every manifest",
           [] if listed == files - {"kustomization.yaml"} else
           ["resources %s, files %s" % (sorted(listed), sorted(files))])

    dep = docs["Deployment"][0][1]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: str(e.get("value")) for e in c.get("env") or []}
    port = int(env.get("CNNSERVE_PORT", image["port"]))
    named = {x.get("name"): x["containerPort"] for x in c.get("ports") or []}
    p = []
    if list(named.values()) != [port]:
        p.append("containerPort(s) %s, the server listens on %d" % (list(named.values()), port))
    if port != facts["port"] and "CNNSERVE_PORT" not in env:
        p.append("port %d differs from the server default %d" % (port, facts["port"]))
    unknown = sorted(k for k in env if k.startswith("CNNSERVE_") and k not in facts["env"])
    if unknown:
        p.append("env sets variables the server does not read: %s" % unknown)
    for probe, want in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", None)):
        pr = c.get(probe)
        if pr is None:
            if want:
                p.append("no %s" % probe)
            continue
        get = pr.get("httpGet") or {}
        path, pport = get.get("path"), get.get("port")
        pport = named.get(pport, pport)
        if want and path != want:
            p.append("%s path %s, expected %s" % (probe, path, want))
        if pport != port:
            p.append("%s port %s, expected %d" % (probe, get.get("port"), port))
    report("k8s: Deployment port, probe paths and variables match the server", p)

    p = []
    sc = pod.get("securityContext") or {}
    if not sc.get("runAsNonRoot") or sc.get("runAsUser") != image["uid"]:
        p.append("pod securityContext %s: expected runAsNonRoot with the image's uid %s" % (sc, image["uid"]))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    drain = int(env.get("CNNSERVE_DRAIN_TIMEOUT", facts["drain_s"] or 0))
    if grace <= drain:
        p.append("terminationGracePeriodSeconds %s does not exceed the drain timeout %s" % (grace, drain))
    res = c.get("resources") or {}
    try:
        req_mem, lim_mem = k8s_bytes(res["requests"]["memory"]), k8s_bytes(res["limits"]["memory"])
        req_cpu, lim_cpu = k8s_cpu(res["requests"]["cpu"]), k8s_cpu(res["limits"]["cpu"])
        if req_mem > lim_mem or req_cpu > lim_cpu:
            p.append("requests above limits: %s" % res)
        workers = int(env.get("CNNSERVE_WORKERS", "0"))
        if workers != int(lim_cpu):
            # The default (online cores) would see the node's cores, not the limit.
            p.append("CNNSERVE_WORKERS=%s should equal the CPU limit %s" % (workers, lim_cpu))
        if compose_limits and (compose_limits.get("memory") != lim_mem
                               or compose_limits.get("request") != req_mem
                               or compose_limits.get("cpus") != lim_cpu):
            p.append("docker-compose limits %s differ from the Deployment's %s" % (compose_limits, res))
    except (KeyError, TypeError, ValueError) as e:
        p.append("resources requests/limits: %s" % e)
    report("k8s: Deployment resources, non-root user, grace period", p)

    p = []
    svc = docs["Service"][0][1]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    sel = svc["spec"].get("selector") or {}
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        p.append("Service selector %s does not select the pod labels %s" % (sel, labels))
    if dep["spec"]["selector"].get("matchLabels") != sel:
        p.append("Deployment selector %s differs from the Service's %s" % (dep["spec"]["selector"], sel))
    for sp in svc["spec"].get("ports") or []:
        tp = named.get(sp.get("targetPort"), sp.get("targetPort"))
        if tp != port:
            p.append("Service targetPort %s does not reach container port %d" % (sp.get("targetPort"), port))
    report("k8s: Service selects the pods and targets the server port", p)

    p = []
    hpa = docs["HorizontalPodAutoscaler"][0][1]
    ref = hpa["spec"]["scaleTargetRef"]
    if ref.get("kind") != "Deployment" or ref.get("name") != dep["metadata"]["name"]:
        p.append("scaleTargetRef %s is not the Deployment %s" % (ref, dep["metadata"]["name"]))
    mets = [m for m in hpa["spec"].get("metrics") or []
            if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"]
    if not mets:
        p.append("no CPU resource metric")
    if not 1 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"]:
        p.append("replica bounds %s..%s" % (hpa["spec"].get("minReplicas"), hpa["spec"]["maxReplicas"]))
    report("k8s: HorizontalPodAutoscaler scales the Deployment on CPU", p)
    return {"ready": c["readinessProbe"]["httpGet"]["path"], "live": c["livenessProbe"]["httpGet"]["path"]}


def check_openapi(probes):
    name = "openapi.yaml documents the manifests' probe paths"
    routes = server_routes()
    if routes is None:
        return skip(name, "no openapi.yaml")
    if probes is None:
        return skip(name, "manifests did not parse")
    missing = sorted({probes["ready"], probes["live"]} - routes)
    report(name, ["not in its paths: %s (paths: %s)" % (missing, sorted(routes))] if missing else [])


def check_live(probes):
    name = "live: the manifests' probe paths answer 200 on bin/cnnserve; SIGTERM exits 0"
    exe = BIN
    weights = os.path.join(SHARED, "weights")
    if not os.access(exe, os.X_OK):
        return skip(name, "%s not built" % exe)
    if not glob.glob(os.path.join(weights, "*.safetensors")):
        return skip(name, "no weights in %s" % weights)
    if probes is None:
        return skip(name, "manifests did not parse")
    srv = testlib.Server(weights, "--workers", "1", clean_env=True)
    p = []
    try:
        if srv.port is None:
            p.append("no 'listening' line")
        srv.wait_ready(probes["ready"])  # the server warms its models up before the readiness probe turns 200
        for path in (probes["live"], probes["ready"]):
            status, _ = testlib.http_get(srv.url + path, timeout=5)
            if status != 200:
                p.append("GET %s -> %s" % (path, status))
    finally:
        rc = srv.stop(limit_s=60)
    if rc is None:
        p.append("still running 60 s after SIGTERM")
    elif rc != 0:
        p.append("exit status %s after SIGTERM" % rc)
    if p:
        p += ["log: " + line for line in srv.log()[-10:]]
    report(name, p)


def check_ci():
    name = ".ci/run runs the README's install step and test command"
    if not os.path.exists(os.path.join(ROOT, "README.md")):
        return skip(name, "no README.md")
    readme = read("README.md")
    ci = [l.strip() for l in read(".ci/run").splitlines() if l.strip() and not l.lstrip().startswith("#")]
    p = []
    for cmd in ("make deps", "make test"):
        if not re.search(r"^\s*(\$ )?%s\s*(#.*)?$" % re.escape(cmd), readme, re.M):
            p.append("README.md has no '%s' command line" % cmd)
        if not any(re.match(r"(if ! )?%s\b" % re.escape(cmd), l) for l in ci):
            p.append(".ci/run does not run '%s'" % cmd)
    report(name, p)


def check_readme_config(facts):
    name = "README configuration table lists every flag of `cnnserve serve --help` with its variable"
    if not os.path.exists(os.path.join(ROOT, "README.md")):
        return skip(name, "no README.md")
    rows = re.findall(r"^\|\s*`--([a-z][a-z-]*)[^`]*`\s*\|\s*`(CNNSERVE_[A-Z_]+)`", read("README.md"), re.M)
    documented = {flag for flag, _ in rows}
    p = ["--%s is documented with %s" % (f, v) for f, v in rows
         if v != "CNNSERVE_" + f.upper().replace("-", "_")]
    missing = sorted(facts["flags"] - documented - {"help", "version"})
    stale = sorted(documented - facts["flags"])
    if missing:
        p.append("flags missing from the table: %s" % missing)
    if stale:
        p.append("flags in the table the server does not have: %s" % stale)
    report(name, p)


def main():
    global yaml
    try:
        import yaml  # python3-yaml, installed by `make deps`
    except ImportError:
        report("import yaml", ["python3-yaml is missing (make deps installs it)"])
        return testlib.finish()
    usage = server_usage()
    if usage is None:
        skip("deployment files vs the server", "no bin/cnnserve and no server/config.c")
        return testlib.finish()
    facts = server_facts(usage)
    report("server defaults found in the usage text",
           [] if facts["port"] and facts["drain_s"] is not None and "CNNSERVE_PORT" in facts["env"] else
           ["could not read port/drain-timeout defaults from:\n" + usage])
    if not facts["port"]:
        return 1
    image = check_dockerfile(facts) or {"port": facts["port"], "uid": None}
    compose_limits = check_compose(facts, image)
    probes = check_k8s(facts, image, compose_limits)
    check_openapi(probes)
    check_live(probes)
    check_ci()
    check_readme_config(facts)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
