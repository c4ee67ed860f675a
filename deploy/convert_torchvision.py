#!/usr/bin/python3
"""Convert torchvision ImageNet checkpoints (.pth) to the safetensors files cnnserve loads.

  convert_torchvision.py --arch NAME --src FILE.pth --out FILE.safetensors [--dtype f32|f16|bf16]
                         [--num-classes N]
  convert_torchvision.py --all --download-dir D --out-dir D [--dtype ...] [--base-url URL]

Tensor names stay torchvision's state_dict keys (num_batches_tracked is dropped). __metadata__ (all
strings) carries architecture, num_classes, mean, std, resize, crop, padding, source, license and
the sha256 of the source checkpoint. The checkpoint is checked against the architecture's
torchvision model (every key present with the right shape, nothing extra) before anything is written.

Security note: a checkpoint that is not a plain state_dict (e.g. a full pickled model) can only be
loaded with full unpickling, which runs code from the file: convert only files you trust (official
downloads are verified against torchvision's published hash prefix).
"""

import argparse
import collections
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402  (sibling module, found via the path set just above)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's inception_v3 weights were trained with transform_input=True: they expect raw [0,1]
# pixels normalized with 0.5/0.5, which is what transform_input computes from ImageNet-normalized input.
HALF = (0.5, 0.5, 0.5)
DEFAULT_BASE_URL = "https://download.pytorch.org/models"
TORCHVISION_LICENSE = "BSD-3-Clause (torchvision)"
OFFLINE_HINT = ("make weights needs internet access to download.pytorch.org; point --weights-dir at "
                "an existing directory of safetensors files instead")
# curl exit codes that mean "could not reach the server" rather than "the server said no".
CURL_NETWORK_CODES = {5, 6, 7, 28, 35, 52, 55, 56}

Arch = collections.namedtuple(
    "Arch", "name url hash_prefix classifier mean std resize crop")

# Official torchvision 0.14 IMAGENET1K_V1 checkpoints; hash_prefix is the sha256 prefix torchvision
# publishes in the file name. classifier is the final layer's weight (gives num_classes).
ARCHS = collections.OrderedDict((a.name, a) for a in [
    Arch("mobilenet_v3_large", "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
         "8738ca79", "classifier.3.weight", IMAGENET_MEAN, IMAGENET_STD, 256, 224),
    Arch("mobilenet_v3_small", "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
         "047dcff4", "classifier.3.weight", IMAGENET_MEAN, IMAGENET_STD, 256, 224),
    Arch("shufflenet_v2_x1_0", "https://download.pytorch.org/models/shufflenetv2_x1-5666bf0f80.pth",
         "5666bf0f80", "fc.weight", IMAGENET_MEAN, IMAGENET_STD, 256, 224),
    Arch("alexnet", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
         "7be5be79", "classifier.6.weight", IMAGENET_MEAN, IMAGENET_STD, 256, 224),
    Arch("inception_v3", "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
         "0cc3c7bd", "fc.weight", HALF, HALF, 342, 299),
])

DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


class ConvertError(Exception):
    """A checkpoint, argument or download problem, reported to the user without a traceback."""


def get_arch(name):
    if name not in ARCHS:
        raise ConvertError("unknown architecture %r (known: %s)" % (name, ", ".join(ARCHS)))
    return ARCHS[name]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def format_floats(values):
    return ",".join("%g" % v for v in values)


