#!/usr/bin/python3
"""The training backward kernels of core/kernels.h (via build/tests/bwd_ops) against PyTorch 1.13
autograd on random shapes drawn with a seeded torch generator: conv2d (dense, grouped, depthwise,
channel multiplier; odd sizes, strides 1..4, symmetric and TF-SAME asymmetric padding, rectangular
kernels; data, weight and bias gradients summed over a small batch), ReLU / ReLU6 / hard-swish /
hard-sigmoid (with their edge values), max and average pooling (ceil_mode, count_include_pad,
TF-SAME max via -inf padding), adaptive average pooling, BatchNorm eval-mode and train-mode
(outputs, running statistics, dx, dgamma, dbeta) and the per-channel scale. Each gradient must be
within 1e-4 of PyTorch's relative to its largest value. Skips without torch.

Prints one "ok - NAME" / "not ok - NAME: why" / "skip - NAME: why" line per case."""

import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

TOOL = os.path.join(testlib.REPO, testlib.BUILD, "tests", "bwd_ops")
TOL = 1e-4
worst = {}  # kind -> largest relative error seen (printed as a detail line)


def run_tool(header, arrays, n_out):
    """Runs bwd_ops on int32 header values and float32 arrays; returns n_out float32 arrays split
    by the given sizes."""
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        pin, pout = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        with open(pin, "wb") as fh:
            for kind, v in header:
                fh.write(struct.pack("<i" if kind == "i" else "<f", v))
            for a in arrays:
                fh.write(a.detach().contiguous().numpy().astype("<f4").tobytes())
        proc = subprocess.run([TOOL, pin, pout], stderr=subprocess.PIPE, text=True)
        testlib.check(proc.returncode == 0, "bwd_ops failed: " + proc.stderr.strip())
        raw = np.fromfile(pout, dtype="<f4")
    testlib.check(raw.size == sum(n_out), "bwd_ops wrote %d floats, expected %d" % (raw.size, sum(n_out)))
    import torch
    out, at = [], 0
    for n in n_out:
        out.append(torch.from_numpy(raw[at:at + n].copy()))
        at += n
    return out


def compare(kind, label, pairs):
    """pairs: (name, ours, reference); fails on a relative error above TOL."""
    errs = []
    for name, a, ref in pairs:
        ref = ref.detach().reshape(-1).double()
        a = a.reshape(-1).double()
        scale = max(float(ref.abs().max()), 1e-30)
        e = float((a - ref).abs().max()) / scale
        worst[kind] = max(worst.get(kind, 0.0), e)
        if not e <= TOL:
            errs.append("%s %s: relative error %.3g" % (label, name, e))
    testlib.check(not errs, "; ".join(errs))


