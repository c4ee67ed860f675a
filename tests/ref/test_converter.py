#!/usr/bin/python3
"""Tests of deploy/convert_torchvision.py and deploy/safetensors_io.py (offline, no network access).

Prints one "ok - NAME" / "not ok - NAME: why" / "skip - NAME: why" line per case and exits non-zero
if any case failed. Run with /usr/bin/python3 (torch 1.13 / torchvision 0.14).
"""

import collections
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testlib  # noqa: E402
from testlib import REPO, SHARED, Skip, check  # noqa: E402

CONVERTER = os.path.join(REPO, "deploy", "convert_torchvision.py")
sys.path.insert(0, os.path.join(REPO, "deploy"))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))

META_KEYS = ["architecture", "num_classes", "mean", "std", "resize", "crop", "padding", "source",
             "license", "sha256"]


def run_cli(*args):
    proc = subprocess.run([sys.executable, CONVERTER] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def parse_raw(path):
    """Independent parse of a safetensors file (not via safetensors_io): header dict, data start and
    the data section bytes."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack_from("<Q", buf, 0)
    header = json.loads(buf[8:8 + n].decode("utf-8"), object_pairs_hook=collections.OrderedDict)
    return header, 8 + n, buf[8 + n:]


def random_model(arch="mobilenet_v3_small", seed=1):
    """torchvision model with random weights and non-trivial BatchNorm buffers."""
    import torch
    import convert_torchvision as ct

    torch.manual_seed(seed)
    model = ct.build_model(arch, 1000).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.2, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.25)
                m.num_batches_tracked.fill_(7)
    return model


def expected_tensors(model):
    return collections.OrderedDict((k, v.detach().float().contiguous())
                                   for k, v in model.state_dict().items()
                                   if not k.endswith("num_batches_tracked"))


def check_file_matches(path, tensors, dtype_name, encode):
    """The file holds exactly these tensors, in order, bytes equal to encode(tensor), contiguous and
    8-aligned."""
    header, data_start, data = parse_raw(path)
    check(data_start % 8 == 0, "data section starts at %d, not 8-aligned" % data_start)
    names = [k for k in header if k != "__metadata__"]
    check(names == list(tensors), "tensor names/order differ: %s vs %s"
          % (names[:3], list(tensors)[:3]))
    pos = 0
    for name, t in tensors.items():
        e = header[name]
        check(e["dtype"] == dtype_name, "%s: dtype %s" % (name, e["dtype"]))
        check(e["shape"] == list(t.shape), "%s: shape %s vs %s" % (name, e["shape"], list(t.shape)))
        begin, end = e["data_offsets"]
        check(begin == pos, "%s: starts at %d, expected %d" % (name, begin, pos))
        want = encode(t)
        check(data[begin:end] == want, "%s: stored bytes differ from the expected encoding" % name)
        pos = end
    check(pos == len(data), "data section has %d bytes, tensors cover %d" % (len(data), pos))
    return header.get("__metadata__")


def f32_bytes(t):
    return t.numpy().astype("<f4").tobytes()


def torch_f16_bytes(t):
    import torch
    return t.half().view(torch.int16).numpy().astype("<i2").tobytes()


def torch_bf16_bytes(t):
    import torch
    return t.bfloat16().view(torch.int16).numpy().astype("<i2").tobytes()


# ---------------------------------------------------------------------------------------------
# cases


def case_roundtrip_state_dict_f32(tmp):
    import torch
    import convert_torchvision as ct
    import safetensors_io

    model = random_model()
    src = os.path.join(tmp, "ms.pth")
    torch.save(model.state_dict(), src)
    out = os.path.join(tmp, "ms.safetensors")
    rc, _, err = run_cli("--arch", "mobilenet_v3_small", "--src", src, "--out", out)
    check(rc == 0, "converter failed: %s" % err.strip())
    tensors = expected_tensors(model)
    meta = check_file_matches(out, tensors, "F32", f32_bytes)
    check(meta is not None and list(meta) == META_KEYS, "metadata keys %s" % (meta and list(meta)))
    check(all(isinstance(v, str) for v in meta.values()), "metadata values must be strings")
    want = {"architecture": "mobilenet_v3_small", "num_classes": "1000",
            "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "resize": "256",
            "crop": "224", "padding": "torch", "source": "ms.pth",
            "license": ct.TORCHVISION_LICENSE, "sha256": ct.sha256_file(src)}
    check(dict(meta) == want, "metadata %s, want %s" % (dict(meta), want))
    # The shared reader agrees and the values load back into the torchvision model unchanged.
    st = safetensors_io.load_file(out)
    back = {k: torch.from_numpy(v.copy()) for k, v in st.tensors_f32().items()}
    check(st.metadata == want, "reader metadata differs")
    fresh = ct.build_model("mobilenet_v3_small", 1000)
    missing, unexpected = fresh.load_state_dict(back, strict=False)
    check(not unexpected and all(k.endswith("num_batches_tracked") for k in missing),
          "load back: missing %s unexpected %s" % (missing, unexpected))
    for k, v in tensors.items():
        check(torch.equal(fresh.state_dict()[k], v), "%s differs after load back" % k)


def case_roundtrip_full_pickled_model(tmp):
    import torch

    model = random_model("shufflenet_v2_x1_0", seed=2)
    src = os.path.join(tmp, "full.pth")
    torch.save(model, src)
    out = os.path.join(tmp, "full.safetensors")
    rc, _, err = run_cli("--arch", "shufflenet_v2_x1_0", "--src", src, "--out", out,
                         "--num-classes", "1000")
    check(rc == 0, "converter failed: %s" % err.strip())
    check_file_matches(out, expected_tensors(model), "F32", f32_bytes)
    # A training checkpoint: {"state_dict": ...} saved from DataParallel ("module." prefixes).
    wrapped = os.path.join(tmp, "wrapped.pth")
    torch.save({"epoch": 3, "state_dict": collections.OrderedDict(
        ("module." + k, v) for k, v in model.state_dict().items())}, wrapped)
    out2 = os.path.join(tmp, "wrapped.safetensors")
    rc, err = run_main(["--arch", "shufflenet_v2_x1_0", "--src", wrapped, "--out", out2])
    check(rc == 0, "wrapped checkpoint: %s" % err.strip())
    check_file_matches(out2, expected_tensors(model), "F32", f32_bytes)


def case_f16_bf16_file_rounding(tmp):
    import torch

    model = random_model(seed=3)
    src = os.path.join(tmp, "r.pth")
    torch.save(model.state_dict(), src)
    tensors = expected_tensors(model)
    for dtype, name, enc in (("f16", "F16", torch_f16_bytes), ("bf16", "BF16", torch_bf16_bytes)):
        out = os.path.join(tmp, "r.%s.safetensors" % dtype)
        rc, _, err = run_cli("--arch", "mobilenet_v3_small", "--src", src, "--out", out,
                             "--dtype", dtype)
        check(rc == 0, "%s: converter failed: %s" % (dtype, err.strip()))
        check_file_matches(out, tensors, name, enc)


def case_rounding_edge_values(tmp):
    """Ties, subnormals, signed zero, inf/nan and overflow, bit-compared with torch's conversions."""
    import numpy as np
    import torch
    import safetensors_io as sio

    vals = [0.0, -0.0, 1.0, -2.5, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8,
            65504.0, 6e-8, 3e-8, 1e-40, -1e-45, 3.0e38, float("inf"), float("-inf"),
            0.1, 1 / 3, -123.456]
    rng = np.random.default_rng(5)
    a = np.concatenate([np.array(vals, dtype=np.float32),
                        (rng.standard_normal(4096) * 10.0 ** rng.integers(-8, 4, 4096))
                        .astype(np.float32)])
    t = torch.from_numpy(a)
    bf = sio.f32_to_bf16_bits(a)
    check(np.array_equal(bf, t.bfloat16().view(torch.int16).numpy().view(np.uint16)),
          "bf16 bits differ from torch's")
    check(np.array_equal(sio.bf16_bits_to_f32(bf), t.bfloat16().float().numpy()),
          "bf16 -> f32 differs from torch's")
    small = a[np.abs(a) <= 65504.0]
    h = sio.f32_to_f16_bits(small)
    check(np.array_equal(h, torch.from_numpy(small).half().view(torch.int16).numpy()
                         .view(np.uint16)), "f16 bits differ from torch's")
    nan = sio.f32_to_bf16_bits(np.array([float("nan")], dtype=np.float32))
    check(np.isnan(sio.bf16_bits_to_f32(nan))[0], "bf16 NaN did not stay NaN")
    try:
        sio.f32_to_f16_bits(np.array([1e5], dtype=np.float32))
        check(False, "1e5 written as F16 without an error")
    except sio.SafetensorsError:
        pass


def case_reader_rejects_malformed(tmp):
    import numpy as np
    import safetensors_io as sio

    good = os.path.join(tmp, "good.safetensors")
    sio.save_file(good, collections.OrderedDict([("a", np.ones((2, 3), np.float32)),
                                                 ("b", np.zeros(5, np.float32))]), {"k": "v"})
    header, start, data = parse_raw(good)
    check(sio.load_file(good).f32("a").shape == (2, 3), "good file did not read back")

    def write(name, hdr, body=data, raw_len=None):
        text = json.dumps(hdr).encode()
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text) if raw_len is None else raw_len) + text + body)
        return path

    bad = {
        "header_len_past_eof": write("l.st", header, raw_len=1 << 40),
        "not_json": os.path.join(tmp, "nj.st"),
        "bad_dtype": write("d.st", dict(header, a=dict(header["a"], dtype="I8"))),
        "size_mismatch": write("s.st", dict(header, a=dict(header["a"], shape=[2, 4]))),
        "overlap": write("o.st", dict(header, b=dict(header["b"], data_offsets=[20, 40]))),
        "trailing_bytes": write("t.st", header, body=data + b"\0" * 4),
        "metadata_not_strings": write("m.st", dict(header, __metadata__={"k": 1})),
    }
    with open(bad["not_json"], "wb") as f:
        f.write(struct.pack("<Q", 4) + b"{{{{")
    for what, path in bad.items():
        try:
            sio.load_file(path)
            check(False, "%s: accepted" % what)
        except sio.SafetensorsError:
            pass


