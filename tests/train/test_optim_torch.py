#!/usr/bin/python3
"""core/optim.c (via build/tests/optim_tool) against PyTorch 1.13: torch.optim.SGD (momentum,
Nesterov, weight decay), Adam and AdamW, two parameter groups with their own learning rates, weight
decay skipped on some tensors, torch.optim.lr_scheduler (LinearLR warm-up then CosineAnnealingLR or
StepLR, via SequentialLR) and torch.nn.utils.clip_grad_norm_, on random tensors for several steps.
The tool also saves and reloads its state halfway (checkpoint path). Skips without torch.

Prints one "ok - NAME" / "not ok - NAME: why" / "skip - NAME: why" line per case."""

import os
import struct
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

TOOL = os.path.join(testlib.REPO, testlib.BUILD, "tests", "optim_tool")
KINDS = {"sgd": 0, "adam": 1, "adamw": 2}
SCHEDS = {"const": 0, "cosine": 1, "step": 2}

# name, optimizer options, schedule (kind, warm-up steps, step size, gamma), clip max norm (0: none)
CASES = [
    ("SGD momentum + weight decay, constant", dict(kind="sgd", momentum=0.9, wd=1e-2), ("const", 0, 1, 1.0), 0.0),
    ("SGD Nesterov, cosine + warm-up, clipping", dict(kind="sgd", momentum=0.9, nesterov=1, wd=5e-4),
     ("cosine", 3, 1, 1.0), 0.5),
    ("SGD no momentum, step schedule", dict(kind="sgd", momentum=0.0, wd=0.0), ("step", 0, 3, 0.5), 0.0),
    ("Adam + L2 weight decay, step + warm-up", dict(kind="adam", wd=1e-3), ("step", 2, 4, 0.1), 0.0),
    ("Adam, cosine, clipping that never triggers", dict(kind="adam", wd=0.0, beta1=0.8, beta2=0.99, eps=1e-6),
     ("cosine", 0, 1, 1.0), 1e6),
    ("AdamW decoupled decay, cosine + warm-up, clipping", dict(kind="adamw", wd=0.05), ("cosine", 4, 1, 1.0), 1.0),
]
SHAPES = [(33, 1, 0), (7, 1, 1), (130, 0, 0), (5, 0, 1)]  # n, group (0 head, 1 backbone), no weight decay
STEPS = 12
LR = (0.05, 0.01)  # head, backbone


def run_case(torch, name, opt, sched, clip):
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    data = [torch.randn(n, generator=g) for n, _, _ in SHAPES]
    grads = [[torch.randn(n, generator=g) * (3.0 if s % 3 == 0 else 0.3) for n, _, _ in SHAPES] for s in range(STEPS)]
    kind, warm, step_size, gamma = sched
    beta1, beta2, eps = opt.get("beta1", 0.9), opt.get("beta2", 0.999), opt.get("eps", 1e-8)
    with tempfile.TemporaryDirectory() as tmp:
        pin, pout = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        with open(pin, "wb") as fh:
            fh.write(struct.pack("<5i3q9d", KINDS[opt["kind"]], opt.get("nesterov", 0), len(SHAPES), STEPS,
                                 SCHEDS[kind], STEPS, warm, step_size, LR[0], LR[1], opt["wd"],
                                 opt.get("momentum", 0.0), beta1, beta2, eps, gamma, clip))
            for n, grp, nd in SHAPES:
                fh.write(struct.pack("<3i", n, grp, nd))
            for t in data:
                fh.write(t.numpy().astype("<f4").tobytes())
            for step in grads:
                for t in step:
                    fh.write(t.numpy().astype("<f4").tobytes())
        proc = subprocess.run([TOOL, pin, pout], stderr=subprocess.PIPE, text=True)
        testlib.check(proc.returncode == 0, "optim_tool failed: " + proc.stderr.strip())
        import numpy as np
        raw = open(pout, "rb").read()
    per_step = np.frombuffer(raw, dtype="<f8", count=2 * STEPS).reshape(STEPS, 2)
    final = np.frombuffer(raw, dtype="<f4", offset=16 * STEPS)

    params = [torch.nn.Parameter(t.clone()) for t in data]
    groups = []
    for grp in (0, 1):
        for nd in (0, 1):
            ps = [p for p, (_, pg, pnd) in zip(params, SHAPES) if pg == grp and pnd == nd]
            if ps:
                groups.append({"params": ps, "lr": LR[grp], "weight_decay": 0.0 if nd else opt["wd"]})
    if opt["kind"] == "sgd":
        o = torch.optim.SGD(groups, lr=LR[0], momentum=opt["momentum"], nesterov=bool(opt.get("nesterov")))
    else:
        cls = torch.optim.Adam if opt["kind"] == "adam" else torch.optim.AdamW
        o = cls(groups, lr=LR[0], betas=(beta1, beta2), eps=eps)
    S = torch.optim.lr_scheduler
    main = {"const": lambda: S.LambdaLR(o, lambda s: 1.0),
            "cosine": lambda: S.CosineAnnealingLR(o, T_max=STEPS - warm),
            "step": lambda: S.StepLR(o, step_size=step_size, gamma=gamma)}[kind]
    if warm:
        warmup = S.LinearLR(o, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm - 1)
        sch = S.SequentialLR(o, [warmup, main()], milestones=[warm])
    else:
        sch = main()
    problems = []
    for s in range(STEPS):
        factor = o.param_groups[0]["lr"] / LR[0]
        if abs(per_step[s, 0] - factor) > 1e-9 * max(1.0, abs(factor)):
            problems.append("step %d: lr factor %.12g, torch %.12g" % (s, per_step[s, 0], factor))
        for p, gr in zip(params, grads[s]):
            p.grad = gr.clone()
        if clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            if abs(per_step[s, 1] - norm) > 1e-6 * norm:
                problems.append("step %d: gradient norm %.9g, torch %.9g" % (s, per_step[s, 1], norm))
        o.step()
        sch.step()
    ref = torch.cat([p.detach() for p in params]).numpy()
    err = float(np.abs(final - ref).max() / np.abs(ref).max())
    print("# %s: largest difference / largest value %.3g" % (name, err))
    if err > 2e-6:
        problems.append("parameters after %d steps: relative error %.3g" % (STEPS, err))
    testlib.check(not problems, "; ".join(problems[:4]))


def main():
    labels = ["optim vs torch.optim: " + c[0] for c in CASES]
    torch = testlib.torch_and_tool(labels, TOOL)
    if not torch:
        return testlib.finish()
    warnings.filterwarnings("ignore", category=UserWarning)  # SequentialLR's own step(epoch) deprecation note
    for label, case in zip(labels, CASES):
        testlib.run_case(label, run_case, torch, *case)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
