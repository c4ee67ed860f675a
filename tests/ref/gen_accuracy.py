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


def main():
    cache = pathlib.Path(os.environ.get("CNN_CACHE", "cache")) / "ref"
    shared = pathlib.Path(os.environ.get("CNN_SHARED", "../shared"))
    out = cache / "accuracy.json"
    sample = shared / "data" / "imagenet-sample"
    if not (sample / "labels.tsv").exists() or not (shared / "weights").is_dir():
        print(f"gen_accuracy: {shared} has no weights or imagenet-sample; nothing to do")
        return 0
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

    torch.set_num_threads(2)
    rows = [line.split("\t") for line in (sample / "labels.tsv").read_text().splitlines()[1:] if line]
    result = {"files": [r[0] for r in rows], "labels": [int(r[1]) for r in rows], "models": {}}
    for name, fname, n_classes, tf_same, mean, std in MODELS:
        path = shared / "weights" / fname
        if not path.exists():
            continue
        t0 = time.time()
        model = getattr(torchvision.models, name)(num_classes=n_classes)
        if tf_same:
            gen_reference.apply_tf_same(model)
        sd = {k: torch.as_tensor(v) for k, v in safetensors_io.load_file(str(path)).tensors_f32().items()}
        model.load_state_dict(sd, strict=True)
        model.eval()
        tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])
        preds, top1, top5 = [], 0, 0
        with torch.inference_mode():
            for f, label in zip(result["files"], result["labels"]):
                x = tf(Image.open(sample / f).convert("RGB")).unsqueeze(0)
                y = model(x)[0, n_classes - 1000:]  # drop the background class of a 1001-class model
                t5 = [int(i) for i in torch.topk(y, 5).indices]
                preds.append(t5[0])
                top1 += t5[0] == label
                top5 += label in t5
        n = len(preds)
        result["models"][name] = {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "pred_top1": preds}
        print(f"gen_accuracy: {name}: PyTorch top-1 {100.0 * top1 / n:.1f}% top-5 {100.0 * top5 / n:.1f}% "
              f"on {n} photos ({time.time() - t0:.0f}s)")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
