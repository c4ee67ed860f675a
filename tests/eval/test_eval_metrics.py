#!/usr/bin/python3
"""The metrics module of `cnnserve eval` (server/eval_metrics.c) against an independent NumPy
implementation, on fixed (seeded) score matrices: random scores, heavy ties, a class without
positives, a single class, K=2 and K=1000. $BUILD/tests/eval_metrics_tool prints the C metrics of a
score matrix file as JSON.

The reference computes what scikit-learn computes without using it: AUC as the Mann-Whitney
statistic from average ranks (ties count 1/2), roc_curve's point set (one point per distinct score,
drop_intermediate's rule), precision/recall/F1 with zero_division=0 and sklearn's label set for
the macro average, top-k by a lexicographic sort (score descending, class index ascending)."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402
from testlib import Skip  # noqa: E402

try:
    import numpy as np
except ImportError:  # pragma: no cover - reported as a skip
    np = None

BUILD = os.environ.get("BUILD", "build")
TOOL = os.path.join(BUILD, "tests", "eval_metrics_tool")




# ---------------------------------------------------------------- reference implementation

def avg_ranks(x):
    """1-based ranks of x ascending, tied values sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x))
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def auc_mann_whitney(y, s):
    p, n = int(y.sum()), int(len(y) - y.sum())
    if p == 0 or n == 0:
        return None
    r = avg_ranks(s.astype(np.float64))
    return (r[y == 1].sum() - p * (p + 1) / 2.0) / (p * n)


def roc_points(y, s, drop):
    """fpr, tpr, thresholds (first = inf) as sklearn.metrics.roc_curve."""
    s = s.astype(np.float64)
    order = np.argsort(-s, kind="mergesort")
    ss, ys = s[order], y[order].astype(np.int64)
    ends = np.r_[np.nonzero(np.diff(ss))[0], len(ss) - 1]
    tps = np.cumsum(ys)[ends]
    fps = ends + 1 - tps
    thr = ss[ends]
    if drop and len(fps) > 2:
        keep = np.nonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thr]


def curve_at(fpr, tpr, x):
    """Lowest and highest TPR of a piecewise-linear ROC curve at each FPR in x."""
    ux = np.unique(fpr)
    lo = np.array([tpr[fpr == u].min() for u in ux])
    hi = np.array([tpr[fpr == u].max() for u in ux])
    j = np.searchsorted(ux, x)
    at = (j < len(ux)) & (ux[np.minimum(j, len(ux) - 1)] == x)
    a = np.maximum(j - 1, 0)
    b = np.minimum(j, len(ux) - 1)
    width = np.where(ux[b] > ux[a], ux[b] - ux[a], 1.0)
    mid = hi[a] + (lo[b] - hi[a]) * (x - ux[a]) / width
    return np.where(at, lo[b], mid), np.where(at, hi[b], mid)


def reference(score, label, nll, drop):
    n, k = score.shape
    top_k = min(5, k)
    pred = np.argmax(score, axis=1)
    # rank of the true class in (score desc, index asc) order
    ranks = np.empty(n, dtype=np.int64)
    for i in range(n):
        order = np.lexsort((np.arange(k), -score[i].astype(np.float64)))
        ranks[i] = int(np.nonzero(order == label[i])[0][0])
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (label, pred), 1)
    support = conf.sum(axis=1)
    predicted = conf.sum(axis=0)
    tp = np.diag(conf)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        rec = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.where(prec + rec > 0, prec + rec, 1), 0.0)
    present = (support > 0) | (predicted > 0)
    ref = {
        "top1": float(np.mean(pred == label)),
        "top5": float(np.mean(ranks < top_k)),
        "top_k": top_k,
        "cross_entropy": None if nll is None else float(np.mean(nll)),
        "precision": prec, "recall": rec, "f1": f1, "support": support, "predicted": predicted,
        "confusion": conf,
        "macro": (prec[present].mean(), rec[present].mean(), f1[present].mean(), int(present.sum())),
        "weighted": tuple(float((support * v).sum() / n) for v in (prec, rec, f1)),
    }
    onehot = np.zeros((n, k), dtype=np.int64)
    onehot[np.arange(n), label] = 1
    curves, aucs = [], []
    for c in range(k):
        a = auc_mann_whitney(onehot[:, c], score[:, c])
        curves.append(None if a is None else roc_points(onehot[:, c], score[:, c], drop))
        aucs.append(a)
    ref["aucs"], ref["curves"] = aucs, curves
    ref["micro_auc"] = auc_mann_whitney(onehot.ravel(), score.ravel())
    ref["micro_curve"] = None if ref["micro_auc"] is None else roc_points(onehot.ravel(), score.ravel(), drop)
    have = [c for c in range(k) if aucs[c] is not None]
    if have:
        grid = np.unique(np.concatenate([curves[c][0] for c in have]))
        lo = np.zeros(len(grid))
        hi = np.zeros(len(grid))
        for c in have:
            l, h = curve_at(curves[c][0], curves[c][1], grid)
            lo += l
            hi += h
        xs, ys = [], []
        for g in range(len(grid)):
            xs.append(grid[g])
            ys.append(lo[g] / len(have))
            if hi[g] != lo[g]:
                xs.append(grid[g])
                ys.append(hi[g] / len(have))
        ref["macro_auc"] = float(np.mean([aucs[c] for c in have]))
        ref["macro_curve"] = (np.array(xs), np.array(ys))
    else:
        ref["macro_auc"], ref["macro_curve"] = None, None
    ref["n_auc_classes"] = len(have)
    return ref


