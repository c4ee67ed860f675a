"""Minimal safetensors reader/writer (pure Python + numpy; Debian ships no python3-safetensors).

File layout: 8-byte little-endian header length N, N bytes of JSON header, then the data section.
The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
to the data section) plus an optional "__metadata__" object of string values. The writer pads the
header with spaces so the data section starts 8-byte aligned and lays tensors out back to back
(no holes, as the format requires), little-endian, in the order given.

Supported dtypes are the ones the C engine loads: F32, F16 and BF16. numpy has no bfloat16, so
BF16 data travels as uint16 bit patterns (round-to-nearest-even from float32).
"""

import json
import os
import struct

import numpy as np

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}
HEADER_MAX_BYTES = 100 << 20  # same sanity cap as the C loader
ALIGN = 8


class SafetensorsError(ValueError):
    """Malformed safetensors file or unwritable tensor."""


def f32_to_f16_bits(a):
    """float32 array -> IEEE half bit patterns (uint16), round-to-nearest-even.
    Raises if a finite value overflows to infinity (the file would silently lose it)."""
    a = np.asarray(a, dtype=np.float32)
    with np.errstate(over="ignore"):  # overflow is detected and reported just below
        h = a.astype(np.float16)
    bad = np.isfinite(a) & ~np.isfinite(h)
    if bad.any():
        raise SafetensorsError("value %g does not fit in F16" % float(a[bad].flat[0]))
    return h.view(np.uint16)


def f32_to_bf16_bits(a):
    """float32 array -> bfloat16 bit patterns (uint16), round-to-nearest-even; NaN stays a quiet NaN."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(a, dtype=np.float32))
    rounded = np.where(nan, (u >> 16) | 0x40, rounded)
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f16_bits_to_f32(bits):
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(np.float32)


def _encode(a, dtype):
    """float32-convertible array -> little-endian bytes of the given safetensors dtype."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return f32_to_f16_bits(a).astype("<u2").tobytes()
    if dtype == "BF16":
        return f32_to_bf16_bits(a).astype("<u2").tobytes()
    raise SafetensorsError("unsupported dtype %r (want one of %s)" % (dtype, ", ".join(DTYPE_BYTES)))


def write_atomic(path, chunks):
    """Write bytes (or a list of byte chunks) to a temporary name, fsync, and rename into place."""
    if isinstance(chunks, (bytes, bytearray)):
        chunks = [chunks]
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_file(path, tensors, metadata=None, dtype="F32"):
    """Write tensors (ordered mapping name -> float array) as one safetensors file of the given dtype.
    metadata values must be strings. The file is written to a temporary name and renamed into place."""
    if dtype not in DTYPE_BYTES:
        raise SafetensorsError("unsupported dtype %r (want one of %s)" % (dtype, ", ".join(DTYPE_BYTES)))
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError("metadata %r=%r: keys and values must be strings" % (k, v))
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, value in tensors.items():
        if name == "__metadata__":
            raise SafetensorsError("tensor name __metadata__ is reserved")
        arr = np.asarray(value)
        blob = _encode(arr, dtype)
        header[name] = {"dtype": dtype, "shape": [int(d) for d in arr.shape],
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % ALIGN)
    write_atomic(path, [struct.pack("<Q", len(text)), text] + blobs)


class SafetensorsFile:
    """A validated safetensors file held in memory.
    entries: name -> (dtype, shape tuple, (begin, end)) in file order; metadata: dict of strings;
    data_start: absolute file offset of the data section."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self._buf = f.read()
        self.path = path
        buf = self._buf
        if len(buf) < 8:
            raise SafetensorsError("%s: file too short for a header length" % path)
        (n_header,) = struct.unpack_from("<Q", buf, 0)
        if n_header > HEADER_MAX_BYTES or 8 + n_header > len(buf):
            raise SafetensorsError("%s: header length %d out of range" % (path, n_header))
        try:
            header = json.loads(buf[8:8 + n_header].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise SafetensorsError("%s: header is not valid JSON: %s" % (path, e)) from None
        if not isinstance(header, dict):
            raise SafetensorsError("%s: header is not a JSON object" % path)
        self.data_start = 8 + n_header
        self.metadata = header.pop("__metadata__", None) or {}
        if not isinstance(self.metadata, dict) or not all(
                isinstance(v, str) for v in self.metadata.values()):
            raise SafetensorsError("%s: __metadata__ must map strings to strings" % path)
        self.entries = {}
        ranges = []
        for name, e in header.items():
            if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
                raise SafetensorsError("%s: tensor %s: bad entry %r" % (path, name, e))
            dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
            if dtype not in DTYPE_BYTES:
                raise SafetensorsError("%s: tensor %s: unsupported dtype %r" % (path, name, dtype))
            if not isinstance(shape, list) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                raise SafetensorsError("%s: tensor %s: bad shape %r" % (path, name, shape))
            if (not isinstance(offs, list) or len(offs) != 2
                    or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
                raise SafetensorsError("%s: tensor %s: bad data_offsets %r" % (path, name, offs))
            n_bytes = int(np.prod(shape, dtype=np.int64)) * DTYPE_BYTES[dtype]
            if offs[0] < 0 or offs[1] - offs[0] != n_bytes:
                raise SafetensorsError("%s: tensor %s: data_offsets %r do not match %s%r (%d bytes)"
                                       % (path, name, offs, dtype, shape, n_bytes))
            self.entries[name] = (dtype, tuple(shape), (offs[0], offs[1]))
            ranges.append((offs[0], offs[1], name))
        # The format forbids holes and overlaps: the ranges must tile the data section exactly.
        pos = 0
        for begin, end, name in sorted(ranges):
            if begin != pos:
                raise SafetensorsError("%s: tensor %s starts at %d, expected %d (hole or overlap)"
                                       % (path, name, begin, pos))
            pos = end
        if self.data_start + pos != len(buf):
            raise SafetensorsError("%s: data section is %d bytes, tensors cover %d"
                                   % (path, len(buf) - self.data_start, pos))

    def raw(self, name):
        """The tensor's bytes exactly as stored."""
        _, _, (begin, end) = self.entries[name]
        return self._buf[self.data_start + begin:self.data_start + end]

    def f32(self, name):
        """The tensor as a float32 numpy array of its shape."""
        dtype, shape, _ = self.entries[name]
        raw = self.raw(name)
        if dtype == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif dtype == "F16":
            a = f16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
        else:
            a = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
        return a.reshape(shape)

    def tensors_f32(self):
        """name -> float32 array for every tensor, in file order."""
        return {name: self.f32(name) for name in self.entries}


def load_file(path):
    return SafetensorsFile(path)