def load_state_dict(src):
    """Read a checkpoint (state_dict, a dict wrapping one under "state_dict"/"model", or a full
    pickled nn.Module) and return an ordered name -> float32 tensor dict without num_batches_tracked."""
    import torch
    import pickle

    if not os.path.isfile(src):
        raise ConvertError("%s: no such file" % src)
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError):
        # Not a plain tensor container (e.g. a pickled model): fall back to full unpickling.
        try:
            obj = torch.load(src, map_location="cpu")
        except Exception as e:  # torch raises many unrelated types for a corrupt file
            raise ConvertError("%s: cannot load as a PyTorch checkpoint: %s" % (src, e)) from None
    except Exception as e:
        raise ConvertError("%s: cannot load as a PyTorch checkpoint: %s" % (src, e)) from None
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            inner = obj.get(wrapper)
            if isinstance(inner, torch.nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, dict):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj:
        raise ConvertError("%s: checkpoint holds %s, not a state_dict or model"
                           % (src, type(obj).__name__))
    sd = collections.OrderedDict()
    for key, value in obj.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise ConvertError("%s: entry %r is not a named tensor" % (src, key))
        if key.startswith("module."):  # saved from DataParallel
            key = key[len("module."):]
        if key.endswith("num_batches_tracked"):
            continue
        if not value.is_floating_point():
            raise ConvertError("%s: tensor %s has non-float dtype %s" % (src, key, value.dtype))
        sd[key] = value.detach().to(torch.float32).contiguous()
    return sd


def build_model(arch_name, num_classes, aux_logits=True):
    """torchvision model of the architecture without pretrained weights (for shape checks and tests)."""
    import torchvision

    arch = get_arch(arch_name)
    kwargs = {"weights": None, "num_classes": num_classes}
    if arch.name == "inception_v3":
        kwargs.update(aux_logits=aux_logits, transform_input=False, init_weights=False)
    return getattr(torchvision.models, arch.name)(**kwargs)


