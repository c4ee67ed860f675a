"""Helpers shared by the Python bench scripts: the peers and PyTorch's thread configurations, the
fixed input, percentiles, load average, and the torchvision model built from a cnnserve safetensors
file (so every peer runs the same weights)."""

import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "deploy"))
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))

# With a time cap (--max-seconds), the timed passes still done: as BENCH_MIN_CAPPED_ITERS in
# server/bench_cli.c and MIN_CAPPED_ITERS in bench/peer_ort.js.
MIN_CAPPED_ITERS = 10

# The peers of `make bench` (key in the results, name in the report), ours first.
PEERS = (("ours", "ours"), ("onnxruntime", "ORT"), ("pytorch", "PyTorch"), ("xnnpack", "XNNPACK"))

# The models bench/peer_xnnpack.c builds (the mobile ones; the others show it as skipped).
XNNPACK_MODELS = ("mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v2_x1_0")

# PyTorch's thread configurations (one process each). Debian's torch runs its own parallel ops on
# libgomp and calls the pthread OpenBLAS, each with its own busy-waiting worker threads, so at N > 1
# threads no single setting is best for every model and load: every configuration is run and the
# fastest median is reported. Each sets torch's (OMP_NUM_THREADS and torch.set_num_threads) and
# OpenBLAS's thread counts explicitly. At 1 thread there is one configuration.
TORCH_CONFIGS = (
    ("A", "OpenBLAS N + OpenMP N", lambda n: {"OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n}),
    ("B", "A + OMP_WAIT_POLICY=PASSIVE",
     lambda n: {"OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n, "OMP_WAIT_POLICY": "PASSIVE"}),
    ("C", "OpenBLAS 1 + OpenMP N", lambda n: {"OPENBLAS_NUM_THREADS": 1, "OMP_NUM_THREADS": n}),
)


def best_config(configs):
    """Name of the configuration with the lowest median among {name: pooled run or {"error"}} (the
    first listed on a tie), or None when none has a result."""
    ok = [(r["median_ms"], i, name) for i, (name, r) in enumerate(configs.items()) if "median_ms" in r]
    return min(ok)[2] if ok else None


def fixed_input(size):
    """1 x 3 x size x size float32, x[i] = (i mod 251) / 125 - 1 in double then rounded: the exact
    values `cnnserve bench` (server/bench_cli.c) and bench/peer_ort.js use."""
    import numpy as np

    i = np.arange(3 * size * size, dtype=np.int64)
    return ((i % 251) / 125.0 - 1.0).astype(np.float32).reshape(1, 3, size, size)


def percentile(sorted_values, p):
    """p-th percentile (0..100) of sorted values, linear between closest ranks (numpy's default)."""
    n = len(sorted_values)
    pos = p / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def timing_stats(times_ms):
    """median/p10/p90/p99/min/max of a list of per-pass times in ms."""
    s = sorted(times_ms)
    return {"iters": len(s), "median_ms": percentile(s, 50), "p10_ms": percentile(s, 10), "p90_ms": percentile(s, 90),
            "p99_ms": percentile(s, 99), "min_ms": s[0], "max_ms": s[-1]}


def loadavg():
    """/proc/loadavg's three averages, or None."""
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except (OSError, ValueError):
        return None


def load_torch_model(arch, path, train=False):
    """The torchvision model of arch with the tensors of a cnnserve safetensors file. For inference: eval
    mode, gradients off, InceptionV3's auxiliary classifier built when the file has it. For training
    (train=True), as our training engine builds it: no auxiliary classifier (the file's AuxLogits.*
    tensors left out), train mode with BatchNorm frozen (eval mode), gradients on.
    Returns (model, input_size, num_classes)."""
    import torch

    import convert_torchvision
    import gen_reference
    import safetensors_io

    st = safetensors_io.load_file(path)
    num_classes = int(st.metadata.get("num_classes", "1000"))
    aux = not train and any(k.startswith("AuxLogits.") for k in st.entries)
    model = convert_torchvision.build_model(arch, num_classes, aux_logits=aux)
    if st.metadata.get("padding") == "tf_same":
        gen_reference.apply_tf_same(model)
    sd = {k: torch.as_tensor(v) for k, v in st.tensors_f32().items() if aux or not k.startswith("AuxLogits.")}
    model.load_state_dict(sd, strict=True)
    if train:
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    else:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return model, int(st.metadata.get("crop", "299" if arch == "inception_v3" else "224")), num_classes


def _openblas_lib():
    """The OpenBLAS library loaded into this process (ctypes handle), or None when none is loaded."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "libopenblas" in line and "/" in line})
    except OSError:
        return None
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
            handle.openblas_get_corename
        except (OSError, AttributeError):
            continue
        return handle
    return None


def openblas_corename():
    """Core name of the OpenBLAS loaded into this process (None when none is loaded): checks that the
    peer really runs the kernels OPENBLAS_CORETYPE asked for."""
    import ctypes

    lib = _openblas_lib()
    if lib is None:
        return None
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def openblas_num_threads():
    """Thread count of the OpenBLAS loaded into this process (None when none is loaded): checks that
    OPENBLAS_NUM_THREADS took effect."""
    lib = _openblas_lib()
    return int(lib.openblas_get_num_threads()) if lib is not None else None
