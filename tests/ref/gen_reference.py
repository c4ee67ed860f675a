#!/usr/bin/python3
"""Generate PyTorch reference data for the C engine's model tests into $CNN_CACHE/ref.

For every case: NAME.safetensors (seeded random weights, written through deploy/convert_torchvision.py),
NAME.inputs.f32 (n x 3 x S x S little-endian float32, already normalized) and NAME.logits.f32
(n x classes, torchvision's output for those inputs), plus manifest.json listing the cases.

The random weights are made to look like trained ones where it matters for testing: torchvision's
default initialisation gives identity BatchNorm and logits around 1e-9, which any engine reproduces
"within tolerance". Instead a data-dependent initialisation runs one calibration batch (the
case's synthetic test inputs plus more synthetic images) and
  - rescales every conv/linear so its output has a set per-channel scale (LSUV-like): unit scale
    plus a random offset for layers with a bias, a random scale in [e^-2.5, e^0.5] for bias-free
    convs (these feed BatchNorm, so some channels have variance near eps and a wrong eps shows);
    layers with one value per image (SE blocks, classifiers) get one common scale;
  - sets every BatchNorm's running_mean/var to perturbed statistics of its actual input, with
    gamma ~ U(0.5, 1.5) and beta ~ N(0, 0.25);
  - scales the classifier so logits have a spread of ~8 across classes.
The script then asserts that the logits are of order 1..100 and depend on the input.

Skips work when manifest.json was produced by the same sources (generator, converter, safetensors
writer), the same torch and the same photo; --force regenerates. Without torch it writes nothing and
exits 0 (the C tests skip).
"""

import argparse
import collections
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(REPO, "deploy")
SOURCES = [os.path.abspath(__file__), os.path.join(DEPLOY, "convert_torchvision.py"),
           os.path.join(DEPLOY, "safetensors_io.py")]
PHOTO_NAME = "n01440764_tench.JPEG"  # a fixed photo of ../shared/data/imagenet-sample
N_CALIB = 16
WHITEN_FLOOR = 0.05  # smallest whitening gain relative to the largest: bounds the amplification

# One seeded random network per entry; cases below reuse them with other storage dtypes.
Net = collections.namedtuple("Net", "name arch seed num_classes tf_same mean std")
NETS = collections.OrderedDict((n.name, n) for n in [
    Net("mobilenet_v3_large", "mobilenet_v3_large", 101, 1000, False, None, None),
    Net("mobilenet_v3_small", "mobilenet_v3_small", 102, 1000, False, None, None),
    Net("shufflenet_v2_x1_0", "shufflenet_v2_x1_0", 103, 1000, False, None, None),
    Net("alexnet", "alexnet", 104, 1000, False, None, None),
    Net("inception_v3", "inception_v3", 105, 1000, False, None, None),
    # Mirrors ../shared/weights/mobilenet_v3_small: TF "SAME" padding, background class, 0.5/0.5.
    Net("mobilenet_v3_small_tf_same", "mobilenet_v3_small", 106, 1001, True,
        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
])
Case = collections.namedtuple("Case", "name net dtype")
CASES = [Case(name, name, "f32") for name in NETS] + [
    Case("shufflenet_v2_x1_0_f16", "shufflenet_v2_x1_0", "f16"),
    Case("mobilenet_v3_large_bf16", "mobilenet_v3_large", "bf16"),
]
# torchvision's parameter counts (inception without the aux head) and conv+linear MACs.
EXPECTED = {
    "mobilenet_v3_large": (5483032, 0.2166e9),
    "mobilenet_v3_small": (2542856, 0.0565e9),
    "shufflenet_v2_x1_0": (2278604, 0.1449e9),
    "alexnet": (61100840, 0.7142e9),
    "inception_v3": (23834568, 5.7132e9),
}


class RefError(Exception):
    """A generated case failed a sanity check."""


def check(cond, msg):
    if not cond:
        raise RefError(msg)


def sources_digest():
    h = hashlib.sha256()
    for path in SOURCES:
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def write_atomic(path, data):
    import safetensors_io
    safetensors_io.write_atomic(path, data)


def photo_path(shared):
    """The fixed sample photo, or None without ../shared."""
    path = os.path.join(shared, "data", "imagenet-sample", PHOTO_NAME)
    return path if os.path.isfile(path) else None


def tf_same_pad(n, k, s):
    """TF "SAME": out = ceil(n/s); the total padding is split with the smaller half before."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def apply_tf_same(model):
    """Give every conv TF "SAME" padding: padding 0 plus an F.pad in a forward pre-hook, so the
    state_dict keys stay torchvision's."""
    import torch.nn as nn
    import torch.nn.functional as F

    def pre_hook(conv, args):
        x = args[0]
        top, bottom = tf_same_pad(x.shape[2], conv.kernel_size[0], conv.stride[0])
        left, right = tf_same_pad(x.shape[3], conv.kernel_size[1], conv.stride[1])
        return (F.pad(x, (left, right, top, bottom)),)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            check(m.dilation == (1, 1), "tf_same: dilated conv not handled")
            m.padding = (0, 0)
            m.register_forward_pre_hook(pre_hook)
        else:
            # Only adaptive pooling (unaffected by padding) exists in mobilenet_v3_small.
            check(not isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)),
                  "tf_same: fixed-window pooling not handled")