def check_state_dict(arch_name, sd, num_classes):
    """Every tensor of the torchvision model present with its shape, and nothing else. The inception
    auxiliary head is optional (it is not used for inference)."""
    arch = get_arch(arch_name)
    aux = any(k.startswith("AuxLogits.") for k in sd)
    expected = collections.OrderedDict(
        (k, tuple(v.shape)) for k, v in build_model(arch.name, num_classes, aux).state_dict().items()
        if not k.endswith("num_batches_tracked"))
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    wrong = ["%s: expected %s, got %s" % (k, list(expected[k]), list(sd[k].shape))
             for k in expected if k in sd and tuple(sd[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append("%d missing (%s)" % (len(missing), ", ".join(missing[:4])))
    if extra:
        problems.append("%d unexpected (%s)" % (len(extra), ", ".join(extra[:4])))
    if wrong:
        problems.append("%d with wrong shape (%s)" % (len(wrong), "; ".join(wrong[:4])))
    if problems:
        raise ConvertError("checkpoint does not match torchvision %s with %d classes: %s"
                           % (arch.name, num_classes, "; ".join(problems)))


def build_metadata(arch_name, num_classes, source, sha256, padding="torch", mean=None, std=None,
                   license=TORCHVISION_LICENSE):
    arch = get_arch(arch_name)
    if padding not in ("torch", "tf_same"):
        raise ConvertError("padding must be torch or tf_same, not %r" % padding)
    return collections.OrderedDict([
        ("architecture", arch.name),
        ("num_classes", str(num_classes)),
        ("mean", format_floats(mean or arch.mean)),
        ("std", format_floats(std or arch.std)),
        ("resize", str(arch.resize)),
        ("crop", str(arch.crop)),
        ("padding", padding),
        ("source", source),
        ("license", license),
        ("sha256", sha256),
    ])


def convert_file(arch_name, src, out, dtype="f32", num_classes=None, source=None, padding="torch",
                 mean=None, std=None, license=TORCHVISION_LICENSE):
    """Convert one checkpoint; returns the metadata written. source defaults to the official URL when
    src is the official file (name and hash prefix match), else to src's file name."""
    arch = get_arch(arch_name)
    if dtype not in DTYPES:
        raise ConvertError("unknown dtype %r (known: %s)" % (dtype, ", ".join(DTYPES)))
    sd = load_state_dict(src)
    if arch.classifier not in sd or sd[arch.classifier].dim() != 2:
        raise ConvertError("%s: no 2-D %s: not a checkpoint of %s" % (src, arch.classifier, arch.name))
    found = int(sd[arch.classifier].shape[0])
    if num_classes is not None and num_classes != found:
        raise ConvertError("%s: --num-classes %d but %s has %d outputs"
                           % (src, num_classes, arch.classifier, found))
    check_state_dict(arch.name, sd, found)
    digest = sha256_file(src)
    if source is None:
        official = os.path.basename(arch.url)
        if os.path.basename(src) == official and digest.startswith(arch.hash_prefix):
            source = arch.url
        else:
            source = os.path.basename(src)
    meta = build_metadata(arch.name, found, source, digest, padding, mean, std, license)
    try:
        safetensors_io.save_file(out, collections.OrderedDict(
            (k, v.numpy()) for k, v in sd.items()), meta, DTYPES[dtype])
    except (safetensors_io.SafetensorsError, OSError) as e:
        raise ConvertError("%s: %s" % (out, e)) from None
    return meta


def download(arch_name, download_dir, base_url=DEFAULT_BASE_URL):
    """Fetch the official checkpoint with curl (kept if already present and verified); returns
    (path, url). The sha256 must start with torchvision's published prefix."""
    arch = get_arch(arch_name)
    file_name = os.path.basename(arch.url)
    url = base_url.rstrip("/") + "/" + file_name
    path = os.path.join(download_dir, file_name)
    if os.path.isfile(path) and sha256_file(path).startswith(arch.hash_prefix):
        return path, url
    os.makedirs(download_dir, exist_ok=True)
    tmp = path + ".part"
    cmd = ["curl", "--fail", "--location", "--silent", "--show-error", "--connect-timeout", "20",
           "--retry", "2", "--output", tmp, url]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise ConvertError("curl is not installed; it is needed to download %s" % url) from None
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        last = (proc.stderr.strip().splitlines() or [""])[-1]  # --retry repeats the message
        detail = "downloading %s failed (curl exit %d: %s)" % (url, proc.returncode, last)
        if proc.returncode in CURL_NETWORK_CODES:
            detail = OFFLINE_HINT + "\n" + detail
        raise ConvertError(detail)
    digest = sha256_file(tmp)
    if not digest.startswith(arch.hash_prefix):
        os.unlink(tmp)
        raise ConvertError("%s: sha256 %s does not start with the published prefix %s"
                           % (url, digest, arch.hash_prefix))
    os.replace(tmp, path)
    return path, url


def convert_all(download_dir, out_dir, dtype="f32", base_url=DEFAULT_BASE_URL, log=print):
    """Download and convert every architecture into out_dir/NAME.safetensors."""
    os.makedirs(out_dir, exist_ok=True)
    for arch in ARCHS.values():
        path, url = download(arch.name, download_dir, base_url)
        out = os.path.join(out_dir, arch.name + ".safetensors")
        convert_file(arch.name, path, out, dtype, source=url)
        log("%s: %s -> %s" % (arch.name, url, out))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", help="architecture: " + ", ".join(ARCHS))
    p.add_argument("--src", help="torchvision checkpoint (.pth)")
    p.add_argument("--out", help="output .safetensors")
    p.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    p.add_argument("--num-classes", type=int, help="expected classifier outputs (checked)")
    p.add_argument("--all", action="store_true", help="download and convert all five models")
    p.add_argument("--download-dir", help="where --all keeps the downloaded .pth files")
    p.add_argument("--out-dir", help="where --all writes NAME.safetensors")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="download mirror for --all")
    args = p.parse_args(argv)
    if args.all:
        if not args.download_dir or not args.out_dir:
            p.error("--all needs --download-dir and --out-dir")
        if args.arch or args.src or args.out or args.num_classes is not None:
            p.error("--all takes no --arch/--src/--out/--num-classes")
    elif not (args.arch and args.src and args.out):
        p.error("need --arch, --src and --out (or --all)")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.all:
            convert_all(args.download_dir, args.out_dir, args.dtype, args.base_url)
        else:
            meta = convert_file(args.arch, args.src, args.out, args.dtype, args.num_classes)
            print("%s: %s -> %s (%s classes, %s)" % (args.arch, args.src, args.out,
                                                     meta["num_classes"], args.dtype))
    except ConvertError as e:
        print("convert_torchvision: error: %s" % e, file=sys.stderr)
        return 1
    except ImportError as e:
        print("convert_torchvision: error: PyTorch/torchvision are needed (%s); use /usr/bin/python3"
              % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
