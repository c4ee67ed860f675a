#!/usr/bin/python3
"""Robustness corpus: every file of tests/corpus/gen_corpus.py ($CNN_CACHE/corpus) goes through
image_decode + image_preprocess ($BUILD/tests/image_dump, one process per file and mode, so an
ASan/LSan/UBSan report or a crash is attributed to its file; under `make asan` BUILD=build/asan).

Per file, in a full-size decode and a DCT-scaled one (min_short_side 32):
  - the process exits 0 with no sanitizer report (no crash, leak or exit from the library);
  - the status is the manifest's expected one ("pil": whatever PIL does);
  - on success: the reported orientation is the expected one and agrees with PIL's getexif;
    the decoded RGB equals PIL's Image.open -> exif_transpose -> convert("RGB") exactly (or the
    manifest's .expected.npy); the tensor of Resize(32)+CenterCrop(28)+Normalize matches
    torchvision's within mean |d| <= 0.01, max |d| <= 0.1;
  - an expected error is also an error for PIL, unless the manifest says why PIL differs.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402

RESIZE, CROP, MIN_SHORT = 32, 28, 32
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SANITIZER_MARKERS = ("Sanitizer", "runtime error:", "SUMMARY:")


def run_tool(tool, path, prefix, min_short):
    args = [tool, "--rgb", "--resize", str(RESIZE), "--crop", str(CROP), "--min-short",
            str(min_short), path, prefix]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    fields = {}
    line = res.stdout.strip()
    if line.startswith(path + " "):
        rest = line[len(path) + 1:]
        if " error=" in rest:
            rest, fields["error"] = rest.split(" error=", 1)
        for kv in rest.split():
            k, _, v = kv.partition("=")
            fields[k] = v
    return res, fields


def pil_load(path):
    """(rgb array after exif_transpose, orientation from getexif or None); raises like PIL."""
    from PIL import Image, ImageOps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            im.load()
            o = im.getexif().get(0x0112)
            im = ImageOps.exif_transpose(im)
            return np.array(im.convert("RGB")), o


def ref_tensor(rgb):
    import torch
    from PIL import Image
    from torchvision import transforms
    tf = transforms.Compose([transforms.Resize(RESIZE), transforms.CenterCrop(CROP),
                             transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    with torch.no_grad():
        return tf(Image.fromarray(rgb)).numpy()


def check_entry(tool, corpus, work, e):
    """Returns a list of problems (empty = pass)."""
    name, path = e["name"], os.path.join(corpus, e["name"])
    problems = []
    expect = e["expect"]
    pil = None
    if expect == "pil" or (expect == "ok" and e["ref"] == "pil") or \
            (expect not in ("ok", "unsupported") and "pil_differs" not in e):
        try:
            pil = pil_load(path)
        except Exception as ex:  # PIL raises many types for broken files
            pil = ex
    if expect == "pil":
        expect = "decode" if isinstance(pil, Exception) else "ok"
    if expect not in ("ok", "unsupported") and "pil_differs" not in e and \
            not isinstance(pil, Exception):
        problems.append(f"expected {expect} but PIL decodes it (mark pil_differs if deliberate)")

    results = {}
    for mode, min_short in (("full", 0), ("dct", MIN_SHORT)):
        prefix = os.path.join(work, f"{name}.{mode}")
        try:
            res, f = run_tool(tool, path, prefix, min_short)
        except subprocess.TimeoutExpired:
            problems.append(f"{mode}: image_dump timed out")
            continue
        if res.returncode != 0 or any(m in res.stderr for m in SANITIZER_MARKERS):
            tail = res.stderr.strip().splitlines()[-12:]
            problems.append(f"{mode}: image_dump exit {res.returncode}: " + " | ".join(tail))
            continue
        status = f.get("status")
        if status != expect:
            problems.append(f"{mode}: status {status} ({f.get('error', '')}), expected {expect}")
            continue
        results[mode] = (f, prefix)
    if problems or expect != "ok":
        for _, prefix in results.values():
            for ext in (".rgb", ".f32"):
                if os.path.exists(prefix + ext):
                    os.remove(prefix + ext)
        return problems

    f, prefix = results["full"]
    w, h = (int(v) for v in f["size"].split("x"))
    rgb = np.fromfile(prefix + ".rgb", np.uint8)
    tensor = np.fromfile(prefix + ".f32", np.float32)
    if int(f["orientation"]) != e["orientation"]:
        problems.append(f"orientation {f['orientation']}, expected {e['orientation']}")
    if e["ref"] == "npy":
        ref = np.load(path + ".expected.npy")
    else:
        ref, pil_o = pil
        pil_applied = pil_o if pil_o in range(1, 9) else 1
        if pil_applied != e["orientation"]:
            problems.append(f"PIL's exif_transpose applies {pil_applied}, manifest says "
                            f"{e['orientation']}")
    if rgb.size != w * h * 3 or ref.shape != (h, w, 3):
        problems.append(f"decoded {w}x{h}, reference {ref.shape[1]}x{ref.shape[0]}")
    else:
        d = np.abs(rgb.reshape(h, w, 3).astype(np.int32) - ref.astype(np.int32))
        if d.max() != 0:
            problems.append(f"RGB differs from the reference: max {d.max()}, "
                            f"{int((d > 0).sum())} samples")
        t = ref_tensor(ref)
        dt = np.abs(tensor.reshape(t.shape).astype(np.float64) - t)
        if dt.mean() > 0.01 or dt.max() > 0.1:
            problems.append(f"tensor vs torchvision: mean |d| {dt.mean():.5f}, max {dt.max():.4f}")

    fd, _ = results["dct"]
    if fd["orientation"] != f["orientation"]:
        problems.append(f"DCT-scaled decode reports orientation {fd['orientation']}")
    dw, dh = (int(v) for v in fd["size"].split("x"))
    if min(dw, dh) < min(MIN_SHORT, w, h) or dw > w or dh > h:
        problems.append(f"DCT-scaled size {dw}x{dh} for {w}x{h} and min_short_side {MIN_SHORT}")
    for _, p in results.values():
        for ext in (".rgb", ".f32"):
            if os.path.exists(p + ext):
                os.remove(p + ext)
    return problems


def label_of(e):
    label = f"corpus {e['name']} -> {e['expect']}"
    if e.get("orientation", 1) != 1:
        label += f" (orientation {e['orientation']})"
    return label


def main():
    root = testlib.REPO
    build = testlib.BUILD
    tool = os.path.join(root, build, "tests", "image_dump")
    cache = testlib.CACHE
    corpus = os.path.join(cache, "corpus")
    try:
        from PIL import Image  # noqa: F401  (gen_corpus.py needs PIL too)
    except ImportError as ex:
        testlib.skip("image corpus", f"PIL unavailable ({ex})")
        return testlib.finish()
    if not os.access(tool, os.X_OK):
        testlib.report("image corpus", [f"{tool} not built (make {build}/tests/image_dump)"])
        return testlib.finish()
    gen = subprocess.run([sys.executable, os.path.join(root, "tests", "corpus", "gen_corpus.py"),
                          corpus], capture_output=True, text=True)
    if gen.returncode != 0:
        testlib.report("image corpus generation", [gen.stderr.strip()[-2000:]])
        return testlib.finish()
    print(f"# {gen.stdout.strip()}")
    with open(os.path.join(corpus, "manifest.json")) as fh:
        manifest = json.load(fh)
    why = testlib.have_torch()
    if why:  # every entry is compared with torchvision's tensor
        testlib.skip_all([label_of(e) for e in manifest], why)
        return testlib.finish()
    import torch
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(dir=cache, prefix="corpus-out-") as work, \
            concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(check_entry, tool, corpus, work, e) for e in manifest]
        for e, fut in zip(manifest, futures):
            try:
                problems = fut.result()
            except Exception as ex:  # a checker bug must fail loudly, not skip
                problems = [f"checker error: {type(ex).__name__}: {ex}"]
            testlib.report(label_of(e), problems + [f"{e['name']}: {e['note']}"] if problems else [])
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
