#!/usr/bin/python3
"""PIL + torchvision intake timing, what a Python server does per request: decode the uploaded bytes
(Image.open + ImageOps.exif_transpose + convert("RGB"), which forces the full-size decode) and
preprocess (Resize + CenterCrop + ToTensor + Normalize), timed separately, on bytes already in
memory (as the server's decode timing starts on the received body).

usage: peer_intake.py --iters N --warmup W --resize R --crop C IMAGE [IMAGE ...]
prints one JSON object: {image path: {"decode_ms": [...], "preprocess_ms": [...]}} (every timed pass)
"""

import argparse
import io
import json
import sys
import time


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("images", nargs="+")
    args = p.parse_args(argv)

    import torch
    from PIL import Image, ImageOps
    from torchvision import transforms

    torch.set_num_threads(1)
    tf = transforms.Compose([transforms.Resize(args.resize), transforms.CenterCrop(args.crop),
                             transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    out = {}
    for path in args.images:
        with open(path, "rb") as f:
            data = f.read()
        dec, pre = [], []
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            with Image.open(io.BytesIO(data)) as im:
                rgb = ImageOps.exif_transpose(im).convert("RGB")
            t1 = time.perf_counter()
            with torch.no_grad():
                tf(rgb)
            t2 = time.perf_counter()
            if i >= args.warmup:
                dec.append((t1 - t0) * 1e3)
                pre.append((t2 - t1) * 1e3)
        out[path] = {"decode_ms": dec, "preprocess_ms": pre}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
