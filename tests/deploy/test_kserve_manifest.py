#!/usr/bin/python3
"""deploy/kserve/inferenceservice.yaml against the server it deploys (the approach of
test_manifests.py, whose helpers it uses): the InferenceService parses, its predictor container's
port, probe paths (/v2/health/*), CNNSERVE_* variables, weights volume, user, grace period and
resources agree with the binary (`cnnserve serve --help`), the Dockerfile, openapi.yaml and the
Deployment; a live case starts bin/cnnserve with the manifest's environment (weights and port
replaced) and checks that the probe paths answer 200 and that a /v2 inference works.
Prints one "ok - / not ok - / skip - " line per case.
"""

import base64
import glob
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import test_manifests as tm  # noqa: E402
import testlib  # noqa: E402
from testlib import report, skip  # noqa: E402

MANIFEST = "deploy/kserve/inferenceservice.yaml"


def load(yaml):
    docs = {}
    for d in yaml.safe_load_all(tm.read(MANIFEST)):
        if d:
            docs.setdefault(d.get("kind"), []).append(d)
    return docs


def check_manifest(yaml, facts, image):
    """Static checks; returns (container env, probe paths) for the live case, or None."""
    try:
        docs = load(yaml)
    except yaml.YAMLError as e:
        return report("kserve: manifest parses", [str(e)])
    p = []
    for kind in ("InferenceService", "PersistentVolumeClaim"):
        if len(docs.get(kind, [])) != 1:
            p.append("expected one %s, got %d" % (kind, len(docs.get(kind, []))))
    isvc = (docs.get("InferenceService") or [{}])[0]
    if isvc.get("apiVersion") != "serving.kserve.io/v1beta1":
        p.append("InferenceService apiVersion %s" % isvc.get("apiVersion"))
    pred = (isvc.get("spec") or {}).get("predictor") or {}
    containers = pred.get("containers") or []
    if len(containers) != 1 or containers[0].get("name") != "kserve-container":
        p.append("predictor needs exactly one container named kserve-container: %s" % [c.get("name") for c in containers])
    report("kserve: InferenceService (serving.kserve.io/v1beta1, custom predictor) and its PVC parse", p)
    if p:
        return None
    c = containers[0]
    env = {e["name"]: str(e.get("value")) for e in c.get("env") or []}

    p = []
    port = int(env.get("CNNSERVE_PORT", image["port"]))
    named = {x.get("name"): x["containerPort"] for x in c.get("ports") or []}
    if list(named.values()) != [port]:
        p.append("containerPort(s) %s, the server listens on %d" % (list(named.values()), port))
    if port != facts["port"] and "CNNSERVE_PORT" not in env:
        p.append("port %d differs from the server default %d" % (port, facts["port"]))
    unknown = sorted(k for k in env if k.startswith("CNNSERVE_") and k not in facts["env"])
    if unknown:
        p.append("env sets variables the server does not read: %s" % unknown)
    routes = tm.server_routes() or set()
    probes = {}
    for probe, want in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live"),
                        ("startupProbe", "/v2/health/live")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != want:
            p.append("%s path %s, expected %s" % (probe, get.get("path"), want))
        if named.get(get.get("port"), get.get("port")) != port:
            p.append("%s port %s, expected %d" % (probe, get.get("port"), port))
        if get.get("path") not in routes:
            p.append("%s path %s is not in openapi.yaml" % (probe, get.get("path")))
        probes[probe] = get.get("path")
    report("kserve: predictor port, /v2/health probes and CNNSERVE_* variables match the server", p)

    p = []
    wdir = env.get("CNNSERVE_WEIGHTS_DIR")
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pred.get("volumes") or []}
    pvc_name = docs["PersistentVolumeClaim"][0]["metadata"]["name"]
    wmount = [m for m in mounts.values() if m.get("mountPath", "").rstrip("/") == (wdir or "").rstrip("/")]
    if not wdir or not wmount:
        p.append("CNNSERVE_WEIGHTS_DIR=%s is not a volume mount (%s)" % (wdir, [m.get("mountPath") for m in mounts.values()]))
    else:
        if not wmount[0].get("readOnly"):
            p.append("the weights mount is not readOnly")
        claim = ((vols.get(wmount[0]["name"]) or {}).get("persistentVolumeClaim") or {}).get("claimName")
        if claim != pvc_name:
            p.append("the weights volume claims %s, the file's PVC is %s" % (claim, pvc_name))
    report("kserve: weights from the PersistentVolumeClaim, mounted read-only at CNNSERVE_WEIGHTS_DIR", p)

    p = []
    sc = pred.get("securityContext") or {}
    if not sc.get("runAsNonRoot") or sc.get("runAsUser") != image["uid"]:
        p.append("securityContext %s: expected runAsNonRoot with the image's uid %s" % (sc, image["uid"]))
    grace = pred.get("terminationGracePeriodSeconds", 30)
    drain = int(env.get("CNNSERVE_DRAIN_TIMEOUT", facts["drain_s"] or 0))
    if grace <= drain:
        p.append("terminationGracePeriodSeconds %s does not exceed the drain timeout %s" % (grace, drain))
    res = c.get("resources") or {}
    try:
        lim_cpu = tm.k8s_cpu(res["limits"]["cpu"])
        if int(env.get("CNNSERVE_WORKERS", "0")) != int(lim_cpu):
            p.append("CNNSERVE_WORKERS=%s should equal the CPU limit %s" % (env.get("CNNSERVE_WORKERS"), lim_cpu))
        dep = [d for f in glob.glob(os.path.join(tm.ROOT, "deploy", "k8s", "*.yaml"))
               for d in yaml.safe_load_all(open(f, encoding="utf-8")) if d and d.get("kind") == "Deployment"]
        if dep:
            dres = dep[0]["spec"]["template"]["spec"]["containers"][0]["resources"]
            for part in ("requests", "limits"):
                for key in ("cpu", "memory"):
                    conv = tm.k8s_bytes if key == "memory" else tm.k8s_cpu
                    if conv(res[part][key]) != conv(dres[part][key]):
                        p.append("%s.%s %s differs from the Deployment's %s (same measured sizing)" %
                                 (part, key, res[part][key], dres[part][key]))
        if tm.k8s_bytes(res["requests"]["memory"]) > tm.k8s_bytes(res["limits"]["memory"]):
            p.append("memory request above the limit")
    except (KeyError, TypeError, ValueError) as e:
        p.append("resources requests/limits: %s" % e)
    if pred.get("scaleMetric") != "cpu" or not 1 <= pred.get("minReplicas", 1) <= pred.get("maxReplicas", 0):
        p.append("scaling: metric %s, replicas %s..%s" % (pred.get("scaleMetric"), pred.get("minReplicas"),
                                                       pred.get("maxReplicas")))
    report("kserve: resources as the Deployment's measured sizing, non-root, grace period, CPU scaling", p)
    return env, probes


