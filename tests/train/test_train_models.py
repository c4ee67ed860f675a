#!/usr/bin/python3
"""Whole-model training (models/model_train.h, core/optim.h, via $BUILD/tests/train_model_ref) against
PyTorch 1.13 autograd and torch.optim, for all five models (issue #13 part 2; TRAIN_MODELS=a,b runs a chosen
list).

Weights: the seeded random networks of $CNN_CACHE/ref (`make ref`) for mobilenet_v3_large, alexnet and
inception_v3 (aux_logits=False); the real ../shared weights for mobilenet_v3_small (TF "SAME" padding,
1001 classes) and shufflenet_v2_x1_0. Input: two of the reference images (a smooth pattern and the photo)
at the model's own size (224, 299), labels fixed. Dropout off in every case. The reference runs in
float64 (the same network and input), so ours (float32) is measured against the exact result. Per model:
  - BN frozen (BatchNorm modules in eval mode, gamma/beta trained): the loss and the gradient of every
    parameter vs autograd, relative error <= 1e-3 of the tensor's largest |value| (or of 1e-4 x the
    network's largest gradient, for tensors whose exact gradient is zero and hold only rounding noise),
    the float64 reference making our float32 choices where float32 may choose either way (a ReLU input
    within 3e-6 of 0, InceptionV3: within float32's forward error; a max-pool window's two largest inputs
    that close): given_choices (InceptionV3 at 299 x 299: within 1e-3 plus the reference's own spread over
    those choices, spread_bounded; BN frozen also at 75 x 75 given our choices; see SPREAD_GRADS);
  - BN train (model.train()): the same, and the running statistics after the step; where batch
    statistics of 2 images make a gradient ill-conditioned, PyTorch float32's own error (vs float64) is
    measured and ours may be up to twice it;
  - 3 SGD steps (lr 1e-3, MobileNetV3 and InceptionV3 smaller: SGD_LR; momentum 0.9, weight decay 1e-4) and
    3 Adam steps (lr 1e-4, InceptionV3 smaller: ADAM_LR), BN frozen, each step checked from our weights
    before it (the base file, then ours after 1 and 2 steps): our gradients there within 1e-3 of the
    float64 ones given our choices, and our update within 1e-2 of the largest of torch.optim's step taken
    from our weights with those gradients (its state carried over the steps), beyond the rounding of
    float32 weights (STEPS half-ulps of each element), so that a missing or wrong step cannot pass; and the
    weights after the 3 free-running steps within 1e-3 of the largest |value| per tensor of the float64
    trajectory that makes at each step the choices taken as ours there (Adam: on the elements whose first
    gradient is at least a tenth of the tensor's largest; the others, whose gradient is rounding noise that
    Adam turns into +-lr steps, within 2 x lr x steps or 1e-3 of the largest). InceptionV3's 3-step cases
    run at its smallest input, 75 x 75 (OPT_SIZE);
  - the saved file loads in PyTorch with strict=True, and its eval logits equal the tool's
    model_train_eval logits (<= 1e-3 of the largest);
and for the two real-weight models `cnnserve classify` of the saved file on a photo gives PyTorch's
probabilities for the same preprocessed tensor (image_dump) within 1e-4.

Skips (saying why) without torch, without the reference cache, without ../shared or without the tool."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

sys.path.insert(0, os.path.join(testlib.REPO, "deploy"))
sys.path.insert(0, os.path.join(testlib.REPO, "tests", "ref"))

TOOL = os.path.join(testlib.REPO, testlib.BUILD, "tests", "train_model_ref")
IMAGE_DUMP = os.path.join(testlib.REPO, testlib.BUILD, "tests", "image_dump")
REF = os.path.join(testlib.CACHE, "ref")
N, LABELS, FIRST_IMAGE = 2, [3, 7], 1  # images 1, 2 of the reference inputs: the smooth pattern and the photo
TOL = 1e-3
GRAD_FLOOR = 1e-4
# Small steps: the real networks (BatchNorm folded into their convs, loss ~10 on these labels) diverge
# at larger rates, and a diverging run turns rounding differences into large ones.
SGD = dict(lr=1e-3, momentum=0.9, weight_decay=1e-4)
# MobileNetV3 diverges at lr 1e-3 in PyTorch itself, float64 included (measured 2026-12-06): Large (seeded
# random weights, running variances down to 0.008, gradient norm 1.3e3) goes loss 10.9 -> 1.0e5 -> NaN, and
# at 1e-4 still 10.9 -> 90 -> 1e6 -> 1e218; Small (real weights, gradient norm 315) 10.8 -> 22 -> 540, where
# PyTorch float32's own third-step gradients differ from float64's by 25 % (ours by 20 %; ours at the same
# weights as float64 within 1e-4: no C error, an ill-conditioned trajectory). At these rates the reference
# trajectory is well-conditioned (PyTorch float32 within 1e-5 of float64 after the 3 steps): Large 10.9 ->
# 11.2 -> 13.9 (lr 1e-5), Small 10.8 -> 25.9 -> 8.3 (lr 1e-4).
# The seeded random InceptionV3 at 299 x 299 (loss 20, gradients up to 517) goes from loss 20 to 2.8e23 and
# NaN within 3 SGD steps at lr 1e-3 in float64, and its 3-step trajectory is chaotic at any usable rate:
# PyTorch float32's own weights end 5.9e-3 of the largest from float64's after 3 SGD steps at lr 1e-6 (the
# gradient cases' 27 ReLU inputs and 7 max-pool windows where float32 chooses differently). Its 3-step cases
# therefore run on the same weights at InceptionV3's smallest input, 75 x 75 (OPT_SIZE: the two images
# area-downsampled, the file's crop set to 75; the gradient cases stay at 299, which covers the full-size
# graph). Measured 2026-12-06, PyTorch float32 vs float64 after the 3 steps (weights / update, as checked
# here): at 75, SGD lr 3e-5 1.5e-7 / 2.0e-6 (first gradient within 4.4e-6, largest 20; loss 14.2, 11.4,
# 8.8), Adam lr 1e-5 1.0e-7 / 2.5e-5 (loss 14.2, 11.0, 8.5); at 107, 139 and 171 (SGD lr 1e-5) the first
# gradient is already 6.4e-2, 2.2e-2, 3.2e-2 off and the update 1.0, 1.6, 3.2. At 75, SGD at 1e-3 diverges
# (loss 14, 138, 1.4e16) and Adam at 1e-4 is ill-conditioned (update 0.33 off). Even at 75 the float64
# trajectory amplifies a discrete choice: passing the ReLU inputs within KINK of 0 at step 1 only (the first
# conv's gradient moves 3.8e-3) moves the step-3 gradients by 11 % (median); PyTorch float32 with other labels
# (100, 200) hit such a choice at step 2 (update 4.4e-2 off), and ours at SGD lr 1e-5 blocks one ReLU input
# within 1e-6 of 0 at step 3 (Conv2d_1a_3x3.bn.weight's gradient 5.6e-2 off; ours at our own weights otherwise
# within 6.7e-6 of float64 at every step). So each step is checked from our weights before it, and
# the float64 reference makes our float32 choices there (given_choices): the choices float32 may make either
# way (ReLU inputs within the margin of 0, max-pool near-ties; 3 to 16 per step here) are each tried in
# float64, those whose effect brings the reference towards our gradients are taken, and then our gradients
# must be within TOL of that reference and our update within UPDATE_TOL of torch.optim's step taken with its
# gradients (state carried over); the float64 trajectory for the weights after the 3 free-running steps
# (held to TOL) makes at each step the choices taken as ours there. An earlier bound (the spread of all
# near-ties passed, or all blocked, at once) was not one: its parts cancel, and Adam failed on a single ReLU
# input within 3e-6 of 0 that ours passes (Mixed_6a.branch3x3.bn.bias's gradient 2.65e-2 off). Measured
# 2026-12-06 (lead, main 0a00382): SGD gradients within 6.5e-6 given our choices (none taken as ours),
# updates within 3.7e-6; Adam within 1.6e-5 (1 taken as ours, at step 3), updates within 1.5e-5; 35 and
# 46 s. Injected faults fail: the tool's Adam lr x 1.03 (updates 3.0e-2
# off; gradients given our choices still within 1.2e-5, so only the update check sees it); every frozen-BN
# beta gradient x 1.005 (gradients 5.0e-3 off at step 1; Adam's update only 3.6e-4 off, so only the
# gradient check sees it); earlier (inc3): the tool skipping its second step (update 100 % off).
SGD_LR = {"mobilenet_v3_large": 1e-5, "mobilenet_v3_small": 1e-4, "inception_v3": 3e-5}
ADAM = dict(lr=1e-4, weight_decay=1e-4)
ADAM_LR = {"inception_v3": 1e-5}
OPT_SIZE = {"inception_v3": 75}
UPDATE_TOL = 1e-2
STEPS = 3
THREADS = 2

# name, weights file, reference input file (normalized with that file's mean/std), real weights
MODELS = [
    ("mobilenet_v3_large", os.path.join(REF, "mobilenet_v3_large.safetensors"),
     os.path.join(REF, "mobilenet_v3_large.inputs.f32"), False),
    ("mobilenet_v3_small", os.path.join(testlib.SHARED, "weights", "mobilenet_v3_small.safetensors"),
     os.path.join(REF, "mobilenet_v3_small_tf_same.inputs.f32"), True),
    ("shufflenet_v2_x1_0", os.path.join(testlib.SHARED, "weights", "shufflenet_v2_x1_0.safetensors"),
     os.path.join(REF, "shufflenet_v2_x1_0.inputs.f32"), True),
    ("alexnet", os.path.join(REF, "alexnet.safetensors"), os.path.join(REF, "alexnet.inputs.f32"), False),
    ("inception_v3", os.path.join(REF, "inception_v3.safetensors"), os.path.join(REF, "inception_v3.inputs.f32"),
     False),
]
CLASSIFY_PHOTO = "n01530575_brambling.JPEG"
# A ReLU input within rounding distance of 0 is a point where the gradient jumps, and so is a max-pool
# window whose two largest inputs are that close. With batch statistics one such element moves its
# channel's dgamma/dbeta by up to ~1e-2 of their largest value (measured on shufflenet_v2_x1_0, 2026-12-06:
# stage3.0.branch2.1 channels 21 and 61 each hold one pre-activation at |y| = 1.6e-6, which float32 puts on
# the other side of the kink than float64; the float64 reference with those elements passed brought the
# worst error from 1.4e-2 to 2.7e-3). In the 94 layers of InceptionV3 the float32 forward error grows to
# ~1.5e-4 (PyTorch's as ours), and ours chose differently from float64 at 27 ReLU inputs and 7 max-pool
# windows (BN frozen), which alone moved gradients by up to 3.2e-2 (PyTorch float32's own worst: 4.4e-2);
# the float64 reference given exactly our choices matched all 284 gradients to 2.1e-5 (BN train: 1.3e-4).
# So every gradient (but SPREAD_GRADS') is compared with the float64 reference making our float32 choices
# (given_choices): the near-ties (each call's margin KINK; for the models in WIDE_MARGIN, whose float32 forward
# error outgrows KINK, KINK or twice PyTorch float32's largest forward error at that call's input) are tried one
# at a time, and those whose effect brings the reference towards ours are taken. An earlier bound, the
# reference's spread over these choices (all passed, or all blocked, at once) added to TOL, was not one: its
# parts cancel (InceptionV3's Adam update failed it on a single ReLU input within 3e-6 of 0 that ours passes),
# and where wide it would hide a 1 % error. A choice can be compound: AlexNet's SGD step 2 (lr 1e-3) from our
# weights had conv2's gradient 2.3e-2 off in one output channel (129), where float64 has a ReLU input at -6.1e-8
# in a 3 x 3 max-pool window of zeros: PyTorch's pool sends the gradient to the window's first zero, whose ReLU
# stops it; ours, whose input there is positive, sends it through. Decisions 'force' passes such an input on as
# |x|, so the pool picks it as ours did (gradients then within 2.5e-6).
KINK = 3e-6
# given_choices tries at most this many near-ties (those with the largest gradient at their output) one by one.
MAX_TRIED = 48
WIDE_MARGIN = {"inception_v3"}
# InceptionV3's gradient cases at 299 x 299: ours chose differently from float64 at 34 near-ties (BN frozen),
# among 1,033 candidates (BN train: 1,718), more than given_choices' greedy search finds among the MAX_TRIED
# it tries (measured 2026-12-06: 18 taken, gradients still 3.3e-2 off given them; BN train 12, 6.9e-2). Those two
# cases keep the earlier bound, TOL plus the reference's own spread over the choices (spread_bounded),
# which passes with our choices but is loose; the same graph's BN-frozen gradients at 75 x 75 (OPT_SIZE) are
# then held to TOL given our choices (small_input_grads). Not BN train at 75: Mixed_7b's maps are 1 x 1 there,
# so its batch statistics are of 2 values, and PyTorch float32's own error reaches 0.24 (measured 2026-12-06).
SPREAD_GRADS = {"inception_v3"}
# make test runs all five.
DEFAULT_MODELS = "all"


def finite(e):
    """e, or infinity when it is NaN (a NaN on either side must fail every bound, not pass them all)."""
    return e if e == e else float("inf")


def rel_err(a, ref, floor=0.0):
    """max |a - ref| / max(max |ref|, floor) (absolute when both are zero)."""
    ref = ref.double()
    scale = max(float(ref.abs().max()), floor)
    return finite(float((a.reshape(ref.shape).double() - ref).abs().max()) / (scale if scale > 0 else 1.0))


def update_err(after, before, ref_after, grad0):
    """The update (after - before) vs the reference's, over the elements whose first-step gradient is at
    least a tenth of the tensor's largest: max (|du - du_ref| - r) / max |du_ref| there. Elements with a
    near-zero gradient are left out: Adam moves them by about +-lr whatever the sign of the rounding
    noise. r is what float32 weights cannot avoid: each step rounds the element to float32, up to half an
    ulp of it, so STEPS half-ulps. Without it, small updates of large weights fail on rounding alone
    (MobileNetV3 at its small rates: MobileNetV3-Small's features.2.block.2.1.bias update is 3.7 % off after
    3 SGD steps at 1e-4 and 1.4 % after 3 Adam steps, in PyTorch float32 and in ours alike; its
    features.1.block.1 SE layer, behind a hard-sigmoid saturated on these inputs, has a zero gradient and a
    weight-decay update of 1e-9 that float32 rounds to 0)."""
    import numpy as np
    import torch
    du = after.reshape(before.shape).double() - before.double()
    du_ref = ref_after.double() - before.double()
    mask = grad0.abs() >= 0.1 * float(grad0.abs().max())
    big = float(du_ref[mask].abs().max()) if bool(mask.any()) else 0.0
    w = np.maximum(np.abs(before.double().numpy()), np.abs(ref_after.double().numpy())).astype(np.float32)
    r = torch.from_numpy(STEPS * 0.5 * np.spacing(w).astype(np.float64))
    excess = ((du - du_ref).abs() - r).clamp(min=0)
    if big == 0.0:
        return finite(float(excess.max()))
    return finite(float(excess[mask].max()) / big)


def load_st(torch, path):
    import safetensors_io
    f = safetensors_io.load_file(path)
    return {k: torch.from_numpy(v.copy()) for k, v in f.tensors_f32().items()}, f.metadata


def build_torch(torch, arch, weights_path, aux=False):
    """torchvision model with the file's weights (TF-SAME when its metadata says so), float32."""
    import convert_torchvision as ct
    import gen_reference
    sd, meta = load_st(torch, weights_path)
    model = ct.build_model(arch, int(meta.get("num_classes", "1000")), aux_logits=aux)
    if meta.get("padding") == "tf_same":
        gen_reference.apply_tf_same(model)
    res = model.load_state_dict(sd, strict=False)
    bad = [k for k in res.missing_keys if not k.endswith("num_batches_tracked")]
    bad += [k for k in res.unexpected_keys if not k.startswith("AuxLogits.")]
    testlib.check(not bad, "%s: the base file does not match torchvision's %s: %s" % (weights_path, arch, bad[:5]))
    return model.double(), meta


