#!/usr/bin/python3
"""PyTorch 1.13 side of the full fine-tuning report (issue #13 part 4): the same recipe as
`cnnserve train --mode full` run with torchvision on this machine, for the comparison in
paper/results (tools/paper.py --torch-json).

Same data: the class folders are walked as server/dataset.c does (names sorted bytewise, depth first,
hidden entries skipped, .jpg/.jpeg/.png/.webp in any case) and split with dataset_split's seeded,
stratified SplitMix64 shuffle, so training and validation hold the same files as the C run with the
same --seed / --val-split. Same augmentation kind (RandomResizedCrop(crop, scale=(0.08, 1)) +
RandomHorizontalFlip, from torch's generator, not the C one), validation/test = Resize(resize) +
CenterCrop(crop) (PIL bilinear, as the server's intake), the base file's mean/std and padding (TF
"SAME" for the real mobilenet_v3_small). Same model: the base file's weights, the last layer replaced
by a new K-output nn.Linear (torch's default init), every layer trainable. Same optimizer and schedule:
SGD (momentum, weight decay) or Adam(W), per-step cosine/step/constant schedule with optional linear
warm-up, --lr for the new layer and --lr-backbone for the rest. BatchNorm frozen (BN modules in eval
mode, gamma/beta trained) or train (model.train()); dropout on or off.

  torch_finetune.py --base mobilenet_v3_small --weights ../shared/weights/mobilenet_v3_small.safetensors
      --data ../shared/data/monkeys/train --test ../shared/data/monkeys/test --epochs 6 --out r.json

Writes one JSON object (recipe, split sizes, per-epoch log, validation and test top-1 / cross-entropy,
training wall time and images/s) to --out."""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "deploy"))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
MASK64 = (1 << 64) - 1


class SplitMix64:
    """core/rng.h, bit for bit."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        limit = MASK64 - MASK64 % n
        while True:
            v = self.next_u64()
            if v < limit:
                return v % n

    def shuffle(self, idx):
        for i in range(len(idx) - 1, 0, -1):
            j = self.below(i + 1)
            idx[i], idx[j] = idx[j], idx[i]


def walk_class(path):
    """The images under one class folder in server/dataset.c's order."""
    out = []
    for name in sorted(os.listdir(path), key=lambda s: s.encode("utf-8", "surrogateescape")):
        if name.startswith("."):
            continue
        child = os.path.join(path, name)
        if os.path.isdir(child):
            out.extend(walk_class(child))
        elif name.lower().endswith(IMAGE_EXTS):
            out.append(child)
    return out


def load_dataset(root):
    """(class folder names, [(path, label)]) grouped by class like dataset_load."""
    folders = sorted((n for n in os.listdir(root) if not n.startswith(".") and os.path.isdir(os.path.join(root, n))),
                     key=lambda s: s.encode("utf-8", "surrogateescape"))
    items = []
    for k, f in enumerate(folders):
        items.extend((p, k) for p in walk_class(os.path.join(root, f)))
    return folders, items


def split_dataset(folders, items, val_fraction, seed):
    """dataset_split: per class (in order) shuffle 0..n-1 and send the first round(n*f) to validation."""
    r = SplitMix64(seed)
    is_val = [False] * len(items)
    first = 0
    for k in range(len(folders)):
        n = sum(1 for _, lab in items if lab == k)
        idx = list(range(n))
        r.shuffle(idx)
        n_val = int(math.floor(n * val_fraction + 0.5))
        if n_val >= n and n > 0:
            n_val = n - 1
        for i in idx[:n_val]:
            is_val[first + i] = True
        first += n
    return [it for it, v in zip(items, is_val) if not v], [it for it, v in zip(items, is_val) if v]


