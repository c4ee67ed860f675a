#!/usr/bin/python3
"""openapi.yaml passes `redocly lint` (npm @redocly/cli, pinned in tests/lint/package.json and installed
into tests/lint/node_modules by `make deps`) with the recommended rules (tests/lint/redocly.yaml):
no error and no warning. Runs offline; skips, saying so, when node or the tool is not installed."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REDOCLY = os.path.join(HERE, "node_modules", ".bin", "redocly")
NAME = "openapi.yaml passes redocly lint (recommended rules): no error, no warning"


def lint():
    if not shutil.which("node"):
        raise testlib.Skip("node not installed (make deps)")
    if not os.access(REDOCLY, os.X_OK):
        raise testlib.Skip("%s not installed (make deps runs npm ci in tests/lint)" % REDOCLY)
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0]) if version.lstrip("v").split(".")[0].isdigit() else 0
    if major < 20:
        raise testlib.Skip("node %s is older than @redocly/cli 2.77 needs (20.19)" % (version or "?"))
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true", NO_COLOR="1")
    r = subprocess.run([REDOCLY, "lint", "--config", os.path.join(HERE, "redocly.yaml"), "--format=json",
                        os.path.join(testlib.REPO, "openapi.yaml")], capture_output=True, text=True, timeout=300,
                       env=env)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        return ["redocly exited %d without a JSON report: %s" % (r.returncode, (r.stderr or r.stdout)[-1000:])]
    totals = report.get("totals", {})
    problems = ["%s %s at %s: %s" % (p.get("severity"), p.get("ruleId"),
                                     ", ".join(l.get("pointer", "?") for l in p.get("location", [])), p.get("message"))
                for p in report.get("problems", [])]
    if totals.get("errors") or totals.get("warnings") or problems:
        return ["%s errors, %s warnings" % (totals.get("errors"), totals.get("warnings"))] + problems
    return []


testlib.run_case(NAME, lint)
sys.exit(testlib.finish())
