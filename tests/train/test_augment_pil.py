#!/usr/bin/python3
"""The training augmentation's resampling (image_resized_crop, via build/tests/image_dump --box) against
torchvision: for photos of ../shared/data/monkeys and a set of crop boxes (tiny, thin, whole image,
down- and up-scaling, with and without the flip), ours must equal
    F.resized_crop(PIL image, top, left, h, w, [S, S], BILINEAR) -> [F.hflip] -> ToTensor -> Normalize
(1) exactly, up to float rounding, when PIL is given our decoded pixels (the resampler alone), and
(2) within the intake's tolerance (mean |d| <= 0.01, max |d| <= 0.1, as tests/image) from PIL's own
decode (Image.open -> exif_transpose -> RGB). Skips without torch/torchvision or the data.

Prints one "ok - NAME" / "not ok - NAME: why" / "skip - NAME: why" line per case."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

TOOL = os.path.join(testlib.REPO, testlib.BUILD, "tests", "image_dump")
MONKEYS = os.path.join(testlib.SHARED, "data", "monkeys", "train")
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
S = 224
NAMES = ["augment resampling = torchvision F.resized_crop on PIL (our decoded pixels), exact",
         "augment vs torchvision from PIL's own decode, within the intake's tolerance"]


def boxes(w, h):
    """(x, y, bw, bh, flip) cases for a w x h image."""
    return [(0, 0, w, h, 0), (0, 0, w, h, 1), (w // 3, h // 4, w // 2, h // 2, 1), (w - 3, h - 5, 3, 5, 0),
            (1, 2, w - 1, 7, 0), ((w - min(150, w)) // 2, 0, min(150, w), h, 1),
            (w // 5, h // 5, min(S, w - w // 5), min(S, h - h // 5), 0), (7, 9, min(301, w - 7), min(257, h - 9), 0)]


def photos():
    out = []
    for c in sorted(os.listdir(MONKEYS))[:3]:
        files = sorted(os.listdir(os.path.join(MONKEYS, c)))
        out += [os.path.join(MONKEYS, c, f) for f in files[:2]]
    return out


def reference(torch, F, img, box):
    x, y, w, h, flip = box
    out = F.resized_crop(img, y, x, h, w, [S, S], interpolation=F.InterpolationMode.BILINEAR)
    if flip:
        out = F.hflip(out)
    return F.normalize(F.to_tensor(out), MEAN, STD)


def run(torch):
    import numpy as np
    import torchvision.transforms.functional as F
    from PIL import Image, ImageOps
    exact_problems, tol_problems = [], []
    worst_exact, worst_mean, worst_max, n = 0.0, 0.0, 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(photos()):
            pil = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
            w, h = pil.size
            for j, box in enumerate(boxes(w, h)):
                prefix = os.path.join(tmp, "p%d_%d" % (i, j))
                args = [TOOL, "--rgb", "--mean", "%g,%g,%g" % MEAN, "--std", "%g,%g,%g" % STD, "--box",
                        "%d,%d,%d,%d" % box[:4], "--size", str(S)] + (["--flip"] if box[4] else []) + [path, prefix]
                p = subprocess.run(args, capture_output=True, text=True)
                testlib.check(p.returncode == 0 and "status=ok" in p.stdout,
                              "image_dump %s: %s %s" % (box, p.stdout.strip(), p.stderr.strip()))
                size = [int(v) for v in p.stdout.split("size=")[1].split()[0].split("x")]
                testlib.check(size == [w, h], "decoded size %r, PIL %r" % (size, (w, h)))
                ours = torch.from_numpy(np.fromfile(prefix + ".box.f32", dtype="<f4").reshape(3, S, S))
                rgb = np.fromfile(prefix + ".rgb", dtype=np.uint8).reshape(h, w, 3)
                d = (ours - reference(torch, F, Image.fromarray(rgb, "RGB"), box)).abs()
                worst_exact = max(worst_exact, float(d.max()))
                if float(d.max()) > 1e-6:
                    exact_problems.append("%s box %r: max |d| %.3g from our pixels" % (os.path.basename(path), box,
                                                                                       float(d.max())))
                d = (ours - reference(torch, F, pil, box)).abs()
                m, mx = float(d.mean()), float(d.max())
                worst_mean, worst_max, n = max(worst_mean, m), max(worst_max, mx), n + 1
                if m > 0.01 or mx > 0.1:
                    tol_problems.append("%s box %r: mean |d| %.4f max |d| %.4f" % (os.path.basename(path), box, m,
                                                                                   mx))
    print("# %d crops: max |d| %.3g with our pixels; from PIL's decode worst mean |d| %.4f, worst max |d| %.4f"
          % (n, worst_exact, worst_mean, worst_max))
    return exact_problems, tol_problems


def main():
    if not os.path.isdir(MONKEYS):
        testlib.skip_all(NAMES, "../shared/data/monkeys absent")
        return testlib.finish()
    torch = testlib.torch_and_tool(NAMES, TOOL)
    if not torch:
        return testlib.finish()
    try:
        exact, tol = run(torch)
    except testlib.Failure as e:
        exact = tol = [str(e)]
    testlib.report(NAMES[0], exact)
    testlib.report(NAMES[1], tol)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