def openblas_coretype():
    """Same choice as core/cpu.c (tests/ref/gen_accuracy.py): Debian's OpenBLAS falls back to slow
    kernels on CPUs it does not know."""
    try:
        flags = set(open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return None
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def build_model(torch, arch, weights_path, n_classes):
    """The base file's network (TF-SAME when its metadata says so) with a new nn.Linear head.
    Returns (model, head module name, mean, std)."""
    import convert_torchvision as ct
    import gen_reference
    import safetensors_io

    f = safetensors_io.load_file(weights_path)
    meta = f.metadata
    n_base = int(meta.get("num_classes", "1000"))
    model = ct.build_model(arch, n_base, aux_logits=False)
    if meta.get("padding") == "tf_same":
        gen_reference.apply_tf_same(model)
    sd = {k: torch.as_tensor(v) for k, v in f.tensors_f32().items()}
    model.load_state_dict(sd, strict=False)
    head = {"mobilenet_v3_large": "classifier.3", "mobilenet_v3_small": "classifier.3",
            "shufflenet_v2_x1_0": "fc", "alexnet": "classifier.6", "inception_v3": "fc"}[arch]
    parent = model.get_submodule(head.rsplit(".", 1)[0]) if "." in head else model
    old = model.get_submodule(head)
    setattr(parent, head.rsplit(".", 1)[-1], torch.nn.Linear(old.in_features, n_classes))
    mean = tuple(float(v) for v in meta["mean"].split(",")) if "mean" in meta else (0.485, 0.456, 0.406)
    std = tuple(float(v) for v in meta["std"].split(",")) if "std" in meta else (0.229, 0.224, 0.225)
    return model, head, mean, std


def lr_factor(a, step, total):
    """The schedule's multiplier of the base learning rate at optimizer step `step` (0-based)."""
    if a.warmup_steps and step < a.warmup_steps:
        return (step + 1) / a.warmup_steps
    t = step - a.warmup_steps
    n = max(total - a.warmup_steps, 1)
    if a.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t / n))
    if a.schedule == "step":
        return a.step_gamma ** (t // max(a.step_size, 1))
    return 1.0


def set_train_mode(torch, model, bn, dropout):
    """model.train(), then BatchNorm modules back in eval mode when frozen (running statistics used and
    kept; gamma/beta still trained) and Dropout in eval mode when off."""
    model.train()
    for m in model.modules():
        if bn == "frozen" and isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
        if not dropout and isinstance(m, torch.nn.Dropout):
            m.eval()


def evaluate(torch, model, items, tf, batch):
    """(top-1, mean cross-entropy, images/s) in eval mode."""
    from PIL import Image
    model.eval()
    correct, ce, t0 = 0, 0.0, time.time()
    with torch.no_grad():
        for b in range(0, len(items), batch):
            chunk = items[b:b + batch]
            x = torch.stack([tf(Image.open(p).convert("RGB")) for p, _ in chunk])
            y = torch.tensor([lab for _, lab in chunk])
            logits = model(x)
            ce += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    n = max(len(items), 1)
    return correct / n, ce / n, len(items) / max(time.time() - t0, 1e-9)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--test", default="", help="a test folder with the same class folders (optional)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--lr-backbone", type=float, default=-1, help="default: --lr")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--schedule", choices=("constant", "cosine", "step"), default="cosine")
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--step-size", type=int, default=0, help="steps per decay of --schedule step")
    ap.add_argument("--step-gamma", type=float, default=0.1)
    ap.add_argument("--clip-grad", type=float, default=0, help="> 0: clip_grad_norm_ to this global L2 norm")
    ap.add_argument("--verbose", action="store_true", help="print every step's loss")
    ap.add_argument("--bn", choices=("frozen", "train"), default="frozen")
    ap.add_argument("--dropout", type=int, choices=(0, 1), default=1)
    ap.add_argument("--val-split", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-train", type=int, default=0, help="use only the first N shuffled training images per epoch (smoke runs)")
    a = ap.parse_args()
    if a.lr_backbone < 0:
        a.lr_backbone = a.lr

    core = openblas_coretype()
    if core and "OPENBLAS_CORETYPE" not in os.environ:
        os.environ["OPENBLAS_CORETYPE"] = core
    import torch
    import torchvision.transforms as T
    from PIL import Image

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t_start = time.time()
    load_start = os.getloadavg()[0]
    folders, items = load_dataset(a.data)
    train, val = split_dataset(folders, items, a.val_split, a.seed)
    test = []
    if a.test:
        tf_folders, test_items = load_dataset(a.test)
        index = {f: k for k, f in enumerate(folders)}
        test = [(p, index[tf_folders[lab]]) for p, lab in test_items if tf_folders[lab] in index]

    model, head, mean, std = build_model(torch, a.base, a.weights, len(folders))
    crop = 299 if a.base == "inception_v3" else 224
    resize = 342 if a.base == "inception_v3" else 256
    tf_train = T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    tf_eval = T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), T.Normalize(mean, std)])

    head_params = [p for n, p in model.named_parameters() if n.startswith(head + ".")]
    body_params = [p for n, p in model.named_parameters() if not n.startswith(head + ".")]
    groups = [{"params": body_params, "lr": a.lr_backbone}, {"params": head_params, "lr": a.lr}]
    base_lrs = [a.lr_backbone, a.lr]
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=a.lr, momentum=a.momentum, nesterov=a.nesterov, weight_decay=a.weight_decay)
    elif a.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=a.lr, weight_decay=a.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, lr=a.lr, weight_decay=a.weight_decay)

    n_train = min(len(train), a.max_train) if a.max_train else len(train)
    steps_per_epoch = (n_train + a.batch - 1) // a.batch
    total = steps_per_epoch * a.epochs
    gen = torch.Generator().manual_seed(a.seed)
    log, step, train_s, n_seen = [], 0, 0.0, 0
    for epoch in range(a.epochs):
        set_train_mode(torch, model, a.bn, a.dropout)
        order = torch.randperm(len(train), generator=gen).tolist()[:n_train]
        loss_sum, correct, t_epoch = 0.0, 0, time.time()
        for b in range(0, n_train, a.batch):
            chunk = [train[i] for i in order[b:b + a.batch]]
            x = torch.stack([tf_train(Image.open(p).convert("RGB")) for p, _ in chunk])
            y = torch.tensor([lab for _, lab in chunk])
            f = lr_factor(a, step, total)
            for g, lr0 in zip(opt.param_groups, base_lrs):
                g["lr"] = lr0 * f
            opt.zero_grad()
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss.backward()
            if a.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_grad)
            opt.step()
            if a.verbose:
                print("torch_finetune: step %d loss %.4f" % (step, float(loss)), flush=True)
            step += 1
            loss_sum += float(loss) * len(chunk)
            correct += int((logits.argmax(1) == y).sum())
            n_seen += len(chunk)
        dt = time.time() - t_epoch
        train_s += dt
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n_train, "train_accuracy": correct / n_train,
               "seconds": dt, "images_per_s": n_train / dt, "load_average": os.getloadavg()[0]}
        log.append(row)
        print("torch_finetune: %s epoch %d/%d loss %.4f acc %.4f %.0f s (%.1f images/s)"
              % (a.base, epoch + 1, a.epochs, row["train_loss"], row["train_accuracy"], dt, row["images_per_s"]),
              flush=True)
    result = {"base": a.base, "data": a.data, "test": a.test or None, "torch": torch.__version__,
              "recipe": {k: v for k, v in vars(a).items() if k not in ("out", "data", "test", "weights")},
              "n_classes": len(folders), "n_train": len(train), "n_val": len(val), "n_test": len(test),
              "epochs": log, "train_seconds": train_s, "train_images_per_s": n_seen / max(train_s, 1e-9)}
    if val:
        acc, ce, ips = evaluate(torch, model, val, tf_eval, 50)
        result.update(val_accuracy=acc, val_cross_entropy=ce)
        print("torch_finetune: %s validation top-1 %.4f CE %.4f" % (a.base, acc, ce), flush=True)
    if test:
        acc, ce, ips = evaluate(torch, model, test, tf_eval, 50)
        result.update(test_accuracy=acc, test_cross_entropy=ce)
        print("torch_finetune: %s test top-1 %.4f CE %.4f" % (a.base, acc, ce), flush=True)
    result["wall_seconds"] = time.time() - t_start
    # the machine's 1-minute load average at the start, after each epoch (in "epochs") and at the end: the
    # times depend on what else ran on the cores, the accuracies do not
    result["load_average"] = {"start": load_start, "end": os.getloadavg()[0]}
    result["threads"] = torch.get_num_threads()
    result["nice"] = os.nice(0)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