def train_mode(torch, model, bn):
    """model.train() with dropout off; BatchNorm in eval mode when frozen (gamma/beta still trained)."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout) or (bn == "frozen" and isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
            m.eval()


def make_input(torch, path, size):
    import numpy as np
    raw = np.fromfile(path, dtype="<f4")
    per = 3 * size * size
    testlib.check(raw.size >= (FIRST_IMAGE + N) * per, "%s holds %d floats, fewer than %d images" % (path, raw.size, FIRST_IMAGE + N))
    return torch.from_numpy(raw[FIRST_IMAGE * per:(FIRST_IMAGE + N) * per].copy()).reshape(N, 3, size, size)


def torch_steps(torch, model, kind, hp, x, y, force):
    """STEPS torch.optim steps of model (BN frozen, dropout off) on x, y; force[k]: the near-tie choices its step
    k + 1 makes (Decisions 'force'). Returns the first step's gradients."""
    if kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    train_mode(torch, model, "frozen")
    dec = Decisions(torch, False)
    grad0 = {}
    for step in range(STEPS):
        opt.zero_grad()
        with dec("force", force[step]):
            torch.nn.functional.cross_entropy(model(x), y).backward()
        if step == 0:
            grad0 = {k: v.grad.detach().clone() for k, v in model.named_parameters()}
        opt.step()
    return grad0


