#!/usr/bin/python3
"""Export the torchvision models, with the tensors of cnnserve's safetensors files, to ONNX (opset 13,
batch 1) for the ONNX Runtime peer. An export is redone only when its source file, torch or this
script changed (a stamp file next to each .onnx records them).

Prints one JSON object to stdout: {"models": {arch: onnx path}, "errors": {arch: message}}.
"""

import argparse
import hashlib
import json
import os
import sys

import bench_util

OPSET = 13


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights-dir", required=True)
    p.add_argument("--models", required=True, help="comma list")
    p.add_argument("--out-dir", required=True)
    return p.parse_args(argv)


def stamp_for(torch, src):
    with open(os.path.abspath(__file__), "rb") as f:
        script = hashlib.sha256(f.read()).hexdigest()
    st = os.stat(src)
    return {"source": os.path.abspath(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "torch": torch.__version__, "opset": OPSET, "script_sha256": script}


def export_one(torch, arch, src, dst):
    stamp_path = dst + ".stamp.json"
    stamp = stamp_for(torch, src)
    try:
        with open(stamp_path) as f:
            if json.load(f) == stamp and os.path.isfile(dst):
                return False
    except (OSError, ValueError):
        pass
    model, size, _ = bench_util.load_torch_model(arch, src)
    x = torch.from_numpy(bench_util.fixed_input(size))
    tmp = "%s.tmp.%d" % (dst, os.getpid())
    try:
        torch.onnx.export(model, x, tmp, opset_version=OPSET, input_names=["input"], output_names=["logits"],
                          do_constant_folding=True)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with open(stamp_path, "w") as f:
        json.dump(stamp, f)
    return True


def main(argv=None):
    args = parse_args(argv)
    import torch

    os.makedirs(args.out_dir, exist_ok=True)
    result = {"opset": OPSET, "torch": torch.__version__, "models": {}, "errors": {}}
    for arch in args.models.split(","):
        src = os.path.join(args.weights_dir, arch + ".safetensors")
        dst = os.path.join(args.out_dir, arch + ".onnx")
        try:
            fresh = export_one(torch, arch, src, dst)
        except Exception as e:  # report and go on: the other models still get their ORT figures
            result["errors"][arch] = "%s: %s" % (type(e).__name__, e)
            print("export_onnx: %s: %s" % (arch, result["errors"][arch]), file=sys.stderr)
            continue
        print("export_onnx: %s: %s" % (arch, "exported" if fresh else "up to date"), file=sys.stderr)
        result["models"][arch] = dst
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