def build_net(net):
    import convert_torchvision as ct

    model = ct.build_model(net.arch, net.num_classes)
    if net.tf_same:
        apply_tf_same(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def gradient_image(size, phase=0.0):
    """Smooth deterministic pattern: ramps plus low-frequency sinusoids, roughly in [-2, 2]."""
    import math
    import torch

    t = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([
        1.5 * xx + 0.5 * torch.sin(3 * math.pi * yy + phase),
        1.5 * yy - 0.5 * torch.cos(2 * math.pi * xx + phase),
        2.0 * xx * yy + 0.3 * torch.sin(5 * math.pi * (xx + yy) + phase),
    ])


def calibration_batch(test_inputs, gen):
    """The synthetic test inputs plus more noise, smooth random fields and patterns (no photo, so
    the weights do not depend on ../shared being present). The test inputs are included because
    the calibrated nets fit their calibration images: unseen N(0,1) noise gives mobilenet_v3
    logits several times larger than calibration noise does."""
    import torch
    import torch.nn.functional as F

    size = test_inputs.shape[-1]
    imgs = list(test_inputs) + [torch.randn(3, size, size, generator=gen)]
    for i, res in enumerate((3, 4, 6, 8, 12, 16, 24, 32)):
        # Smooth (bilinear) and blocky (nearest) upsampled noise: blobs and edges, like photos.
        low = 1.5 * torch.randn(1, 3, res, res, generator=gen)
        mode = "bilinear" if i % 2 == 0 else "nearest"
        kw = {"align_corners": False} if mode == "bilinear" else {}
        imgs.append(F.interpolate(low, size=(size, size), mode=mode, **kw)[0])
    while len(imgs) < N_CALIB:
        phase = float(torch.rand(1, generator=gen)) * 6.283
        flip = torch.randperm(3, generator=gen)
        imgs.append(gradient_image(size, phase)[flip] * (0.5 + float(torch.rand(1, generator=gen))))
    batch = torch.stack(imgs)
    check(batch.shape[0] == N_CALIB, "calibration batch size")
    return batch


def whiten_classifier(fc, x, gen, spread=8.0):
    """Set the final Linear to a random projection of its whitened calibration inputs (plus a 10%
    full-rank random part) and return its new output. The pooled features of a random net are
    dominated by one direction (roughly "noise vs smooth image"): a classifier that follows it
    gives every smooth image the same top-5. Whitening weighs each direction the calibration
    images vary in equally; logits then spread by `spread` across classes, with N(0,1) biases."""
    import torch
    import torch.nn.functional as F

    x = x.double()
    mean = x.mean(0)
    centred = x - mean
    _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
    rank = int((sv > 1e-6 * sv[0]).sum())
    white = vh[:rank] / (sv[:rank, None] + WHITEN_FLOOR * sv[0])
    w = torch.randn(fc.out_features, rank, generator=gen, dtype=torch.float64) @ white
    dense = torch.randn(fc.out_features, fc.in_features, generator=gen, dtype=torch.float64)
    w = w + 0.1 * dense * float((centred @ w.T).std() / (centred @ dense.T).std())
    w = w * (spread / float((centred @ w.T).std()))
    fc.weight.copy_(w.float())
    fc.bias.copy_((torch.randn(fc.out_features, generator=gen, dtype=torch.float64) - w @ mean)
                  .float())
    return F.linear(x.float(), fc.weight, fc.bias)


def randomize(model, classifier, calib, gen):
    """Data-dependent random initialisation (see the module docstring), in one calibration pass:
    forward hooks rescale each conv/linear as its output goes by, BatchNorm pre-hooks set the
    statistics from the (already rescaled) input they actually receive."""
    import torch
    import torch.nn as nn

    def rand_like(t, lo, hi):
        return lo + (hi - lo) * torch.rand(t.shape, generator=gen)

    def layer_hook(mod, args, out):
        dims = [0, 2, 3] if out.dim() == 4 else [0]
        shape = [1, -1] + [1] * (out.dim() - 2)
        wshape = [-1] + [1] * (mod.weight.dim() - 1)
        mean = out.mean(dims)
        std = out.std(dims)
        std = std.clamp_min(0.1 * float(std.mean()) + 1e-12)  # dead channels: keep the scale sane
        if out.dim() == 2 or out.shape[2] * out.shape[3] == 1:
            # One value per image and channel (SE blocks, classifier layers): per-channel spreads
            # over a batch of images are too noisy to divide by, so the layer gets one common scale.
            std = (out - mean.view(shape)).std().clamp_min(1e-12).expand_as(mean)
        if mod is classifier:
            return whiten_classifier(mod, args[0], gen)
        if mod.bias is not None:
            scale = 1.0 / std
            offset = 0.25 * torch.randn(std.shape, generator=gen)
        else:
            scale = torch.exp(rand_like(std, -2.5, 0.5)) / std
            offset = None
        mod.weight.mul_(scale.view(wshape))
        if offset is None:
            return out * scale.view(shape)
        mod.bias.copy_((mod.bias - mean) * scale + offset)
        return (out - mean.view(shape)) * scale.view(shape) + offset.view(shape)

    def bn_hook(mod, args):
        x = args[0]
        mean = x.mean([0, 2, 3])
        var = x.var([0, 2, 3], unbiased=False).clamp_min(1e-4)
        mod.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(mean.shape, generator=gen))
        mod.running_var.copy_(var * torch.exp(0.2 * torch.randn(var.shape, generator=gen)))
        mod.weight.copy_(rand_like(mod.weight, 0.5, 1.5))
        mod.bias.copy_(0.25 * torch.randn(mod.bias.shape, generator=gen))

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(layer_hook))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(bn_hook))
    with torch.no_grad():
        model(calib)
    for h in handles:
        h.remove()