def case_arch_table_matches_torchvision(tmp):
    """URLs, published hash prefixes and preprocessing agree with torchvision's own IMAGENET1K_V1
    weight entries (inception's mean/std excepted: see case_inception_transform_input)."""
    import re
    from torchvision.models import get_weight
    import convert_torchvision as ct

    enums = {"mobilenet_v3_large": "MobileNet_V3_Large_Weights",
             "mobilenet_v3_small": "MobileNet_V3_Small_Weights",
             "shufflenet_v2_x1_0": "ShuffleNet_V2_X1_0_Weights", "alexnet": "AlexNet_Weights",
             "inception_v3": "Inception_V3_Weights"}
    check(list(ct.ARCHS) == list(enums), "architectures %s" % list(ct.ARCHS))
    for name, arch in ct.ARCHS.items():
        w = get_weight(enums[name] + ".IMAGENET1K_V1")
        check(arch.url == w.url, "%s: url %s, torchvision has %s" % (name, arch.url, w.url))
        check(re.search(r"-([0-9a-f]+)\.pth$", w.url).group(1) == arch.hash_prefix,
              "%s: hash prefix %s not the one in %s" % (name, arch.hash_prefix, w.url))
        tf = w.transforms()
        check([arch.resize] == list(tf.resize_size) and [arch.crop] == list(tf.crop_size),
              "%s: resize/crop %d/%d vs %s/%s" % (name, arch.resize, arch.crop, tf.resize_size,
                                                  tf.crop_size))
        meta = ct.build_metadata(name, 1000, "x", "0" * 64)
        if name == "inception_v3":
            check(meta["mean"] == "0.5,0.5,0.5" and meta["std"] == "0.5,0.5,0.5",
                  "inception mean/std %s/%s" % (meta["mean"], meta["std"]))
            check(meta["resize"] == "342" and meta["crop"] == "299", "inception resize/crop")
        else:
            check(tuple(tf.mean) == arch.mean and tuple(tf.std) == arch.std,
                  "%s: mean/std differ from torchvision's" % name)
            check(meta["mean"] == "0.485,0.456,0.406" and meta["std"] == "0.229,0.224,0.225",
                  "%s: mean/std %s/%s" % (name, meta["mean"], meta["std"]))