def check_live(env, probes):
    name = "kserve live: bin/cnnserve with the manifest's environment answers the probes and a v2 inference"
    weights = os.path.join(testlib.SHARED, "weights")
    photo = os.path.join(testlib.SHARED, "data", "imagenet-sample", "n01443537_goldfish.JPEG")
    if not os.access(testlib.BIN, os.X_OK):
        return skip(name, "%s not built" % testlib.BIN)
    if not os.path.exists(os.path.join(weights, "mobilenet_v3_small.safetensors")) or not os.path.exists(photo):
        return skip(name, "no ../shared/weights/mobilenet_v3_small.safetensors or sample photo")
    # the manifest's variables; the weights directory and the port (flags win over variables) are local
    srv = testlib.Server(weights, env=env, clean_env=True)
    p = []
    try:
        if srv.port is None:
            p.append("no 'listening' line")
        srv.wait_ready(probes["readinessProbe"])
        for path in sorted(set(probes.values())):
            status, _ = testlib.http_get(srv.url + path, timeout=5)
            if status != 200:
                p.append("GET %s -> %s" % (path, status))
        req = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                           "data": [base64.b64encode(open(photo, "rb").read()).decode()]}],
               "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}]}
        try:
            with urllib.request.urlopen(urllib.request.Request(srv.url + "/v2/models/mobilenet_v3_small/infer",
                                                               data=json.dumps(req).encode()), timeout=60) as r:
                top = json.loads(r.read())["outputs"][0]["data"][0]
            if ":1:goldfish" not in top:
                p.append("goldfish photo classified %s" % top)
        except (OSError, ValueError, KeyError, IndexError) as e:
            p.append("v2 inference: %s" % e)
    finally:
        rc = srv.stop(limit_s=60)
    if rc is None:
        p.append("still running 60 s after SIGTERM")
    elif rc != 0:
        p.append("exit status %s after SIGTERM" % rc)
    if p:
        p += ["log: " + line for line in srv.log()[-10:]]
    report(name, p)


def main():
    try:
        import yaml  # python3-yaml, installed by `make deps`
    except ImportError:
        report("import yaml", ["python3-yaml is missing (make deps installs it)"])
        return testlib.finish()
    tm.yaml = yaml
    usage = tm.server_usage()
    if usage is None:
        skip("kserve manifest vs the server", "no bin/cnnserve and no server/config.c")
        return testlib.finish()
    facts = tm.server_facts(usage)
    # the Dockerfile gives the image's port and uid (its own checks are test_manifests.py's)
    saved = dict(testlib.counts), sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        image = tm.check_dockerfile(facts) or {"port": facts["port"], "uid": None}
    finally:
        sys.stdout.close()
        sys.stdout = saved[1]
        testlib.counts.clear()
        testlib.counts.update(saved[0])
    got = check_manifest(yaml, facts, image)
    if got:
        check_live(*got)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