# ---------------------------------------------------------------- running the C tool

def run_tool(score, label, logits=False, full=False):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        n, k = score.shape
        f.write("%d %d\n" % (n, k))
        for i in range(n):
            f.write("%d %s\n" % (label[i], " ".join("%.9g" % v for v in score[i])))
        path = f.name
    try:
        args = [TOOL] + (["--logits"] if logits else []) + (["--full"] if full else []) + [path]
        res = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, "tool exited %d: %s" % (res.returncode, res.stderr[-2000:])
        return json.loads(res.stdout)
    finally:
        os.unlink(path)


def close(a, b, tol, what):
    if a is None or b is None:
        assert a is None and b is None, "%s: %r vs %r" % (what, a, b)
        return
    assert abs(a - b) <= tol * max(1.0, abs(b)), "%s: C %r vs NumPy %r" % (what, a, b)


def same_curve(got, want, what, thresholds=True):
    fpr, tpr = np.array(got["fpr"], dtype=np.float64), np.array(got["tpr"], dtype=np.float64)
    assert len(fpr) == len(want[0]), "%s: %d points, NumPy %d" % (what, len(fpr), len(want[0]))
    assert np.array_equal(fpr, want[0]) or np.allclose(fpr, want[0], rtol=0, atol=1e-12), what + ": fpr"
    assert np.allclose(tpr, want[1], rtol=0, atol=1e-12), what + ": tpr"
    if thresholds:
        thr = got["thresholds"]
        assert thr[0] is None, what + ": first threshold is not null (+inf)"
        assert np.array_equal(np.array(thr[1:], dtype=np.float64), want[2][1:]), what + ": thresholds"


def compare(score, label, nll=None, logits_input=None, drop=True, tol=1e-12):
    """Runs the tool on score (or on logits_input with --logits) and checks every field."""
    if logits_input is not None:
        got = run_tool(logits_input, label, logits=True, full=not drop)
    else:
        got = run_tool(score, label, full=not drop)
    ref = reference(score, label, nll, drop)
    n, k = score.shape
    assert got["images"] == n and got["num_classes"] == k and got["top_k"] == ref["top_k"]
    close(got["top1"], ref["top1"], 0, "top1")
    close(got["top5"], ref["top5"], 0, "top-k")
    close(got["cross_entropy"], ref["cross_entropy"], 1e-9, "cross_entropy")
    for c, e in enumerate(got["per_class"]):
        assert e["class"] == c
        assert e["support"] == ref["support"][c] and e["predicted"] == ref["predicted"][c], "class %d counts" % c
        for key in ("precision", "recall", "f1"):
            close(e[key], float(ref[key][c]), tol, "class %d %s" % (c, key))
    assert np.array_equal(np.array(got["confusion"], dtype=np.int64).reshape(k, k), ref["confusion"]), "confusion"
    mp, mr, mf, mn = ref["macro"]
    close(got["macro_avg"]["precision"], mp, tol, "macro precision")
    close(got["macro_avg"]["recall"], mr, tol, "macro recall")
    close(got["macro_avg"]["f1"], mf, tol, "macro f1")
    assert got["macro_avg"]["n_classes"] == mn
    for key, v in zip(("precision", "recall", "f1"), ref["weighted"]):
        close(got["weighted_avg"][key], v, tol, "weighted " + key)
    for c, r in enumerate(got["roc"]["per_class"]):
        close(r["auc"], ref["aucs"][c], 1e-12, "class %d auc" % c)
        if ref["curves"][c] is None:
            assert r["fpr"] == [] and r["tpr"] == [], "class %d: a curve without positives" % c
        else:
            same_curve(r, ref["curves"][c], "class %d roc" % c)
            # the area of the emitted curve is the AUC
            close(float(np.trapz(r["tpr"], r["fpr"])), ref["aucs"][c], 1e-12, "class %d curve area" % c)
    close(got["roc"]["micro"]["auc"], ref["micro_auc"], 1e-12, "micro auc")
    if ref["micro_curve"] is not None:
        same_curve(got["roc"]["micro"], ref["micro_curve"], "micro roc")
    macro = got["roc"]["macro"]
    close(macro["auc"], ref["macro_auc"], 1e-12, "macro auc")
    assert macro["n_classes"] == ref["n_auc_classes"]
    if ref["macro_curve"] is not None:
        same_curve(macro, ref["macro_curve"], "macro roc", thresholds=False)
        close(float(np.trapz(macro["tpr"], macro["fpr"])), ref["macro_auc"], 1e-9, "macro curve area")
    return got


def softmax64(logits):
    z = logits.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return np.exp(z - lse), lse[:, 0]