def count_params_macs(model, size):
    """torchvision's parameter count (inception's aux head excluded: it is not run for inference)
    and the multiply-accumulates of every conv and linear layer for one image."""
    import torch
    import torch.nn as nn

    n_params = sum(p.numel() for k, p in model.named_parameters() if not k.startswith("AuxLogits."))
    n_macs = [0]

    def hook(mod, args, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        else:
            k = mod.in_features
        n_macs[0] += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return n_params, n_macs[0]


def load_photo(path, arch, mean, std):
    """A photo preprocessed like torchvision's reference (PIL bilinear resize of the short side,
    center crop, normalize)."""
    from PIL import Image
    import torchvision.transforms as T

    tf = T.Compose([T.Resize(arch.resize), T.CenterCrop(arch.crop), T.ToTensor(),
                    T.Normalize(mean, std)])
    with Image.open(path) as img:
        return tf(img.convert("RGB"))


def synthetic_inputs(net, size):
    """N(0,1) noise and the smooth gradient pattern (deterministic per net)."""
    import torch

    gen = torch.Generator().manual_seed(net.seed * 7919)
    return torch.stack([torch.randn(3, size, size, generator=gen), gradient_image(size)])


def make_inputs(synthetic, arch, mean, std, photo):
    """The synthetic inputs plus, when there is one, the preprocessed sample photo."""
    import torch

    inputs = list(synthetic)
    kinds = ["noise", "gradient"]
    if photo is not None:
        inputs.append(load_photo(photo, arch, mean, std))
        kinds.append("photo:" + os.path.basename(photo))
    return torch.stack(inputs).contiguous(), kinds


def check_logits(name, logits, ref_logits=None):
    """Logits of order 1..100 with a spread across classes, and a different top-5 for every input."""
    import torch

    max_abs = float(logits.abs().max())
    check(1.0 <= max_abs <= 1000.0, "%s: max|logit| = %g, want 1..1000" % (name, max_abs))
    spread = logits.std(dim=1)
    check(bool((spread >= 1.0).all()), "%s: logit spread across classes %s < 1"
          % (name, spread.tolist()))
    top5 = logits.topk(5, dim=1).indices.tolist()
    for i in range(len(top5)):
        for j in range(i):
            check(set(top5[i]) != set(top5[j]), "%s: inputs %d and %d have the same top-5 %s"
                  % (name, j, i, sorted(top5[i])))
    if ref_logits is not None:  # rounded weights must change the result, but only slightly
        check(not torch.equal(logits, ref_logits), "%s: logits equal the F32 ones" % name)
        err = float((logits - ref_logits).abs().max())
        print("  %-26s max|logit - f32 logit| %.4f" % (name, err))
        check(err <= 0.25 * float(ref_logits.abs().max()),
              "%s: rounding the weights moved a logit by %g" % (name, err))
    return max_abs, top5


def load_back(model, path):
    """Load a converted file into the model (so the logits are those of the stored, possibly
    rounded, weights)."""
    import torch
    import safetensors_io

    st = safetensors_io.load_file(path)
    sd = {k: torch.from_numpy(v.copy()) for k, v in st.tensors_f32().items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    check(not missing and not unexpected, "%s: load back: missing %s, unexpected %s"
          % (path, missing, unexpected))
    return st


def generate(out_dir, shared, versions):
    import numpy as np
    import torch
    import convert_torchvision as ct

    torch.set_num_threads(2)
    torch.manual_seed(0)  # module construction draws from the global generator
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(manifest_path):
        os.unlink(manifest_path)  # never leave a manifest describing half-rewritten files
    photo = photo_path(shared)
    work = tempfile.mkdtemp(prefix="cnn-ref-")
    cases = []
    try:
        for net in NETS.values():
            t0 = time.time()
            arch = ct.get_arch(net.arch)
            mean, std = net.mean or arch.mean, net.std or arch.std
            torch.manual_seed(net.seed)
            model = build_net(net)
            gen = torch.Generator().manual_seed(net.seed)
            classifier = model.get_submodule(arch.classifier.rsplit(".", 1)[0])
            synthetic = synthetic_inputs(net, arch.crop)
            randomize(model, classifier, calibration_batch(synthetic, gen), gen)
            n_params, n_macs = count_params_macs(model, arch.crop)
            if net.name in EXPECTED:
                want_params, want_macs = EXPECTED[net.name]
                check(n_params == want_params, "%s: %d params, torchvision has %d"
                      % (net.name, n_params, want_params))
                check(abs(n_macs - want_macs) <= 0.01 * want_macs, "%s: %d MACs, expected ~%g"
                      % (net.name, n_macs, want_macs))
            print("%-28s params %10d  MACs %.4f G" % (net.name, n_params, n_macs / 1e9))
            pth = os.path.join(work, net.name + ".pth")
            torch.save(model.state_dict(), pth)
            inputs, kinds = make_inputs(synthetic, arch, mean, std, photo)
            f32_logits = None
            for case in (c for c in CASES if c.net == net.name):
                weights = case.name + ".safetensors"
                ct.convert_file(net.arch, pth, os.path.join(out_dir, weights), case.dtype,
                                net.num_classes, source="gen_reference.py seed %d" % net.seed,
                                padding="tf_same" if net.tf_same else "torch", mean=mean, std=std,
                                license="random test weights (no license needed)")
                load_back(model, os.path.join(out_dir, weights))
                with torch.inference_mode():
                    logits = model(inputs).float()
                max_abs, top5 = check_logits(case.name, logits,
                                             f32_logits if case.dtype != "f32" else None)
                if case.dtype == "f32":
                    f32_logits = logits
                write_atomic(os.path.join(out_dir, case.name + ".inputs.f32"),
                             inputs.numpy().astype("<f4").tobytes())
                write_atomic(os.path.join(out_dir, case.name + ".logits.f32"),
                             logits.numpy().astype("<f4").tobytes())
                cases.append(collections.OrderedDict([
                    ("name", case.name), ("arch", net.arch), ("weights", weights),
                    ("inputs", case.name + ".inputs.f32"), ("logits", case.name + ".logits.f32"),
                    ("n_inputs", int(inputs.shape[0])), ("input_kinds", kinds),
                    ("input_size", arch.crop), ("num_classes", net.num_classes),
                    ("tf_same", net.tf_same), ("dtype", case.dtype),
                    ("mean", list(mean)), ("std", list(std)),
                    ("n_params", int(n_params)), ("n_macs", int(n_macs)),
                    ("max_abs_logit", round(max_abs, 3)),
                    ("top5", top5),
                ]))
                print("  %-26s %-4s max|logit| %7.2f  top-1 %s" % (
                    case.name, case.dtype, max_abs, logits.argmax(1).tolist()))
            os.unlink(pth)
            print("  (%.1fs)" % (time.time() - t0))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    order = [c.name for c in CASES]
    manifest = collections.OrderedDict([
        ("generator", collections.OrderedDict([
            ("sources_sha256", sources_digest()), ("torch_torchvision", versions),
            ("numpy", np.__version__), ("photo", PHOTO_NAME if photo else None),
        ])),
        ("cases", sorted(cases, key=lambda c: order.index(c["name"]))),
    ])
    # One case per line: readable and still plain JSON.
    text = '{"generator": %s,\n "cases": [\n  %s\n ]}\n' % (
        json.dumps(manifest["generator"]),
        ",\n  ".join(json.dumps(c) for c in manifest["cases"]))
    write_atomic(manifest_path, text.encode())


def up_to_date(out_dir, shared, versions):
    """True when manifest.json came from these sources/torch/photo and all its files exist."""
    path = os.path.join(out_dir, "manifest.json")
    try:
        with open(path) as f:
            manifest = json.load(f)
        gen = manifest["generator"]
        if (gen["sources_sha256"] != sources_digest() or gen["torch_torchvision"] != versions
                or (gen["photo"] is not None) != (photo_path(shared) is not None)):
            return False
        names = [c["name"] for c in manifest["cases"]]
        if names != [c.name for c in CASES]:
            return False
        return all(os.path.isfile(os.path.join(out_dir, c[k])) for c in manifest["cases"]
                   for k in ("weights", "inputs", "logits"))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate PyTorch reference data for the C tests.")
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = p.parse_args(argv)
    cache = os.environ.get("CNN_CACHE") or os.path.join(REPO, "cache")
    shared = os.environ.get("CNN_SHARED") or os.path.join(REPO, "..", "shared")
    out_dir = os.path.join(cache, "ref")
    try:
        import torch
        import torchvision
    except ImportError as e:
        print("gen_reference: PyTorch/torchvision not importable (%s; use /usr/bin/python3): no "
              "reference data written, the C reference tests will skip" % e)
        return 0
    sys.path.insert(0, DEPLOY)
    versions = "%s/%s" % (torch.__version__, torchvision.__version__)
    if not args.force and up_to_date(out_dir, shared, versions):
        os.utime(os.path.join(out_dir, "manifest.json"))  # keeps make's timestamp rule quiet
        print("gen_reference: %s is up to date" % out_dir)
        return 0
    t0 = time.time()
    try:
        generate(out_dir, shared, versions)
    except RefError as e:
        print("gen_reference: FAILED: %s" % e, file=sys.stderr)
        return 1
    print("gen_reference: wrote %d cases to %s in %.1fs" % (len(CASES), out_dir, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
