#!/usr/bin/python3
"""Fidelity of the C image intake against the torchvision reference pipeline.

For the photos of $CNN_SHARED/data/imagenet-sample, the tensor from image_decode (full-scale
decode, min_short_side 0) + image_preprocess, dumped by $BUILD/tests/image_dump, must match
    PIL Image.open -> ImageOps.exif_transpose -> convert("RGB")
    -> Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet mean/std)
to mean |d| <= 0.01 and max |d| <= 0.1 (normalized units) on every photo; the inception
preprocessing (342/299) is checked the same way on a fixed subset. The DCT-scaled decode
(min_short_side 256, what the server uses) is compared with the same PIL reference for
information only (its accuracy impact is checked by the model tests).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MAX_MEAN_ABS = 0.01
MAX_ABS = 0.1
BATCH = 100  # photos per image_dump process


def reference(path, resize, crop):
    import torch
    from PIL import Image, ImageOps
    from torchvision import transforms

    tf = transforms.Compose([
        transforms.Resize(resize),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        with torch.no_grad():
            return tf(im).numpy()


def c_tensors(tool, paths, workdir, resize, crop, min_short):
    """{path: (tensor or None, info line)} from image_dump, BATCH files per process."""
    out = {}
    for b in range(0, len(paths), BATCH):
        chunk = paths[b:b + BATCH]
        args = [tool, "--resize", str(resize), "--crop", str(crop), "--min-short", str(min_short)]
        prefixes = []
        for i, p in enumerate(chunk):
            prefix = os.path.join(workdir, f"t{b + i}")
            prefixes.append(prefix)
            args += [p, prefix]
        res = subprocess.run(args, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"image_dump exited {res.returncode}: {res.stderr.strip()[-2000:]}")
        lines = res.stdout.splitlines()
        if len(lines) != len(chunk):
            raise RuntimeError(f"image_dump printed {len(lines)} lines for {len(chunk)} files")
        for p, prefix, line in zip(chunk, prefixes, lines):
            t = None
            if " status=ok " in line:
                t = np.fromfile(prefix + ".f32", dtype=np.float32).reshape(3, crop, crop)
                os.remove(prefix + ".f32")
            out[p] = (t, line)
    return out


def compare(name, tool, paths, workdir, resize, crop, min_short, enforce):
    """Compares C and PIL tensors; prints stats; returns the list of failures."""
    c = c_tensors(tool, paths, workdir, resize, crop, min_short)
    failures = []
    worst_mean = (0.0, "-")
    worst_max = (0.0, "-")
    mean_sum = 0.0
    n_exact = 0
    for p in paths:
        t, line = c[p]
        if t is None:
            failures.append(f"{os.path.basename(p)}: C decode failed: {line}")
            continue
        ref = reference(p, resize, crop)
        d = np.abs(t.astype(np.float64) - ref.astype(np.float64))
        m, mx = float(d.mean()), float(d.max())
        mean_sum += m
        n_exact += int(mx == 0.0)
        if m > worst_mean[0]:
            worst_mean = (m, os.path.basename(p))
        if mx > worst_max[0]:
            worst_max = (mx, os.path.basename(p))
        if enforce and (m > MAX_MEAN_ABS or mx > MAX_ABS):
            failures.append(f"{os.path.basename(p)}: mean |d| {m:.5f}, max |d| {mx:.4f}")
    n = len(paths)
    print(f"# {name}: {n} photos, average mean |d| {mean_sum / max(n, 1):.6f}, "
          f"worst mean |d| {worst_mean[0]:.6f} ({worst_mean[1]}), "
          f"worst max |d| {worst_max[0]:.5f} ({worst_max[1]}), bit-exact {n_exact}/{n}",
          flush=True)
    return failures


def report(name, failures):
    testlib.report(name, ["%d photos out of tolerance" % len(failures)] + failures if failures else [])


def main():
    build = testlib.BUILD
    tool = os.path.join(testlib.REPO, build, "tests", "image_dump")  # BUILD may be absolute
    sample = os.path.join(testlib.SHARED, "data", "imagenet-sample")
    names = ("image fidelity resize256/crop224 vs torchvision",
             "image fidelity resize342/crop299 (inception) vs torchvision",
             "image fidelity: DCT-scaled decode succeeds on every photo")
    if not os.path.isdir(sample):
        testlib.skip_all(names, f"{sample} not found")
        return testlib.finish()
    why = testlib.have_torch()
    try:
        from PIL import Image  # noqa: F401
    except ImportError as e:
        why = f"PIL unavailable: {e}"
    if why:
        testlib.skip_all(names, why)
        return testlib.finish()
    if not os.access(tool, os.X_OK):
        for n in names:
            testlib.report(n, [f"{tool} not built (make {build}/tests/image_dump)"])
        return testlib.finish()
    import torch
    torch.set_num_threads(1)

    photos = sorted(os.path.join(sample, f) for f in os.listdir(sample)
                    if f.lower().endswith((".jpeg", ".jpg", ".png", ".webp")))
    cache = testlib.CACHE
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="image-fidelity-") as work:
        report(names[0], compare(names[0], tool, photos, work, 256, 224, 0, True))
        subset = photos[::10]  # fixed deterministic subset: every 10th photo by name
        report(names[1], compare(names[1], tool, subset, work, 342, 299, 0, True))
        # Information only: DCT-scaled decode (as the server runs it) vs PIL's full decode.
        failures = compare("info: DCT-scaled decode (min_short_side 256) vs PIL full decode",
                           tool, photos, work, 256, 224, 256, False)
        report(names[2], failures)
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