def run_tool(args):
    proc = subprocess.run([TOOL, "--threads", str(THREADS)] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    testlib.check(proc.returncode == 0, "train_model_ref exit %d: %s" % (proc.returncode, proc.stderr.strip()[-400:]))


class Decisions:
    """While active (a with block), torch.nn.functional.relu and max_pool2d (which nn.ReLU, nn.MaxPool2d
    and torchvision's functional calls go through) are replaced; the i-th call of a forward is the same
    layer in every run of the same model. Modes: 'record' keeps each call's input (a float64 run);
    'measure' (a float32 run) sets each call's margin: KINK, or with wide=True KINK or twice its largest
    |input - recorded float64 input|; 'pass' / 'block' lets through / stops the ReLU inputs within the
    margin of 0; 'second' takes a max-pool window's runner-up where it lies within the margin below the
    maximum; 'force' makes the choices of force ({call: {flat index: choice}}: True / False for a ReLU input passed
    / blocked, a max-pool output's position in its window) and PyTorch's own elsewhere."""

    def __init__(self, torch, wide):
        self.torch, self.F, self.wide = torch, torch.nn.functional, wide
        self.orig = (self.F.relu, self.F.max_pool2d)
        self.inputs, self.margins, self.pools, self.force, self.mode, self.i = [], [], {}, {}, None, 0
        self.outputs = None  # a list: 'force' keeps each call's output there, its gradient retained

    def __call__(self, mode, force=None):
        self.mode, self.i, self.force = mode, 0, force or {}
        return self

    def __enter__(self):
        self.F.relu, self.F.max_pool2d = self.relu, self.max_pool2d
        return self

    def __exit__(self, *exc):
        self.F.relu, self.F.max_pool2d = self.orig

    def note(self, x, pool=None):
        """The margin of this call (None while recording), after recording or measuring its input; pool:
        a max-pool call's (kernel, stride, padding) (False where not supported), kept while recording."""
        i, self.i = self.i, self.i + 1
        if self.mode == "record":
            self.inputs.append(x.detach().clone())
            if pool is not None:
                self.pools[i] = pool
        elif self.mode == "measure":
            err = float((x.detach().double() - self.inputs[i]).abs().max()) if self.wide else 0.0
            self.margins.append(max(KINK, 2 * err))
        return self.margins[i] if i < len(self.margins) else None

    def near(self):
        """After record and measure: the choices float32 may make either way, as [(call, flat index, the
        other choice than float64's)]: the ReLU inputs within the call's margin of 0 and the max-pool outputs
        whose window's runner-up lies within it below the maximum (recorded float64 inputs)."""
        torch, found = self.torch, []
        for i, (x, m) in enumerate(zip(self.inputs, self.margins)):
            if i in self.pools:
                testlib.check(self.pools[i], "Decisions: max pool with dilation, ceil_mode or indices not supported")
                win, first, second = self.windows(x, *self.pools[i])
                gap = (win.gather(-1, first) - win.gather(-1, second)).reshape(-1)
                idx = torch.nonzero((gap > 0) & (gap < m)).reshape(-1)
                other = second.reshape(-1)[idx]
            else:
                idx = torch.nonzero(x.reshape(-1).abs() < m).reshape(-1)
                other = x.reshape(-1)[idx] <= 0
            found += [(i, int(j), v.item()) for j, v in zip(idx, other)]
        return found

    def feeds_pool(self, call):
        """Whether the recorded call after this one is a max pool of an input shaped as this call's."""
        return call + 1 in self.pools and self.inputs[call + 1].shape == self.inputs[call].shape

    def windows(self, x, kernel_size, stride, padding):
        """x's max-pool windows (N, C, H_out, W_out, kh*kw), the first maximum's index in scan order (PyTorch's
        choice) and the runner-up's, each keepdim."""
        def pair(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
        (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride or kernel_size), pair(padding)
        win = self.F.pad(x, (pw, pw, ph, ph), value=float("-inf")).unfold(2, kh, sh).unfold(3, kw, sw).flatten(4)
        first = win.argmax(-1, keepdim=True)
        second = win.scatter(-1, first, float("-inf")).argmax(-1, keepdim=True)
        return win, first, second

    def relu(self, x, inplace=False):
        m = self.note(x)
        if self.mode in ("pass", "block"):
            return self.torch.where(x > (-m if self.mode == "pass" else m), x, self.torch.zeros_like(x))
        if self.mode == "force":
            keep = (x > 0).reshape(-1)
            force = self.force.get(self.i - 1, {})
            keep[self.torch.tensor(list(force), dtype=self.torch.long)] = self.torch.tensor(list(force.values()),
                                                                                           dtype=self.torch.bool)
            keep = keep.reshape(x.shape)
            # a passed input <= 0 goes on as |x| (gradient 1), as float32's positive value would: a max pool
            # after it then picks it where the rest of its window is 0 (blocked), as ours did
            passed = self.torch.where(x > 0, x, x - 2 * x.detach())
            return self.kept(self.torch.where(keep, passed, self.torch.zeros_like(x)))
        return self.orig[0](x, inplace=inplace)

    def max_pool2d(self, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        plain = dilation in (1, (1, 1), [1, 1]) and not ceil_mode and not return_indices
        m = self.note(x, (kernel_size, stride, padding) if plain else False)
        if self.mode not in ("second", "force"):
            return self.orig[1](x, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                                return_indices=return_indices)
        testlib.check(plain, "Decisions: max pool with dilation, ceil_mode or indices not supported")
        win, first, second = self.windows(x, kernel_size, stride, padding)
        if self.mode == "second":
            gap = win.gather(-1, first) - win.gather(-1, second)
            return win.gather(-1, self.torch.where((gap > 0) & (gap < m), second, first)).squeeze(-1)
        choice = first.clone().reshape(-1)
        force = self.force.get(self.i - 1, {})
        choice[self.torch.tensor(list(force), dtype=self.torch.long)] = self.torch.tensor(list(force.values()),
                                                                                         dtype=self.torch.long)
        return self.kept(win.gather(-1, choice.reshape(first.shape)).squeeze(-1))

    def kept(self, out):
        """out, kept in outputs (a 'force' run's i-th call at outputs[i]) when outputs is a list."""
        if self.outputs is not None:
            if out.requires_grad:
                out.retain_grad()
            self.outputs.append(out)
        return out


class ModelCase:
    """Shared state of one model's cases: the input file and the C runs' outputs in a temp folder."""

    def __init__(self, torch, arch, weights, inputs, real, tmp):
        self.torch, self.arch, self.weights, self.real, self.tmp = torch, arch, weights, real, tmp
        self.size = 299 if arch == "inception_v3" else 224
        x = make_input(torch, inputs, self.size)
        self.y = torch.tensor(LABELS)
        self.input_path = os.path.join(tmp, arch + ".in.f32")
        x.numpy().astype("<f4").tofile(self.input_path)
        self.x = x.double()  # the reference runs in float64: ours (float32) is compared with the exact result

    def tool_args(self, *extra):
        return ["--arch", self.arch, "--weights", self.weights, "--input", self.input_path,
                "--labels", ",".join(map(str, LABELS))] + list(extra)

    def grads(self, bn):
        """Loss and gradients of one step vs autograd; in BN train also the running statistics."""
        torch = self.torch
        gpath, spath = os.path.join(self.tmp, "grads_%s.st" % bn), os.path.join(self.tmp, "saved_%s.st" % bn)
        run_tool(self.tool_args("--bn", bn, "--grads", gpath, "--save", spath))
        c_grads, gmeta = load_st(torch, gpath)
        model, _ = build_torch(torch, self.arch, self.weights)
        train_mode(torch, model, bn)
        loss = torch.nn.functional.cross_entropy(model(self.x), self.y)
        loss.backward()
        problems = []
        c_loss = float(gmeta["loss"])
        if not abs(c_loss - float(loss)) <= 1e-4 * max(1.0, abs(float(loss))):
            problems.append("loss %.7g vs torch %.7g" % (c_loss, float(loss)))
        params = dict(model.named_parameters())
        # A tensor whose exact gradient is zero (e.g. the bias of a BatchNorm followed by a conv and a
        # batch-statistics BatchNorm, which removes any per-channel constant) has only rounding noise:
        # its error is measured against FLOOR x the largest gradient of the network instead.
        floor = GRAD_FLOOR * max(float(p.grad.abs().max()) for p in params.values())
        missing = sorted(set(params) - set(c_grads))
        extra = sorted(set(c_grads) - set(params))
        if missing or extra:
            problems.append("parameter names differ: missing %s, extra %s" % (missing[:5], extra[:5]))
        f32_err = {}
        if bn == "train":
            # Batch statistics of 2 images make some gradients ill-conditioned: float32 cannot give them to
            # 1e-3 whatever the order of operations. PyTorch's own float32 error (vs float64) is measured,
            # and ours may be up to twice that where it exceeds TOL / 2.
            m32, _ = build_torch(torch, self.arch, self.weights)
            m32 = m32.float()
            train_mode(torch, m32, bn)
            torch.nn.functional.cross_entropy(m32(self.x.float()), self.y).backward()
            f32_err = {k: rel_err(v.grad, params[k].grad, floor) for k, v in m32.named_parameters()}
        bad = [k for k in params if k in c_grads and tuple(c_grads[k].shape) != tuple(params[k].shape)]
        problems += ["%s: shape %s vs torch %s" % (k, tuple(c_grads[k].shape), tuple(params[k].shape)) for k in bad]
        if not missing and not bad and self.arch in SPREAD_GRADS:
            problems += self.spread_bounded(bn, c_grads, params, floor, f32_err, float(loss), c_loss)
            if bn == "frozen":
                problems += self.small_input_grads()
        elif not missing and not bad:
            _, _, grad_problems, line = self.given_choices(self.weights, self.input_path, self.x, "BN " + bn, bn=bn,
                                                           gpath=gpath, allow={k: 2 * e for k, e in f32_err.items()})
            problems += grad_problems
            print("# %s BN %s: loss %.6f (float64 reference %.6f), %d gradients: %s%s" % (
                self.arch, bn, c_loss, float(loss), len(params), line,
                "; PyTorch float32's own worst %.2e (%s)" % max((v, k) for k, v in f32_err.items()) if f32_err else ""))
        if bn == "train":
            saved, _ = load_st(torch, spath)
            n_stats, worst = 0, (0.0, "")
            for name, buf in model.named_buffers():
                if name.endswith("num_batches_tracked"):
                    if name in saved and int(saved[name].reshape(-1)[0]) != int(buf):
                        problems.append("%s: %d vs torch %d" % (name, int(saved[name].reshape(-1)[0]), int(buf)))
                    continue
                if name not in saved:
                    problems.append("saved file lacks %s" % name)
                    continue
                n_stats += 1
                e = rel_err(saved[name], buf)
                worst = max(worst, (e, name))
                if e > TOL:
                    problems.append("%s after a BN-train step: relative error %.3g" % (name, e))
            print("# %s: %d running statistics after the step, worst relative error %.2e (%s)"
                  % (self.arch, n_stats, worst[0], worst[1]))
        return problems

    def spread_bounded(self, bn, c_grads, params, floor, f32_err, loss, c_loss):
        """SPREAD_GRADS: our gradients vs the plain float64 ones within TOL plus the reference's own spread over
        the near-tie choices (decision_spread), or twice PyTorch float32's own error (f32_err)."""
        spread, margin = self.decision_spread(bn, params, floor)
        problems, worst = [], (0.0, "")
        for name, p in params.items():
            e = rel_err(c_grads[name], p.grad, floor)
            worst = max(worst, (e, name))
            bound = max(TOL, 2 * f32_err.get(name, 0.0), TOL + spread[name])
            if not e <= bound:
                problems.append("grad %s relative error %.3g (bound %.3g: float32-choice spread %.3g%s)" % (
                    name, e, bound, spread[name],
                    ", PyTorch float32's own %.3g" % f32_err[name] if name in f32_err else ""))
        print("# %s BN %s: loss %.6f (float64 reference %.6f), %d gradients, worst relative error %.2e (%s); "
              "float32-choice spread there %.2e, largest %.2e, median %.2e (largest margin %.2g)%s" % (
                  self.arch, bn, c_loss, loss, len(params), worst[0], worst[1], spread[worst[1]],
                  max(spread.values()), sorted(spread.values())[len(spread) // 2], margin,
                  "; PyTorch float32's own worst %.2e (%s)" % max((v, k) for k, v in f32_err.items()) if f32_err else ""))
        return problems

    def small_input_grads(self):
        """SPREAD_GRADS: the BN-frozen gradients at the optimizer cases' input (OPT_SIZE) held to TOL given our
        choices (given_choices)."""
        weights, input_path, x = self.optimizer_setup()
        _, _, problems, line = self.given_choices(weights, input_path, x, "BN frozen at %d" % x.shape[-1])
        print("# %s BN frozen at %d x %d: %s" % (self.arch, x.shape[-1], x.shape[-1], line))
        return problems

    def decision_spread(self, bn, params, floor):
        """Per parameter: how far the float64 gradients move when the discrete choices float32 rounding may
        make either way go the other way (Decisions): ReLU inputs within a margin of 0 passed, then blocked,
        then max-pool windows whose runner-up is within a margin of the maximum taking the runner-up; the
        sum of the three, relative as rel_err. The reference itself is only defined up to this. Also
        returns the largest margin."""
        torch = self.torch
        dec = Decisions(torch, self.arch in WIDE_MARGIN)

        def run(mode, dtype=torch.float64, backward=True):
            model, _ = build_torch(torch, self.arch, self.weights)
            model = model.to(dtype)
            train_mode(torch, model, bn)
            with dec(mode):
                if backward:
                    torch.nn.functional.cross_entropy(model(self.x.to(dtype)), self.y).backward()
                else:
                    with torch.no_grad():
                        model(self.x.to(dtype))
            return {k: v.grad for k, v in model.named_parameters()}

        run("record", backward=False)
        run("measure", torch.float32, backward=False)
        dec.inputs = []
        spread = {k: 0.0 for k in params}
        for mode in ("pass", "block", "second"):
            g = run(mode)
            for k in params:
                spread[k] += rel_err(g[k], params[k].grad, floor)
        return spread, max(dec.margins, default=0.0)

    def optimizer_setup(self):
        """(weights file, input file, float64 input) of the optimizer cases: the model's own, or for the models in
        OPT_SIZE the same weights with __metadata__ crop set to that size and the two images area-downsampled to
        it (made once)."""
        if self.arch not in OPT_SIZE:
            return self.weights, self.input_path, self.x
        if not hasattr(self, "opt_setup"):
            import numpy as np
            import safetensors_io
            size = OPT_SIZE[self.arch]
            f = safetensors_io.load_file(self.weights)
            wpath = os.path.join(self.tmp, "opt_weights.st")
            safetensors_io.save_file(wpath, f.tensors_f32(), dict(f.metadata, crop=str(size)))
            x = self.torch.nn.functional.interpolate(self.x, size=(size, size), mode="area").float()
            ipath = os.path.join(self.tmp, "opt_input.f32")
            x.numpy().astype(np.float32).tofile(ipath)
            self.opt_setup = (wpath, ipath, x.double())
        return self.opt_setup

    def given_choices(self, weights, input_path, x, tag, bn="frozen", gpath=None, allow=None):
        """Gradients at weights (input x, the file input_path; BatchNorm as bn): ours (the tool's --grads, or
        the file gpath when given) and the float64 reference given our float32 choices (Decisions 'force').
        Where ours are not within TOL / 10 (or half of allow[name], where that is above TOL) of the plain float64
        reference, the choices float32 may make either way (Decisions.near: ReLU inputs within
        the margin of 0, max-pool near-ties; of those with a gradient arriving at their output, and blocked ReLU
        inputs, which may send one there through a max pool when passed, the MAX_TRIED with the largest) are tried one at a time in float64; those whose effect brings the reference closer
        to our gradients (sum over tensors of the squared difference relative to the tensor's largest
        gradient) are taken, greedily by gain, and the reference is run again with all of them. Returns (the
        reference's gradients, those choices, problems, one line of figures); ours must be within their bound of
        that reference (rel_err, relative to the tensor's largest gradient or GRAD_FLOOR x the network's): TOL,
        or allow[name] where that is larger. A C error can be explained away only by near-tie choices whose
        effects happen to match it."""
        torch = self.torch
        allow = allow or {}
        if gpath is None:
            gpath = os.path.join(self.tmp, "grads_%s.st" % tag.replace(" ", "_"))
            run_tool(["--arch", self.arch, "--weights", weights, "--input", input_path, "--labels",
                      ",".join(map(str, LABELS)), "--bn", bn, "--grads", gpath])
        c_grads, _ = load_st(torch, gpath)
        dec = Decisions(torch, self.arch in WIDE_MARGIN)

        def run(mode, force=None, dtype=torch.float64, backward=True):
            model, _ = build_torch(torch, self.arch, weights)
            model = model.to(dtype)
            train_mode(torch, model, bn)
            with dec(mode, force):
                if not backward:
                    with torch.no_grad():
                        model(x.to(dtype))
                    return None
                torch.nn.functional.cross_entropy(model(x.to(dtype)), self.y).backward()
            return {k: v.grad.detach().clone() for k, v in model.named_parameters()}

        run("record", backward=False)
        run("measure", dtype=torch.float32, backward=False)
        near = dec.near()
        feeds_pool = {call for call, _, _ in near if dec.feeds_pool(call)}
        dec.inputs, dec.outputs = [], []
        ref = run("force")
        # the gradient arriving at each near-tie's output: a choice's effect scales with it (zero: no effect)
        weight = [float(dec.outputs[call].grad.reshape(-1)[j].abs()) if dec.outputs[call].grad is not None else 0.0
                  for call, j, _ in near]
        dec.outputs = None
        missing = sorted(set(ref) - set(c_grads))
        if missing:
            return ref, {}, ["our gradients lack %s" % missing[:5]], ""
        ours = {k: c_grads[k].reshape(v.shape).double() for k, v in ref.items()}
        floor = GRAD_FLOOR * max(float(g.abs().max()) for g in ref.values())

        def errors(ref):
            return {k: rel_err(ours[k], g, floor) for k, g in ref.items()}

        bound = {k: max(TOL, allow.get(k, 0.0)) for k in ref}
        # near-ties are tried where ours is beyond a tenth of TOL, or beyond PyTorch float32's own error
        # where that is allowed (half the allowance)
        err, chosen = errors(ref), {}
        if any(err[k] > (bound[k] / 2 if bound[k] > TOL else TOL / 10) for k in ref):
            scale = {k: max(float(g.abs().max()), floor) for k, g in ref.items()}

            def cost(diff):
                return sum(float((d / scale[k]).pow(2).sum()) for k, d in diff.items())

            # no gradient at a blocked ReLU output may still become one when passed: a max pool right after it
            # sends a window of zeros' gradient to its first element, and to this one if it passes (AlexNet)
            tried = sorted((n for n in range(len(near)) if weight[n] > 0 or (near[n][2] is True and
                                                                             near[n][0] in feeds_pool)),
                           key=lambda n: -weight[n])[:MAX_TRIED]
            effects = []  # (choice, its effect on the gradients, float32 to bound the memory)
            for call, j, other in (near[n] for n in tried):
                g = run("force", {call: {j: other}})
                effects.append(((call, j, other), {k: (g[k] - ref[k]).float() for k in ref}))
            residual = {k: ours[k] - ref[k] for k in ref}
            while effects:
                base = cost(residual)
                gain, n = max((base - cost({k: residual[k] - eff[k] for k in residual}), n)
                              for n, (_, eff) in enumerate(effects))
                if not gain > 0:
                    break
                (call, j, other), eff = effects.pop(n)
                chosen.setdefault(call, {})[j] = other
                residual = {k: residual[k] - eff[k] for k in residual}
            if chosen:
                ref = run("force", chosen)
                err = errors(ref)
        problems = ["%s: our gradient at %s differs from the float64 one given our choices by %.3g of its largest "
                    "(bound %.3g)" % (k, tag, e, bound[k]) for k, e in err.items() if not e <= bound[k]]
        worst = max((e, k) for k, e in err.items())
        line = "%d near-tie choices (%d with a gradient), %d of them taken as ours, gradients then within %.2e (%s)" % (
            len(near), sum(w > 0 for w in weight), sum(map(len, chosen.values())), worst[0], worst[1])
        return ref, chosen, problems, line

    def stepwise_updates(self, kind, hp, paths, input_path, x):
        """Each of our STEPS updates vs torch.optim's (float64, its state carried over the steps) taken from our
        weights before that step (paths[k]: the base file, then ours after k steps) with the float64 gradients
        given our float32 choices there (given_choices, which also checks our gradients against them), within
        UPDATE_TOL of the largest update beyond the float32 rounding (update_err, on the elements whose first
        gradient is at least a tenth of the tensor's largest). Returns (problems, the choices taken as ours at
        each step)."""
        torch = self.torch
        model, _ = build_torch(torch, self.arch, paths[0])
        if kind == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        else:
            opt = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        params = dict(model.named_parameters())
        problems, worst, choices, grad0 = [], (0.0, 0, ""), [], None
        for k in range(STEPS):
            prev, _ = load_st(torch, paths[k])
            ours, _ = load_st(torch, paths[k + 1])
            ref_grads, chosen, grad_problems, line = self.given_choices(paths[k], input_path, x,
                                                                        "%s step %d" % (kind, k + 1))
            choices.append(chosen)
            grad0 = grad0 or ref_grads
            print("# %s %s step %d at our weights: %s" % (self.arch, kind, k + 1, line))
            problems += grad_problems
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(prev[name].reshape(p.shape))
                    p.grad = ref_grads[name].clone()
            opt.step()
            for name, p in params.items():
                u = update_err(ours[name], prev[name].reshape(p.shape), p.detach(), grad0[name])
                worst = max(worst, (u, k + 1, name))
                if not u <= UPDATE_TOL:
                    problems.append("%s: our %s step %d from our weights differs from torch.optim's by %.3g of its "
                                    "largest update" % (name, kind, k + 1, u))
        print("# %s %s: each step from our weights: worst update relative error %.2e (step %d, %s)" % ((self.arch, kind) + worst))
        return problems, choices

    def optimizer(self, kind):
        """Weights after STEPS optimizer steps (BN frozen) vs torch.optim; the saved file strict-loads and
        its eval logits equal model_train_eval's."""
        torch = self.torch
        hp = (dict(SGD, lr=SGD_LR.get(self.arch, SGD["lr"])) if kind == "sgd"
              else dict(ADAM, lr=ADAM_LR.get(self.arch, ADAM["lr"])))
        spath, lpath = os.path.join(self.tmp, "saved_%s.st" % kind), os.path.join(self.tmp, "logits_%s.f32" % kind)
        weights, input_path, x = self.optimizer_setup()
        args = ["--arch", self.arch, "--weights", weights, "--input", input_path,
                "--labels", ",".join(map(str, LABELS)), "--bn", "frozen", "--optim", kind, "--lr", repr(hp["lr"]),
                "--weight-decay", repr(hp["weight_decay"])]
        if kind == "sgd":
            args += ["--momentum", repr(hp["momentum"])]
        run_tool(args + ["--steps", str(STEPS), "--save", spath, "--logits", lpath])
        # the weights after each of our steps: the reference takes every step from ours
        paths = [weights] + [os.path.join(self.tmp, "saved_%s_%d.st" % (kind, k)) for k in range(1, STEPS)] + [spath]
        for k in range(1, STEPS):
            run_tool(args + ["--steps", str(k), "--save", paths[k]])
        problems, choices = self.stepwise_updates(kind, hp, paths, input_path, x)
        # the free-running float64 trajectory, making the near-tie choices ours made at each step
        model, _ = build_torch(torch, self.arch, weights)
        grad0 = torch_steps(torch, model, kind, hp, x, self.y, choices)
        saved, _ = load_st(torch, spath)
        worst = (0.0, "")
        for name, p in model.named_parameters():
            if name not in saved:
                problems.append("saved file lacks %s" % name)
                continue
            if kind == "adam":
                # Adam moves an element whose gradient is rounding noise by about +-lr per step, whichever
                # way the noise points: those elements may differ by up to 2 x lr x steps; the others
                # (first gradient >= a tenth of the tensor's largest) are held to TOL like SGD's.
                g = grad0[name].abs()
                big = g >= 0.1 * float(g.max())
                diff = (saved[name].reshape(p.shape).double() - p.detach().double()).abs()
                scale = max(float(p.detach().abs().max()), 1e-30)
                e = finite(float(diff[big].max()) / scale if bool(big.any()) else 0.0)
                noise = finite(float(diff[~big].max()) if bool((~big).any()) else 0.0)
                if noise > max(2 * hp["lr"] * STEPS * 1.01, TOL * scale):
                    problems.append("%s after %d adam steps: an element moved %.3g from PyTorch's, more than "
                                    "2 x lr x steps and TOL of the largest" % (name, STEPS, noise))
            else:
                e = rel_err(saved[name], p.detach())
            worst = max(worst, (e, name))
            if e > TOL:
                problems.append("%s after %d %s steps: relative error %.3g" % (name, STEPS, kind, e))
        print("# %s %s x%d (lr %g, input %d): worst weight relative error %.2e (%s)%s" % (
            self.arch, kind, STEPS, hp["lr"], x.shape[-1], worst[0], worst[1],
            ", the reference making our choices at %d near-ties" % sum(len(j) for f in choices for j in f.values())
            if any(choices) else ""))
        # The saved file in PyTorch, strictly (aux classifier included when the file has it).
        aux = any(k.startswith("AuxLogits.") for k in saved)
        import convert_torchvision as ct
        import gen_reference
        _, meta = load_st(torch, spath)
        m2 = ct.build_model(self.arch, int(meta.get("num_classes", "1000")), aux_logits=aux)
        if meta.get("padding") == "tf_same":
            gen_reference.apply_tf_same(m2)
        try:
            m2.load_state_dict(saved, strict=True)
        except RuntimeError as e:
            return problems + ["the saved file does not load in PyTorch (strict): %s" % str(e)[:300]]
        m2.eval()
        with torch.no_grad():
            ref = m2(x.float())
        import numpy as np
        c_logits = torch.from_numpy(np.fromfile(lpath, dtype="<f4").copy())
        if c_logits.numel() != ref.numel():
            return problems + ["model_train_eval gave %d logits, torch %d" % (c_logits.numel(), ref.numel())]
        e = rel_err(c_logits, ref)
        print("# %s: eval logits of the saved file, relative error %.2e" % (self.arch, e))
        if e > TOL:
            problems.append("model_train_eval logits vs PyTorch on the saved file: relative error %.3g" % e)
        return problems

    def classify(self):
        """`cnnserve classify` of the saved (SGD) file on a photo vs PyTorch on the same tensor."""
        torch = self.torch
        spath = os.path.join(self.tmp, "saved_sgd.st")
        photo = os.path.join(testlib.SHARED, "data", "imagenet-sample", CLASSIFY_PHOTO)
        if not os.path.exists(spath):
            raise testlib.Skip("the SGD case did not save a file")
        if not os.path.exists(photo) or not os.access(IMAGE_DUMP, os.X_OK):
            raise testlib.Skip("no %s or no image_dump" % photo)
        saved, meta = load_st(torch, spath)
        wdir = os.path.join(self.tmp, "wdir")
        os.makedirs(wdir, exist_ok=True)
        name = self.arch  # a file with ImageNet's classes is served under its architecture's name
        os.link(spath, os.path.join(wdir, name + ".safetensors"))
        mean = meta.get("mean", "0.485,0.456,0.406")
        std = meta.get("std", "0.229,0.224,0.225")
        resize, crop = int(meta.get("resize", "256")), int(meta.get("crop", "224"))
        prefix = os.path.join(self.tmp, "photo")
        proc = subprocess.run([IMAGE_DUMP, "--min-short", str(2 * resize), "--resize", str(resize), "--crop", str(crop),
                               "--mean", mean, "--std", std, photo, prefix], capture_output=True, text=True)
        testlib.check(proc.returncode == 0 and "status=ok" in proc.stdout, "image_dump: %s %s" % (proc.stdout, proc.stderr))
        import numpy as np
        x = torch.from_numpy(np.fromfile(prefix + ".f32", dtype="<f4").copy()).reshape(1, 3, crop, crop)
        model, _ = build_torch(torch, self.arch, spath)
        model.eval()
        with torch.no_grad():
            logits = model(x.double())[0]
        if meta.get("labels") == "imagenet1k+background":  # the server drops the background output
            logits = logits[1:]
        prob = torch.softmax(logits, 0)
        proc = subprocess.run([testlib.BIN, "classify", "--weights-dir", wdir, "--model", name, "--top-k", "5",
                               "--threads", "1", "--json", photo], capture_output=True, text=True)
        testlib.check(proc.returncode == 0, "classify exit %d: %s" % (proc.returncode, proc.stderr.strip()[-300:]))
        preds = json.loads(proc.stdout.strip().splitlines()[-1])["predictions"]
        problems = []
        for p in preds:
            ref = float(prob[p["index"]])
            if abs(float(p["score"]) - ref) > 1e-4:
                problems.append("class %d: classify %.6f vs PyTorch %.6f" % (p["index"], float(p["score"]), ref))
        top = int(torch.argmax(prob))
        if preds[0]["index"] != top:
            problems.append("classify top-1 %d vs PyTorch %d" % (preds[0]["index"], top))
        print("# %s: classify of the saved file: top-1 %d p=%.5f (PyTorch %.5f)"
              % (self.arch, preds[0]["index"], float(preds[0]["score"]), float(prob[preds[0]["index"]])))
        return problems


def main():
    # make test runs DEFAULT_MODELS; TRAIN_MODELS=a,b a chosen list.
    only = os.environ.get("TRAIN_MODELS", DEFAULT_MODELS)
    models = [m for m in MODELS if only == "all" or m[0] in only.split(",")]
    kinds = ["BN frozen gradients", "BN train gradients + running stats", "3 SGD steps + saved file",
             "3 Adam steps + saved file"]
    labels = [(m, k) for m in models for k in kinds] + [(m, "classify of the saved file") for m in models if m[3]]
    names = ["whole-model training vs PyTorch: %s: %s" % (m[0], k) for m, k in labels]
    torch = testlib.torch_and_tool(names, TOOL, THREADS)
    if not torch:
        return testlib.finish()
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            arch, weights, inputs, real = m
            mine = [(n, k) for n, (mm, k) in zip(names, labels) if mm is m]
            if not os.path.exists(weights) or not os.path.exists(inputs):
                what = "../shared/weights" if real and not os.path.exists(weights) else "$CNN_CACHE/ref (make ref)"
                testlib.skip_all([n for n, _ in mine], "no %s or %s (%s)" % (weights, inputs, what))
                continue
            d = os.path.join(tmp, arch)
            os.makedirs(d)
            case = ModelCase(torch, arch, weights, inputs, real, d)
            fns = {kinds[0]: lambda: case.grads("frozen"), kinds[1]: lambda: case.grads("train"),
                   kinds[2]: lambda: case.optimizer("sgd"), kinds[3]: lambda: case.optimizer("adam"),
                   "classify of the saved file": case.classify}
            for n, k in mine:
                testlib.run_case(n, fns[k])
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
