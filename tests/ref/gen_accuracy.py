#!/usr/bin/env python3
"""PyTorch's own accuracy on ../shared's 1000 ImageNet photos for the real weights in ../shared/weights,
with torchvision's standard PIL preprocessing (Resize(256) bilinear, CenterCrop(224), ToTensor, Normalize).

Writes $CNN_CACHE/ref/accuracy.json: per model top-1/top-5 and every photo's top-1 prediction, which
tests/unit/test_models.c compares the C engine with (same run, same machine). Exits 0 writing nothing
when torch or ../shared is absent (the C test then skips)."""
import json
import os
import pathlib
import sys
import time

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here))
sys.path.insert(0, str(here.parent.parent / "deploy"))

MODELS = [  # name, file, classes, tf_same, mean, std
    ("shufflenet_v2_x1_0", "shufflenet_v2_x1_0.safetensors", 1000, False, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("mobilenet_v3_small", "mobilenet_v3_small.safetensors", 1001, True, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
]


def openblas_coretype():
    """Same choice as core/cpu.c: Debian's OpenBLAS 0.3.21 (which this torch uses) falls back to its
    slowest kernels on CPUs it does not know, making this script many times slower."""
    try:
        flags = set(open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return None
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def main():
    cache = pathlib.Path(os.environ.get("CNN_CACHE", "cache")) / "ref"
    shared = pathlib.Path(os.environ.get("CNN_SHARED", "../shared"))
    out = cache / "accuracy.json"
    sample = shared / "data" / "imagenet-sample"
    if not (sample / "labels.tsv").exists() or not (shared / "weights").is_dir():
        print(f"gen_accuracy: {shared} has no weights or imagenet-sample; nothing to do")
        return 0
    core = openblas_coretype()
    if core and "OPENBLAS_CORETYPE" not in os.environ:
        os.environ["OPENBLAS_CORETYPE"] = core  # must precede loading torch (and OpenBLAS)
    try:
        import torch
        import torchvision
        import torchvision.transforms as T
        from PIL import Image
    except ImportError as e:
        print(f"gen_accuracy: PyTorch not available ({e}); the accuracy comparison will be skipped")
        return 0
    import gen_reference
    import safetensors_io

    t0 = time.time()
    torch.set_num_threads(2)
    rows = [line.split("\t") for line in (sample / "labels.tsv").read_text().splitlines()[1:] if line]
    result = {"files": [r[0] for r in rows], "labels": [int(r[1]) for r in rows], "models": {}}
    nets = []
    for name, fname, n_classes, tf_same, mean, std in MODELS:
        path = shared / "weights" / fname
        if not path.exists():
            continue
        model = getattr(torchvision.models, name)(num_classes=n_classes)
        if tf_same:
            gen_reference.apply_tf_same(model)
        sd = {k: torch.as_tensor(v) for k, v in safetensors_io.load_file(str(path)).tensors_f32().items()}
        model.load_state_dict(sd, strict=True)
        model.eval()
        nets.append((name, n_classes, model, T.Normalize(mean, std), []))
    # Decode, resize and crop each photo once; only the normalization differs between the models.
    # Batches of 50: this torch build runs 1x1 convs through a slow path that batching amortizes (10x).
    to_tensor = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    batch = 50
    with torch.inference_mode():
        for b in range(0, len(result["files"]), batch):
            x = torch.stack([to_tensor(Image.open(sample / f).convert("RGB")) for f in result["files"][b:b + batch]])
            for name, n_classes, model, norm, top5s in nets:
                y = model(norm(x))[:, n_classes - 1000:]  # drop a 1001-class model's background
                top5s.extend([[int(i) for i in row] for row in torch.topk(y, 5, dim=1).indices])
    for name, n_classes, model, norm, top5s in nets:
        n = len(top5s)
        top1 = sum(t[0] == label for t, label in zip(top5s, result["labels"]))
        top5 = sum(label in t for t, label in zip(top5s, result["labels"]))
        result["models"][name] = {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n,
                                  "pred_top1": [t[0] for t in top5s]}
        print(f"gen_accuracy: {name}: PyTorch top-1 {100.0 * top1 / n:.1f}% top-5 {100.0 * top5 / n:.1f}% "
              f"on {n} photos")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    print(f"gen_accuracy: wrote {out} in {time.time() - t0:.0f}s (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