def case_inception_transform_input(tmp):
    """transform_input=True on ImageNet-normalized pixels == transform_input=False on pixels
    normalized with 0.5/0.5, so the converter's 0.5 metadata serves torchvision's inception weights."""
    import torch
    import torchvision
    import gen_reference as gr

    torch.manual_seed(4)
    with_ti = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=True,
                                              init_weights=False).eval()
    for p in with_ti.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(4)
    pixels = torch.nn.functional.interpolate(torch.rand(3, 3, 16, 16, generator=gen),
                                             size=(299, 299), mode="bilinear", align_corners=False)
    imagenet = torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    half = torchvision.transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    x_imagenet, x_half = imagenet(pixels), half(pixels)
    # Default-initialised logits barely depend on the input: calibrate like the generator does.
    gr.randomize(with_ti, with_ti.fc, x_imagenet, gen)
    without = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=False,
                                              init_weights=False).eval()
    without.load_state_dict(with_ti.state_dict())
    d_in = float((with_ti._transform_input(x_imagenet) - x_half).abs().max())
    check(d_in < 1e-5, "transform_input(x) differs from 0.5/0.5 normalization by %g" % d_in)
    with torch.inference_mode():
        a = with_ti(x_imagenet)
        b = without(x_half)
        wrong = without(x_imagenet)  # the mistake the metadata prevents
    scale = float(b.abs().max())
    check(scale > 0, "degenerate logits")
    d = float((a - b).abs().max())
    print("# inception: max|logit| %.3g, |transform_input - 0.5 normalization| %.3g, without "
          "the 0.5 metadata %.3g" % (scale, d, float((wrong - a).abs().max())))
    check(d <= 1e-3 * scale, "logits differ by %g (scale %g)" % (d, scale))
    d_wrong = float((wrong - a).abs().max())
    check(d_wrong > 100 * max(d, 1e-7 * scale), "ImageNet normalization without transform_input "
          "gives the same logits (%g): the check would not detect the mistake" % d_wrong)