def tf_same(n, k, s):
    out = (n + s - 1) // s
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def conv_shapes(torch, g):
    def ri(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    shapes = [  # (c_in, c_out, groups, h, w, k_h, k_w, s_h, s_w, padding: "same" | int)
        (3, 16, 1, 17, 15, 3, 3, 2, 2, "same"),      # MobileNetV3 stem, TF SAME
        (16, 16, 16, 13, 11, 3, 3, 2, 2, "same"),    # depthwise stride 2, TF SAME (asymmetric)
        (24, 24, 24, 9, 9, 5, 5, 1, 1, 2),           # depthwise 5x5
        (40, 40, 40, 10, 7, 5, 5, 2, 2, "same"),     # depthwise 5x5 stride 2 TF SAME
        (72, 24, 1, 7, 9, 1, 1, 1, 1, 0),            # pointwise
        (24, 70, 1, 5, 5, 1, 1, 1, 1, 0),            # pointwise, 70 outputs (two blocks of 64)
        (24, 16, 1, 9, 9, 1, 1, 2, 2, 0),            # 1x1 stride 2
        (3, 8, 1, 23, 21, 11, 11, 4, 4, 2),          # AlexNet conv1
        (8, 12, 1, 9, 11, 5, 5, 1, 1, 2),            # AlexNet conv2-like
        (8, 6, 1, 11, 13, 1, 7, 1, 1, (0, 3)),       # Inception 1x7
        (8, 6, 1, 11, 13, 7, 1, 1, 1, (3, 0)),       # Inception 7x1
        (6, 9, 3, 10, 10, 3, 3, 1, 1, 1),            # grouped
        (6, 12, 6, 9, 8, 3, 3, 2, 1, 1),             # channel multiplier 2
        (5, 7, 1, 12, 12, 3, 3, 2, 2, 0),            # Inception 3x3 stride 2 valid
    ]
    for _ in range(10):  # random odd shapes
        kind = ri(0, 3)
        c = ri(1, 6)
        k_h, k_w = ri(1, 5), ri(1, 5)
        if kind == 0:
            c_in, c_out, groups = c, ri(1, 9), 1
        elif kind == 1:
            c_in, c_out, groups = 2 * c, 2 * ri(1, 4), 2
        else:
            c_in = c_out = groups = c
        pad = "same" if ri(0, 1) else (ri(0, k_h // 2), ri(0, k_w // 2))
        shapes.append((c_in, c_out, groups, ri(k_h, 14), ri(k_w, 14), k_h, k_w, ri(1, 3), ri(1, 3), pad))
    return shapes


def check_conv(torch, g, shape):
    F = torch.nn.functional
    c_in, c_out, groups, h, w, k_h, k_w, s_h, s_w, pad = shape
    if pad == "same":
        h_out, pt, pb = tf_same(h, k_h, s_h)
        w_out, pl, pr = tf_same(w, k_w, s_w)
    else:
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        pt = pb = ph
        pl = pr = pw
        h_out = (h + 2 * ph - k_h) // s_h + 1
        w_out = (w + 2 * pw - k_w) // s_w + 1
    n = 2
    x = (torch.rand(n, c_in, h, w, generator=g) * 2 - 1).requires_grad_()
    wt = ((torch.rand(c_out, c_in // groups, k_h, k_w, generator=g) * 2 - 1) * 0.5).requires_grad_()
    b = (torch.rand(c_out, generator=g) * 2 - 1).requires_grad_()
    dy = torch.rand(n, c_out, h_out, w_out, generator=g) * 2 - 1
    y = F.conv2d(F.pad(x, (pl, pr, pt, pb)), wt, b, stride=(s_h, s_w), groups=groups)
    testlib.check(tuple(y.shape) == (n, c_out, h_out, w_out), "shape %s" % (tuple(y.shape),))
    y.backward(dy)
    hdr = [("i", v) for v in (1, n, c_in, h, w, c_out, h_out, w_out, k_h, k_w, s_h, s_w, pt, pl, pb, pr,
                              groups, 1)]
    dx, dw, db = run_tool(hdr, [x, wt, dy], [x.numel(), wt.numel(), c_out])
    compare("conv", "", [("dx", dx, x.grad), ("dw", dw, wt.grad), ("db", db, b.grad)])


def check_act(torch, g):
    F = torch.nn.functional
    fns = [(1, torch.relu), (2, F.relu6), (3, F.hardswish), (4, F.hardsigmoid)]
    edges = torch.tensor([-3.0, 3.0, 0.0, 6.0, -6.0, 2.9999998, -2.9999998, 5.9999995, 6.0000005])
    x = torch.cat([edges, (torch.rand(991, generator=g) * 2 - 1) * 8])
    dy = torch.rand(x.numel(), generator=g) * 2 - 1
    for kind, fn in fns:
        xt = x.clone().requires_grad_()
        fn(xt).backward(dy)
        (dx,) = run_tool([("i", 2), ("i", kind), ("i", x.numel())], [x, dy], [x.numel()])
        compare("act", fn.__name__, [("dx", dx, xt.grad)])
        # the edges exactly (0, dy, dy/6 or dy * (x/3 + 1/2) in float), at the start of the tensor:
        # PyTorch's vectorized loop (its scalar tail differs for hardswish at exactly 3)
        testlib.check(torch.equal(dx[:edges.numel()], xt.grad[:edges.numel()]),
                      "%s edges: %s vs torch %s" % (fn.__name__, dx[:9].tolist(), xt.grad[:9].tolist()))


def pool_cases(torch, g):
    def ri(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    cases = [  # kind, c, h, w, k, s, pad, ceil_mode, count_include_pad ("same": TF SAME max)
        ("max", 3, 15, 15, 3, 2, 0, True, True),     # ShuffleNet / AlexNet / Inception max pool
        ("max", 2, 14, 13, 3, 2, 1, False, True),
        ("max", 2, 9, 10, 3, 2, "same", False, True),
        ("avg", 3, 9, 9, 3, 1, 1, False, True),      # Inception avg pool
        ("avg", 2, 10, 11, 3, 2, 1, True, False),
        ("avg", 2, 8, 7, 2, 2, 0, True, True),
    ]
    for _ in range(12):
        k = ri(1, 4)
        cases.append(("max" if ri(0, 1) else "avg", ri(1, 3), ri(k, 13), ri(k, 13), k, ri(1, 3),
                      ri(0, k // 2), bool(ri(0, 1)), bool(ri(0, 1))))
    return cases


def check_pool(torch, g, case):
    F = torch.nn.functional
    kind, c, h, w, k, s, pad, ceil_mode, cip = case
    x = torch.rand(1, c, h, w, generator=g) * 2 - 1
    if kind == "max":
        x = torch.round(x * 3) / 3  # ties: the first maximum must get the gradient
    xt = x.clone().requires_grad_()
    if pad == "same":
        h_out, pt, pb = tf_same(h, k, s)
        w_out, pl, pr = tf_same(w, k, s)
        y = F.max_pool2d(F.pad(xt, (pl, pr, pt, pb), value=float("-inf")), k, s)
    else:
        pt = pb = pl = pr = pad
        y = (F.max_pool2d(xt, k, s, pad, ceil_mode=ceil_mode) if kind == "max" else
             F.avg_pool2d(xt, k, s, pad, ceil_mode=ceil_mode, count_include_pad=cip))
        h_out, w_out = y.shape[2], y.shape[3]
    dy = torch.rand(y.shape, generator=g) * 2 - 1
    y.backward(dy)
    hdr = [("i", v) for v in (3, 0 if kind == "max" else 1, c, h, w, h_out, w_out, k, k, s, s, pt, pl, pb, pr,
                              1 if cip else 0)]
    (dx,) = run_tool(hdr, [x, dy], [x.numel()])
    compare(kind + "pool", "", [("dx", dx, xt.grad)])


def check_adaptive(torch, g):
    F = torch.nn.functional
    for c, h, w, ho, wo in ((5, 7, 7, 1, 1), (3, 13, 11, 1, 1), (2, 11, 9, 4, 3), (2, 5, 6, 6, 6), (1, 8, 13, 3, 5)):
        x = (torch.rand(1, c, h, w, generator=g) * 2 - 1).requires_grad_()
        y = F.adaptive_avg_pool2d(x, (ho, wo))
        dy = torch.rand(y.shape, generator=g) * 2 - 1
        y.backward(dy)
        (dx,) = run_tool([("i", v) for v in (4, c, h, w, ho, wo)], [dy], [x.numel()])
        compare("adaptive", "%dx%d->%dx%d" % (h, w, ho, wo), [("dx", dx, x.grad)])


def check_bn(torch, g, train, shape):
    n, c, hw, eps, momentum = shape
    bn = torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=g) * 2 - 1)
        bn.bias.copy_(torch.rand(c, generator=g) * 2 - 1)
        bn.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    x = (torch.rand(n, c, 1, hw, generator=g) * 4 + 1).requires_grad_()  # mean far from 0
    dy = torch.rand(n, c, 1, hw, generator=g) * 2 - 1
    bn.train(train)
    y = bn(x)
    y.backward(dy)
    arrays = [x, bn.weight, bn.bias, rm0, rv0, dy]
    nx, hdr = x.numel(), [("i", 6 if train else 5), ("i", n), ("i", c), ("i", hw), ("f", eps)]
    if train:
        hdr.append(("f", momentum))
        yc, rm, rv, dx, dg, db = run_tool(hdr, arrays, [nx, c, c, nx, c, c])
        pairs = [("y", yc, y), ("running_mean", rm, bn.running_mean), ("running_var", rv, bn.running_var)]
    else:
        yc, dx, dg, db = run_tool(hdr, arrays, [nx, nx, c, c])
        pairs = [("y", yc, y)]
    pairs += [("dx", dx, x.grad), ("dgamma", dg, bn.weight.grad), ("dbeta", db, bn.bias.grad)]
    compare("bn_train" if train else "bn_frozen", "", pairs)


def check_scale(torch, g):
    c, hw = 9, 37
    x = torch.rand(1, c, hw, generator=g) * 2 - 1
    s = (torch.rand(1, c, 1, generator=g) * 2 - 1).requires_grad_()
    xt = x.clone().requires_grad_()
    dy = torch.rand(1, c, hw, generator=g) * 2 - 1
    (xt * s).backward(dy)
    dx, ds = run_tool([("i", 7), ("i", c), ("i", hw)], [x, s, dy], [c * hw, c])
    compare("scale", "", [("dx", dx, xt.grad), ("dscale", ds, s.grad)])


BN_SHAPES = [(4, 3, 49, 1e-5, 0.1), (2, 5, 9, 1e-3, 0.01), (3, 2, 1, 1e-5, 0.1), (1, 4, 50, 1e-3, 0.01)]


def main():
    labels = ["conv2d backward vs PyTorch autograd (24 shapes: dense/grouped/depthwise, TF SAME, strides)",
              "activation backward vs PyTorch autograd (relu/relu6/hardswish/hardsigmoid, edges exact)",
              "pool backward vs PyTorch autograd (max ties, ceil_mode, count_include_pad, TF SAME max)",
              "adaptive average pool backward vs PyTorch autograd",
              "BatchNorm frozen (eval) forward/backward vs PyTorch autograd",
              "BatchNorm train forward/backward + running stats vs PyTorch autograd",
              "per-channel scale backward vs PyTorch autograd"]
    torch = testlib.torch_and_tool(labels, TOOL)
    if not torch:
        return testlib.finish()
    g = torch.Generator().manual_seed(1913)

    def all_conv():
        for shape in conv_shapes(torch, g):
            check_conv(torch, g, shape)

    def all_pool():
        for case in pool_cases(torch, g):
            check_pool(torch, g, case)

    def all_bn(train):
        for shape in BN_SHAPES:
            check_bn(torch, g, train, shape)

    testlib.run_case(labels[0], all_conv)
    testlib.run_case(labels[1], check_act, torch, g)
    testlib.run_case(labels[2], all_pool)
    testlib.run_case(labels[3], check_adaptive, torch, g)
    testlib.run_case(labels[4], all_bn, False)
    testlib.run_case(labels[5], all_bn, True)
    testlib.run_case(labels[6], check_scale, torch, g)
    print("# largest relative errors vs PyTorch: " +
          ", ".join("%s %.2g" % (k, v) for k, v in sorted(worst.items())))
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
