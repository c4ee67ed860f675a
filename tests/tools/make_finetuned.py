#!/usr/bin/python3
"""Writes a stand-in fine-tuned model file (interface 1 of the project: torchvision key names for the
whole network, the last layer replaced by one with K outputs, `__metadata__` as `cnnserve train`
writes it) from a real ImageNet base file, with no training: the new layer's rows are copies of the
base classifier's rows for K chosen ImageNet classes (so its predictions are checkable: class i
wins exactly where ImageNet class classes[i] beats the other chosen ones), or random rows (--random).

Pure Python + numpy (deploy/safetensors_io.py). Used by tests/e2e/test_finetuned.py; the files go
to a temporary or cache directory, never into the repository.

  make_finetuned.py BASE.safetensors OUT.safetensors --classes 1,2,3 --labels a,b,c [--random SEED]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "deploy"))
import safetensors_io  # noqa: E402

LAST_LAYER = {"mobilenet_v3_small": "classifier.3", "mobilenet_v3_large": "classifier.3",
              "shufflenet_v2_x1_0": "fc", "inception_v3": "fc", "alexnet": "classifier.6"}


def make(base, out, classes, labels, random_seed=None, extra_meta=None):
    """classes: ImageNet indices 0..999 (torchvision order) whose rows make the new layer."""
    f = safetensors_io.load_file(base)
    meta = dict(f.metadata or {})
    arch = meta["architecture"]
    last = LAST_LAYER[arch]
    tensors = dict(f.tensors_f32())
    w, b = tensors[last + ".weight"], tensors[last + ".bias"]
    skip = w.shape[0] - 1000  # 1001-class base: background row 0
    if random_seed is not None:
        rng = np.random.default_rng(random_seed)
        nw = rng.standard_normal((len(labels), w.shape[1])).astype(np.float32) * 0.05
        nb = np.zeros(len(labels), dtype=np.float32)
    else:
        nw = np.stack([w[c + skip] for c in classes]).astype(np.float32)
        nb = np.array([b[c + skip] for c in classes], dtype=np.float32)
    tensors[last + ".weight"], tensors[last + ".bias"] = nw, nb
    new_meta = {k: v for k, v in meta.items() if k in ("architecture", "padding", "mean", "std")}
    new_meta.update({
        "num_classes": str(len(labels)),
        "labels": json.dumps(labels),
        "folders": json.dumps(["c%d" % i for i in range(len(labels))]),
        "base": os.path.basename(base),
        "recipe": json.dumps({"mode": "head", "epochs": 0, "lr": 0, "batch": 0, "seed": random_seed or 0,
                              "val_split": 0.3, "momentum": 0.9, "weight_decay": 0}),
        "val_accuracy": "0.5",
        "source": "tests/tools/make_finetuned.py",
    })
    new_meta.update(extra_meta or {})
    safetensors_io.save_file(out, tensors, new_meta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("out")
    ap.add_argument("--classes", required=True, help="comma list of ImageNet indices")
    ap.add_argument("--labels", required=True, help="comma list of display names")
    ap.add_argument("--random", type=int, default=None, help="random rows with this seed")
    a = ap.parse_args()
    classes = [int(c) for c in a.classes.split(",")]
    labels = a.labels.split(",")
    make(a.base, a.out, classes, labels, a.random)


if __name__ == "__main__":
    main()