def case_download_offline_message(tmp):
    import convert_torchvision as ct

    dl, out = os.path.join(tmp, "dl"), os.path.join(tmp, "out")
    rc, _, err = run_cli("--all", "--download-dir", dl, "--out-dir", out,
                         "--base-url", "http://127.0.0.1:1/models")
    check(rc != 0, "exit status 0 with an unreachable server")
    check(ct.OFFLINE_HINT in err, "offline message missing from stderr: %r" % err)
    check("Traceback" not in err, "traceback instead of a message: %r" % err)
    left = os.listdir(dl) if os.path.isdir(dl) else []
    check(not left, "files left in the download dir: %s" % left)


def case_download_verifies_hash(tmp):
    """file:// stands in for the server: a wrong file is rejected by its sha256 prefix, the right
    one is accepted and then found in the download dir without fetching again."""
    import torch
    import convert_torchvision as ct

    mirror = os.path.join(tmp, "mirror")
    os.makedirs(mirror)
    arch = ct.ARCHS["mobilenet_v3_small"]
    official = os.path.join(mirror, os.path.basename(arch.url))
    torch.save(random_model(seed=6).state_dict(), official)
    digest = ct.sha256_file(official)
    dl = os.path.join(tmp, "dl")
    try:
        ct.download(arch.name, dl, "file://" + mirror)
        check(False, "a file whose sha256 does not start with %s was accepted" % arch.hash_prefix)
    except ct.ConvertError as e:
        check("does not start with the published prefix" in str(e), "message: %s" % e)
    check(not os.listdir(dl), "rejected download left files: %s" % os.listdir(dl))
    saved = ct.ARCHS[arch.name]
    ct.ARCHS[arch.name] = saved._replace(hash_prefix=digest[:10])
    try:
        path, url = ct.download(arch.name, dl, "file://" + mirror)
        check(ct.sha256_file(path) == digest, "downloaded file differs")
        os.unlink(official)  # a second call must use the verified local copy
        path2, _ = ct.download(arch.name, dl, "file://" + mirror)
        check(path2 == path, "second download did not reuse %s" % path)
        out = os.path.join(tmp, "dl.safetensors")
        meta = ct.convert_file(arch.name, path, out, source=url)
        check(meta["source"] == url and meta["sha256"] == digest, "metadata %s" % dict(meta))
    finally:
        ct.ARCHS[arch.name] = saved