def need():
    if np is None:
        raise Skip("python3-numpy is not installed")
    if not os.access(TOOL, os.X_OK):
        raise Skip("%s not built (make test builds it)" % TOOL)


# ---------------------------------------------------------------- cases

def test_random_k10():
    need()
    rng = np.random.default_rng(1)
    score = rng.dirichlet(np.ones(10) * 0.5, size=300).astype(np.float32)
    label = rng.integers(0, 10, size=300)
    for drop in (True, False):
        compare(score, label, drop=drop)


def test_ties():
    need()
    rng = np.random.default_rng(2)
    # scores on a 0.1 grid: most values tie, inside classes and across the pooled micro curve
    score = (rng.integers(0, 11, size=(200, 4)) / 10.0).astype(np.float32)
    score[50:60] = score[40:50]  # duplicated rows
    label = rng.integers(0, 4, size=200)
    label[50:60] = label[40:50]
    score[0] = score[1] = 0.5  # a row of four equal scores: argmax 0, top-k by index
    got = None
    for drop in (True, False):
        got = compare(score, label, drop=drop)
    # drop_intermediate removes points but never the area
    assert len(got["roc"]["micro"]["fpr"]) > 2


def test_class_without_positives():
    need()
    rng = np.random.default_rng(3)
    score = rng.dirichlet(np.ones(5), size=120).astype(np.float32)
    label = rng.integers(0, 4, size=120)  # class 4 never true
    got = compare(score, label)
    r4 = got["roc"]["per_class"][4]
    assert r4["auc"] is None and r4["n_pos"] == 0 and r4["n_neg"] == 120
    assert got["roc"]["macro"]["n_classes"] == 4
    # the macro average of precision/recall/F1 includes class 4 only when it is predicted
    assert got["macro_avg"]["n_classes"] == (4 if got["per_class"][4]["predicted"] == 0 else 5)


def test_single_class():
    need()
    score = np.ones((7, 1), dtype=np.float32)
    label = np.zeros(7, dtype=np.int64)
    got = compare(score, label)
    assert got["top1"] == 1.0 and got["roc"]["micro"]["auc"] is None and got["roc"]["macro"]["auc"] is None
    # logits of one class: probability 1, cross-entropy 0
    got = run_tool(np.full((3, 1), 2.5, dtype=np.float32), np.zeros(3, dtype=np.int64), logits=True)
    assert got["cross_entropy"] == 0.0 and got["top1"] == 1.0


def test_k2():
    need()
    rng = np.random.default_rng(4)
    p1 = rng.random(150).astype(np.float32)
    score = np.stack([np.float32(1) - p1, p1], axis=1).astype(np.float32)
    label = (rng.random(150) < p1).astype(np.int64)
    got = compare(score, label)
    assert got["roc"]["macro"]["n_classes"] == 2 and got["top_k"] == 2 and got["top5"] == 1.0


def test_k1000_probabilities():
    need()
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((1000, 1000)) * 3).astype(np.float32)
    label = rng.permutation(1000)  # one photo per class, like imagenet-sample
    logits[np.arange(1000), label] += 4.0  # a classifier that is often right
    prob, _ = softmax64(logits)
    compare(prob.astype(np.float32), label)


def test_k1000_logits_cross_entropy():
    need()
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal((400, 1000)) * 5).astype(np.float32)
    label = rng.integers(0, 1000, size=400)
    logits[0, :] = -200.0  # the true class's probability underflows float32: the loss stays finite
    logits[0, (label[0] + 1) % 1000] = 200.0
    prob, lse = softmax64(logits)
    nll = lse - logits[np.arange(400), label].astype(np.float64)
    got = run_tool(logits, label, logits=True)
    close(got["cross_entropy"], float(nll.mean()), 1e-12, "cross_entropy")
    assert got["cross_entropy"] > 0.5 and np.isfinite(got["cross_entropy"])
    ref = reference(prob.astype(np.float32), label, nll, True)
    close(got["top1"], ref["top1"], 0, "top1")
    close(got["top5"], ref["top5"], 0, "top5")
    # probabilities rounded by two libms may differ by an ulp, which can only move an AUC by a tie
    close(got["roc"]["micro"]["auc"], ref["micro_auc"], 1e-6, "micro auc")
    close(got["roc"]["macro"]["auc"], ref["macro_auc"], 1e-3, "macro auc")


def test_bad_input_rejected():
    need()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("2 2\n0 0.5 0.5\n2 0.1 0.9\n")  # label 2 of 2 classes
        path = f.name
    try:
        res = subprocess.run([TOOL, path], capture_output=True, text=True, timeout=60)
        assert res.returncode != 0 and "label 2" in res.stderr, res.stderr
        with open(path, "w") as f:
            f.write("2 2\n0 0.5 nan\n1 0.1 0.9\n")
        res = subprocess.run([TOOL, path], capture_output=True, text=True, timeout=60)
        assert res.returncode != 0 and "NaN" in res.stderr, res.stderr
    finally:
        os.unlink(path)


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            testlib.run_case("eval_metrics_" + name[len("test_"):], fn)
    sys.exit(testlib.finish())
