#!/usr/bin/python3
"""The linear-head training kernels (core/kernels_train.c, via build/tests/train_grad) against PyTorch:
softmax cross-entropy loss, gradients w.r.t. input, weight and bias from autograd, and the weights after
several torch.optim.SGD steps with momentum and weight decay. Skips without torch.

Prints one "ok - NAME" / "not ok - NAME: why" / "skip - NAME: why" line per case."""

import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

TOOL = os.path.join(testlib.REPO, testlib.BUILD, "tests", "train_grad")

CASES = [  # name, n, n_in, n_out, steps, lr, momentum, weight decay
    ("small odd shapes", 7, 13, 5, 5, 0.1, 0.9, 1e-3),
    ("monkeys-sized batch", 32, 1024, 10, 5, 0.01, 0.9, 1e-4),
    ("one row, two classes", 1, 3, 2, 3, 0.5, 0.0, 0.0),
    ("large logits", 16, 64, 13, 4, 0.05, 0.5, 5e-4),
]


def run_case(torch, name, n, f, k, steps, lr, mom, wd):
    g = torch.Generator().manual_seed(n * 1000 + f)
    scale = 20.0 if name == "large logits" else 2.0
    x = (torch.rand(n, f, generator=g) * 2 - 1) * scale
    w = (torch.rand(k, f, generator=g) * 2 - 1) / f ** 0.5
    b = (torch.rand(k, generator=g) * 2 - 1) / f ** 0.5
    y = torch.randint(0, k, (n,), generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        pin, pout = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        with open(pin, "wb") as fh:
            fh.write(struct.pack("<4i3f", n, f, k, steps, lr, mom, wd))
            for t in (x, w, b):
                fh.write(t.contiguous().numpy().astype("<f4").tobytes())
            fh.write(y.numpy().astype("<i4").tobytes())
        proc = subprocess.run([TOOL, pin, pout], stderr=subprocess.PIPE, text=True)
        if proc.returncode:
            return "train_grad failed: " + proc.stderr.strip()
        import numpy as np
        raw = open(pout, "rb").read()
    loss_c = struct.unpack_from("<d", raw, 0)[0]
    arr = np.frombuffer(raw, dtype="<f4", offset=8)
    sizes = [n * f, k * f, k, k * f, k]
    parts, at = [], 0
    for s in sizes:
        parts.append(torch.from_numpy(arr[at:at + s].copy()))
        at += s
    if at != arr.size:
        return "output has %d floats, expected %d" % (arr.size, at)
    dx_c, dw_c, db_c, w_c, b_c = parts

    xt, wt, bt = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(xt @ wt.T + bt, y)
    loss.backward()
    errs = []

    def rel(a, ref):
        return float((a.reshape(ref.shape) - ref).abs().max() / max(float(ref.abs().max()), 1e-30))

    if abs(loss_c - float(loss)) > 1e-5 * max(1.0, abs(float(loss))):
        errs.append("loss %.9g vs torch %.9g" % (loss_c, float(loss)))
    for nm, a, ref in (("dx", dx_c, xt.grad), ("dw", dw_c, wt.grad), ("db", db_c, bt.grad)):
        e = rel(a, ref)
        if e > 1e-4:
            errs.append("%s relative error %.3g" % (nm, e))
    lin = torch.nn.Linear(f, k)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    opt = torch.optim.SGD(lin.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(x), y).backward()
        opt.step()
    for nm, a, ref in (("w after SGD", w_c, lin.weight.detach()), ("b after SGD", b_c, lin.bias.detach())):
        e = rel(a, ref)
        if e > 1e-4:
            errs.append("%s relative error %.3g" % (nm, e))
    return "; ".join(errs)


def check_case(torch, case):
    why = run_case(torch, *case)
    return [why] if why else []


def main():
    labels = ["train kernels vs PyTorch autograd + SGD: " + case[0] for case in CASES]
    torch = testlib.torch_and_tool(labels, TOOL)
    if not torch:
        return testlib.finish()
    for label, case in zip(labels, CASES):
        testlib.run_case(label, check_case, torch, case)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