def run_main(args):
    """The CLI in-process (a subprocess per error case would re-import torch each time)."""
    import contextlib
    import io
    import convert_torchvision as ct

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = ct.main(args)
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return rc, err.getvalue()


def case_errors_bad_input(tmp):
    import torch

    sd_path = os.path.join(tmp, "ms.pth")
    model = random_model(seed=7)
    torch.save(model.state_dict(), sd_path)
    garbage = os.path.join(tmp, "garbage.pth")
    with open(garbage, "wb") as f:
        f.write(os.urandom(4096))
    missing = os.path.join(tmp, "missing.pth")
    sd = model.state_dict()
    del sd["features.3.block.0.1.running_var"]
    torch.save(sd, missing)
    wrong_shape = os.path.join(tmp, "wrong_shape.pth")
    sd = model.state_dict()
    sd["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(sd, wrong_shape)
    not_sd = os.path.join(tmp, "list.pth")
    torch.save([1, 2, 3], not_sd)
    out = os.path.join(tmp, "never.safetensors")
    cases = [
        (["--arch", "mobilenet_v3_small", "--src", garbage], "cannot load as a PyTorch checkpoint"),
        (["--arch", "mobilenet_v3_small", "--src", os.path.join(tmp, "nope.pth")], "no such file"),
        (["--arch", "resnet50", "--src", sd_path], "unknown architecture 'resnet50'"),
        (["--arch", "shufflenet_v2_x1_0", "--src", sd_path], "not a checkpoint of shufflenet"),
        (["--arch", "mobilenet_v3_small", "--src", missing], "1 missing"),
        (["--arch", "mobilenet_v3_small", "--src", wrong_shape], "wrong shape"),
        (["--arch", "mobilenet_v3_small", "--src", sd_path, "--num-classes", "1001"],
         "--num-classes 1001"),
        (["--arch", "mobilenet_v3_small", "--src", not_sd], "not a state_dict"),
    ]
    for args, want in cases:
        rc, err = run_main(args + ["--out", out])
        check(rc == 1, "%s: exit %d, want 1 (%s)" % (args, rc, err.strip()))
        check(want in err, "%s: %r not in %r" % (args, want, err))
        check("Traceback" not in err, "%s: traceback: %s" % (args, err))
        check(not os.path.exists(out), "%s: output written despite the error" % args)
    rc, err = run_main(["--arch", "alexnet"])
    check(rc == 2 and "need --arch, --src and --out" in err, "usage error: %d %r" % (rc, err))


def case_tf_same_padding_with_real_weights(tmp):
    """The generator's TF "SAME" padding is the one the real TF-trained mobilenet_v3_small in
    ../shared was trained with: it classifies sample photos better than torch padding does."""
    import torch
    import torchvision.transforms as T
    from PIL import Image
    import gen_reference as gr
    import safetensors_io as sio

    check(gr.tf_same_pad(224, 3, 2) == (0, 1) and gr.tf_same_pad(112, 5, 2) == (1, 2)
          and gr.tf_same_pad(7, 3, 1) == (1, 1) and gr.tf_same_pad(7, 1, 2) == (0, 0),
          "tf_same_pad arithmetic")
    weights = os.path.join(SHARED, "weights", "mobilenet_v3_small.safetensors")
    labels = os.path.join(SHARED, "data", "imagenet-sample", "labels.tsv")
    if not (os.path.isfile(weights) and os.path.isfile(labels)):
        raise Skip("../shared weights/photos absent")
    st = sio.load_file(weights)
    check(st.metadata.get("padding") == "tf_same" and st.metadata.get("num_classes") == "1001",
          "shared metadata %s" % st.metadata)
    sd = {k: torch.from_numpy(v.copy()) for k, v in st.tensors_f32().items()}
    with open(labels) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    rows = rows[::10]  # 100 photos, one class in ten
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    batch = []
    for name, *_ in rows:
        with Image.open(os.path.join(SHARED, "data", "imagenet-sample", name)) as img:
            batch.append(tf(img.convert("RGB")))
    x = torch.stack(batch)
    truth = torch.tensor([int(r[1]) for r in rows])
    top1 = {}
    for tf_same in (True, False):
        net = gr.Net("m", "mobilenet_v3_small", 0, 1001, tf_same, None, None)
        model = gr.build_net(net)
        model.load_state_dict(sd, strict=False)
        with torch.inference_mode():
            pred = model(x)[:, 1:].argmax(1)  # drop the background class
        top1[tf_same] = float((pred == truth).float().mean())
    print("# top-1 on %d photos: tf_same %.3f, torch padding %.3f" % (len(rows), top1[True],
                                                                      top1[False]))
    check(top1[True] >= 0.65, "tf_same top-1 %.3f, README says ~0.76" % top1[True])
    check(top1[True] > top1[False] + 0.05, "tf_same padding (%.3f) not better than torch padding "
          "(%.3f)" % (top1[True], top1[False]))


def case_shared_shufflenet_readable(tmp):
    """The reader handles a safetensors file written by another tool; all tensors load into
    torchvision's shufflenet_v2_x1_0."""
    import torch
    import convert_torchvision as ct
    import safetensors_io as sio

    path = os.path.join(SHARED, "weights", "shufflenet_v2_x1_0.safetensors")
    if not os.path.isfile(path):
        raise Skip("../shared weights absent")
    st = sio.load_file(path)
    model = ct.build_model("shufflenet_v2_x1_0", 1000)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in st.tensors_f32().items()}, strict=False)
    check(not unexpected and all(k.endswith("num_batches_tracked") for k in missing),
          "missing %s unexpected %s" % (missing[:3], unexpected[:3]))


CASES = [
    ("converter round-trip state_dict f32", case_roundtrip_state_dict_f32),
    ("converter round-trip full pickled model", case_roundtrip_full_pickled_model),
    ("converter f16/bf16 files round like torch", case_f16_bf16_file_rounding),
    ("safetensors_io f16/bf16 edge values", case_rounding_edge_values),
    ("safetensors_io rejects malformed files", case_reader_rejects_malformed),
    ("converter table matches torchvision weights", case_arch_table_matches_torchvision),
    ("inception transform_input == mean/std 0.5", case_inception_transform_input),
    ("make weights offline message", case_download_offline_message),
    ("download verifies the sha256 prefix", case_download_verifies_hash),
    ("converter errors on bad input", case_errors_bad_input),
    ("tf_same padding with real TF weights", case_tf_same_padding_with_real_weights),
    ("safetensors_io reads shared shufflenet", case_shared_shufflenet_readable),
]


def in_tmp(fn):
    def run():
        with tempfile.TemporaryDirectory(prefix="cnn-conv-test-") as tmp:
            return fn(tmp)
    return run


def main():
    why = testlib.have_torch()
    if why:
        testlib.skip_all([name for name, _ in CASES], why)
        return testlib.finish()
    import torch
    import torchvision
    print("# torch %s, torchvision %s" % (torch.__version__, torchvision.__version__))
    torch.set_num_threads(2)
    for name, fn in CASES:
        testlib.run_case(name, in_tmp(fn))
    return testlib.finish()


if __name__ == "__main__":
    sys.exit(main())
