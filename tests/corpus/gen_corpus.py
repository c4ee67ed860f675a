#!/usr/bin/python3
"""Generates the image robustness corpus: broken, hostile and unusual inputs for image_decode.

usage: gen_corpus.py OUT_DIR     (tests/run.sh uses $CNN_CACHE/corpus)

Writes one file per case plus OUT_DIR/manifest.json, a list of entries:
  name         file name in OUT_DIR
  expect       "ok", a cnn_status_str name ("decode", "too_large", "unsupported"), or "pil":
               the same outcome as PIL (decodes -> identical pixels, PIL raises -> "decode")
  orientation  EXIF orientation the decoder must report (expect "ok" or "pil")
  ref          how to get the expected pixels (expect "ok" or "pil"):
               "pil"  PIL Image.open -> ImageOps.exif_transpose -> convert("RGB")
               "npy"  NAME.expected.npy (for inputs where PIL differs on purpose or cannot decode)
  note         what the case is about
  pil_differs  present when PIL's outcome differs on purpose (the reason); otherwise an expected
               error means PIL raises too, and "ok" with ref "pil" means PIL decodes the same pixels
Everything is deterministic (fixed seeds), made with PIL and raw bytes.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

JPEG_SOI = b"\xff\xd8"


def photo(w, h, seed=0):
    """Asymmetric photo-like RGB content: gradients, a bright disc off-centre, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 100 * np.sin(x / 7.0 + y / 11.0)
    disc = ((x - 0.3 * w) ** 2 + (y - 0.25 * h) ** 2) < (0.15 * min(w, h)) ** 2 + 1
    img = np.stack([r, g, b], axis=-1)
    img[disc] = [250, 240, 30]
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def save(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


# ---- JPEG helpers ----

def jpeg_segments(data):
    """[(marker, start, end)] of the segments before the first SOS (end exclusive), then SOS."""
    out, pos = [], 2
    while pos + 4 <= len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        out.append((marker, pos, pos + 2 + length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def jpeg_insert_after_soi(data, segment):
    return data[:2] + segment + data[2:]


def app1_exif(tiff):
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def tiff_block(entries, big_endian=False, next_ifd=0, ifd0=8, count=None, tail=b""):
    """TIFF header + IFD0 of (tag, type, count, value_bytes4) entries."""
    e = ">" if big_endian else "<"
    head = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, ifd0)
    if 8 <= ifd0 <= 64:  # a bogus far offset gets no padding: the IFD follows the header
        head += b"\0" * (ifd0 - 8)
    n = len(entries) if count is None else count
    body = struct.pack(e + "H", n)
    for tag, typ, cnt, val in entries:
        body += struct.pack(e + "HHI", tag, typ, cnt) + val
    return head + body + struct.pack(e + "I", next_ifd) + tail


def short_val(v, big_endian=False):
    return struct.pack((">" if big_endian else "<") + "HH", v, 0)


def orientation_entry(v, big_endian=False):
    return (0x0112, 3, 1, short_val(v, big_endian))


# ---- PNG helpers ----

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_SIG = b"\x89PNG\r\n\x1a\n"


def png_raw(w, h, bit_depth, color_type, idat, extra=b""):
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return PNG_SIG + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat) + \
        png_chunk(b"IEND", b"")


def png_chunks(data):
    out, pos = [], 8
    while pos + 8 <= len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        out.append((data[pos + 4:pos + 8], pos, pos + 12 + n))
        pos += 12 + n
    return out


# ---- WebP helpers ----

def riff_chunk(fourcc, data):
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    manifest = []

    def add(name, data, expect, note, orientation=1, ref="pil", expected=None, pil_differs=None):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        entry = {"name": name, "expect": expect, "note": note}
        if expect in ("ok", "pil"):
            entry["orientation"] = orientation
            entry["ref"] = ref
        if pil_differs:
            entry["pil_differs"] = pil_differs
        if expected is not None:
            np.save(os.path.join(out_dir, name + ".expected.npy"), expected)
        manifest.append(entry)

    base = photo(96, 64, 1)
    base_im = Image.fromarray(base)

    # ---- not images / wrong magic ----
    add("empty.bin", b"", "decode", "0 bytes")
    add("one_byte_ff.bin", b"\xff", "decode", "1 byte: start of the JPEG signature")
    add("one_byte_a.bin", b"A", "unsupported", "1 byte, no known signature")
    add("text.txt", b"hello, this is not an image\n", "unsupported", "plain text")
    add("gif.gif", save(base_im.convert("P"), "GIF"), "unsupported", "GIF (valid, unsupported)",
        pil_differs="PIL reads GIF; the service takes JPEG/PNG/WebP only")
    add("bmp.bmp", save(base_im, "BMP"), "unsupported", "BMP (valid, unsupported)",
        pil_differs="PIL reads BMP; the service takes JPEG/PNG/WebP only")
    add("riff_wave.wav", b"RIFF\x24\0\0\0WAVEfmt " + b"\0" * 28, "unsupported", "RIFF but not WebP")

    # ---- JPEG: variants PIL decodes ----
    jpg = save(base_im, "JPEG", quality=90)
    add("jpeg_baseline.jpg", jpg, "ok", "baseline 4:2:0")
    add("jpeg_444.jpg", save(base_im, "JPEG", quality=95, subsampling=0), "ok", "baseline 4:4:4")
    add("jpeg_422.jpg", save(base_im, "JPEG", quality=85, subsampling=1), "ok", "baseline 4:2:2")
    prog = save(base_im, "JPEG", quality=90, progressive=True)
    add("jpeg_progressive.jpg", prog, "ok", "progressive")
    add("jpeg_optimized.jpg", save(base_im, "JPEG", quality=75, optimize=True), "ok",
        "optimized Huffman tables")
    add("jpeg_gray.jpg", save(base_im.convert("L"), "JPEG", quality=90), "ok", "grayscale")
    add("jpeg_cmyk.jpg", save(base_im.convert("CMYK"), "JPEG", quality=90), "ok",
        "CMYK (Adobe inverted), converted as PIL's convert('RGB')")
    add("jpeg_1x1.jpg", save(Image.new("RGB", (1, 1), (200, 30, 90)), "JPEG"), "ok", "1x1")
    add("jpeg_10000x1.jpg", save(Image.fromarray(photo(10000, 1, 2)), "JPEG"), "ok", "10000x1")
    add("jpeg_1x10000.jpg", save(Image.fromarray(photo(1, 10000, 3)), "JPEG"), "ok", "1x10000")
    add("jpeg_odd_size.jpg", save(Image.fromarray(photo(333, 257, 4)), "JPEG"), "ok",
        "odd dimensions (DCT scaling rounds up)")
    add("jpeg_trailing_garbage.jpg", jpg + b"garbage after EOI" * 10, "ok", "bytes after EOI")
    add("jpeg_junk_before_eoi.jpg", jpg[:-2] + b"\x12\x34\x56" + jpg[-2:], "ok",
        "extraneous bytes before EOI (libjpeg warning, tolerated like PIL)")
    segs = jpeg_segments(jpg)
    dqt_end = [e for m, s, e in segs if m == 0xDB][-1]
    add("jpeg_fill_bytes.jpg", jpg[:dqt_end] + b"\xff\xff\xff" + jpg[dqt_end:], "ok",
        "0xFF fill bytes before a marker")

    # ---- JPEG: truncated, header only, bogus ----
    sos_start, sos_end = [(s, e) for m, s, e in segs if m == 0xDA][0]
    for pct in (10, 50, 90):
        add(f"jpeg_trunc_{pct}pct.jpg", jpg[:len(jpg) * pct // 100], "decode",
            f"truncated at {pct}% (refused, as PIL does by default)")
    add("jpeg_trunc_no_eoi.jpg", jpg[:-2], "decode", "only the EOI marker missing (PIL refuses)")
    add("jpeg_trunc_1byte_eoi.jpg", jpg[:-1], "decode", "half of the EOI marker")
    add("jpeg_header_only.jpg", jpg[:sos_end], "decode", "headers up to SOS, no scan data")
    add("jpeg_header_eoi.jpg", jpg[:sos_end] + b"\xff\xd9", "pil", "headers then EOI, no data")
    add("jpeg_progressive_trunc50.jpg", prog[:len(prog) // 2], "decode", "progressive, truncated")
    # A recoverable warning (junk before a marker between scans) followed by a fatal error (a
    # later DHT with an invalid class): TurboJPEG reports both as a "warning", the decoder must
    # still refuse the file.
    later = [i for i in range(len(prog) - 4) if prog[i] == 0xFF and prog[i + 1] == 0xC4 and
             i > [s for m, s, e in jpeg_segments(prog) if m == 0xDA][0]]
    warn_fatal = bytearray(prog)
    warn_fatal[later[-1] + 4] = 0x7F
    first_after_scan = later[0]
    warn_fatal[first_after_scan:first_after_scan] = b"\x12\x34"
    add("jpeg_warning_then_fatal.jpg", bytes(warn_fatal), "decode",
        "progressive: extraneous bytes (warning) then an invalid DHT (fatal)")
    add("jpeg_soi_only.jpg", JPEG_SOI, "decode", "SOI marker only")
    add("jpeg_no_sof.jpg", jpg[:segs[0][2]] + b"\xff\xd9", "decode", "SOI, APP0, EOI: no frame")
    sof = [(s, e) for m, s, e in segs if m in (0xC0, 0xC1, 0xC2)][0][0]
    huge = bytearray(jpg)
    huge[sof + 5:sof + 9] = struct.pack(">HH", 65535, 65535)
    add("jpeg_65535x65535.jpg", bytes(huge), "too_large", "SOF claims 65535x65535")
    add("jpeg_65535x65535_header.jpg", bytes(huge[:sos_end]), "too_large",
        "SOF claims 65535x65535, file cut after the headers")
    big = bytearray(jpg)
    big[sof + 5:sof + 9] = struct.pack(">HH", 8000, 7000)
    add("jpeg_56mp_claim.jpg", bytes(big), "too_large", "8000x7000 claimed: above the 50 MP cap",
        pil_differs="PIL's own bomb limit is 179 MP; it decodes this with the missing data grey")
    zero = bytearray(jpg)
    zero[sof + 5:sof + 7] = struct.pack(">H", 0)
    add("jpeg_zero_height.jpg", bytes(zero), "too_large", "SOF height 0 (DNL)")

    dht = [(s, e) for m, s, e in segs if m == 0xC4]
    bogus = bytearray(jpg)
    bogus[dht[0][0] + 4] = 0x7F  # invalid table class/id
    add("jpeg_dht_bogus_class.jpg", bytes(bogus), "decode", "DHT with an invalid class/id")
    bogus = bytearray(jpg)
    bogus[dht[0][0] + 5:dht[0][0] + 21] = b"\xff" * 16  # code counts far beyond 256
    add("jpeg_dht_bogus_counts.jpg", bytes(bogus), "decode", "DHT code counts overflow")
    rng = np.random.default_rng(7)
    for i in range(4):
        bad = bytearray(jpg)
        s, e = dht[i % len(dht)]
        for _ in range(3):
            pos = int(rng.integers(s + 21, e))
            bad[pos] = int(rng.integers(0, 256))
        add(f"jpeg_dht_corrupt_{i}.jpg", bytes(bad), "pil", "random bytes in Huffman symbols")
    for i in range(4):
        bad = bytearray(jpg)
        for _ in range(2 + 3 * i):
            pos = int(rng.integers(sos_end, len(jpg) - 2))
            bad[pos] = int(rng.integers(0, 255))
        add(f"jpeg_entropy_corrupt_{i}.jpg", bytes(bad), "pil", "random bytes in scan data")
    bad = bytearray(jpg)
    dqt = [(s, e) for m, s, e in segs if m == 0xDB][0]
    bad[dqt[0] + 2:dqt[0] + 4] = struct.pack(">H", 0xFFF0)
    add("jpeg_dqt_length_oob.jpg", bytes(bad), "decode", "DQT length past the end of the file")

    # ---- JPEG: EXIF orientation ----
    jpg_exif_base = save(Image.fromarray(photo(80, 48, 5)), "JPEG", quality=92)
    for o in range(1, 9):
        tiff = tiff_block([(0x010F, 2, 4, b"cam\0"), orientation_entry(o)])
        add(f"jpeg_exif_o{o}.jpg", jpeg_insert_after_soi(jpg_exif_base, app1_exif(tiff)), "ok",
            f"EXIF orientation {o} (II)", orientation=o)
    for o in (3, 6):
        tiff = tiff_block([orientation_entry(o, True)], big_endian=True)
        add(f"jpeg_exif_be_o{o}.jpg", jpeg_insert_after_soi(jpg_exif_base, app1_exif(tiff)), "ok",
            f"EXIF orientation {o} (MM)", orientation=o)
    big_o6 = save(Image.fromarray(photo(640, 480, 6)), "JPEG", quality=90)
    add("jpeg_exif_o6_640x480.jpg",
        jpeg_insert_after_soi(big_o6, app1_exif(tiff_block([orientation_entry(6)]))), "ok",
        "portrait phone photo stored landscape with orientation 6", orientation=6)

    def exif_case(name, tiff, orientation, note, pil_differs=None):
        # Where PIL cannot open the file at all, the expected pixels are PIL's decode of the same
        # JPEG without the broken EXIF segment.
        add(name, jpeg_insert_after_soi(jpg_exif_base, app1_exif(tiff)), "ok", note,
            orientation=orientation, ref="npy" if pil_differs else "pil",
            expected=np.array(Image.open(io.BytesIO(jpg_exif_base)).convert("RGB"))
            if pil_differs else None, pil_differs=pil_differs)

    exif_case("jpeg_exif_loop_next.jpg", tiff_block([orientation_entry(6)], next_ifd=8), 6,
              "IFD0's next-IFD offset points to IFD0 itself")
    exif_case("jpeg_exif_loop_subifd.jpg",
              tiff_block([orientation_entry(8), (0x8769, 4, 1, struct.pack("<I", 8))]), 8,
              "Exif sub-IFD pointer back to IFD0")
    exif_case("jpeg_exif_ifd0_oob.jpg", tiff_block([orientation_entry(6)], ifd0=0x7FFFFF00),
              1, "IFD0 offset far outside the segment")
    exif_case("jpeg_exif_ifd0_in_header.jpg", tiff_block([orientation_entry(6)], ifd0=2), 1,
              "IFD0 offset inside the TIFF header")
    t = tiff_block([orientation_entry(3)], count=0xFFFF)
    exif_case("jpeg_exif_count_huge.jpg", t[:8 + 2 + 12], 3,
              "IFD0 claims 65535 entries, one fits in the segment")
    exif_case("jpeg_exif_value9.jpg", tiff_block([orientation_entry(9)]), 1,
              "orientation value 9 (out of range)")
    exif_case("jpeg_exif_value0.jpg", tiff_block([orientation_entry(0)]), 1,
              "orientation value 0")
    exif_case("jpeg_exif_short3_oob.jpg",
              tiff_block([(0x0112, 3, 3, struct.pack("<I", 0xFFFFFFF0))]), 1,
              "orientation with count 3 and an out-of-range value offset")
    broken_meta = "PIL cannot open a JPEG whose EXIF block is unparsable; broken metadata is ignored"
    exif_case("jpeg_exif_tiff_truncated.jpg", b"II*\0", 1, "TIFF header cut short",
              pil_differs=broken_meta)
    exif_case("jpeg_exif_bad_magic.jpg", b"II\x2b\0\x08\0\0\0" + b"\0" * 6, 1, "TIFF magic 43",
              pil_differs=broken_meta)
    ifd1 = 8 + 2 + 12 + 4
    exif_case("jpeg_exif_ifd1_only.jpg",
              tiff_block([(0x010F, 2, 4, b"cam\0")], next_ifd=ifd1,
                         tail=struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, 3, 1) +
                         short_val(6) + struct.pack("<I", 0)), 1,
              "orientation only in IFD1 (the thumbnail's IFD): not applied")
    two = jpeg_insert_after_soi(jpg_exif_base, app1_exif(tiff_block([orientation_entry(6)])))
    two = jpeg_insert_after_soi(two, app1_exif(tiff_block([orientation_entry(3)])))
    add("jpeg_exif_two_app1.jpg", two, "ok", "two EXIF segments: the first one counts",
        orientation=3)
    oob_len = app1_exif(tiff_block([orientation_entry(6)]))
    oob_len = oob_len[:2] + struct.pack(">H", 0xFFFF) + oob_len[4:]
    add("jpeg_exif_segment_oob.jpg", jpeg_insert_after_soi(jpg_exif_base, oob_len), "decode",
        "APP1 length runs past the end of the file")

    # ---- PNG ----
    add("png_rgb8.png", save(base_im, "PNG"), "ok", "8-bit RGB")
    rgba = np.dstack([base, photo(96, 64, 9)[..., 0]])
    rgba[:16, :, 3] = 0
    add("png_rgba8.png", save(Image.fromarray(rgba, "RGBA"), "PNG"), "ok",
        "RGBA: alpha dropped like convert('RGB')")
    la = np.dstack([base[..., 0], base[..., 1]])
    add("png_la8.png", save(Image.fromarray(la, "LA"), "PNG"), "ok", "gray+alpha")
    add("png_gray8.png", save(base_im.convert("L"), "PNG"), "ok", "8-bit gray")
    add("png_gray1.png", save(base_im.convert("1"), "PNG"), "ok", "1-bit gray")
    gray = base_im.convert("L")
    for bits in (2, 4):
        levels = (1 << bits) - 1
        q = (np.array(gray).astype(np.int32) * levels + 127) // 255
        packed = []
        for row in q:
            bitsrow = 0
            nbits = 0
            out = bytearray()
            for v in row:
                bitsrow = (bitsrow << bits) | int(v)
                nbits += bits
                if nbits == 8:
                    out.append(bitsrow)
                    bitsrow = nbits = 0
            if nbits:
                out.append(bitsrow << (8 - nbits))
            packed.append(b"\0" + bytes(out))
        add(f"png_gray{bits}.png", png_raw(96, 64, bits, 0, zlib.compress(b"".join(packed))), "ok",
            f"{bits}-bit gray (scaled to 0..255)")
    add("png_palette.png", save(base_im.convert("P", palette=Image.ADAPTIVE, colors=50), "PNG"),
        "ok", "palette")
    pal = base_im.convert("P", palette=Image.ADAPTIVE, colors=16)
    add("png_palette_trns.png", save(pal, "PNG", transparency=bytes(range(0, 256, 16))), "ok",
        "palette with tRNS (transparency dropped)")
    add("png_palette_4bit.png", save(pal, "PNG", bits=4), "ok", "4-bit palette")
    rgb16 = (base.astype(np.uint16) * 257 + np.uint16(77))
    raw16 = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb16)
    add("png_rgb16.png", png_raw(96, 64, 16, 2, zlib.compress(raw16)), "ok",
        "16-bit RGB (high byte, as PIL)")
    rgba16 = np.dstack([rgb16, np.full((64, 96), 1000, np.uint16)])
    raw16a = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgba16)
    add("png_rgba16.png", png_raw(96, 64, 16, 6, zlib.compress(raw16a)), "ok", "16-bit RGBA")
    g16 = (np.array(gray).astype(np.uint16) * 256 + np.uint16(200))
    rawg16 = b"".join(b"\0" + row.astype(">u2").tobytes() for row in g16)
    add("png_gray16.png", png_raw(96, 64, 16, 0, zlib.compress(rawg16)), "ok",
        "16-bit gray", ref="npy",
        expected=np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, axis=2),
        pil_differs="PIL's convert('RGB') clips 16-bit gray to 255 (white); we keep the high byte")
    add("png_interlaced.png", png_interlaced(base), "ok", "Adam7 interlaced")
    add("png_1x1.png", save(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), "ok", "1x1")
    add("png_10000x1.png", save(Image.fromarray(photo(10000, 1, 10)), "PNG"), "ok", "10000x1")
    exif6 = b"Exif\0\0" + tiff_block([orientation_entry(6)])
    add("png_exif_o6.png", save(Image.fromarray(photo(80, 48, 11)), "PNG", exif=exif6), "ok",
        "eXIf chunk with orientation 6", orientation=6)
    png = save(base_im, "PNG")
    chunks = png_chunks(png)
    idat = [c for c in chunks if c[0] == b"IDAT"][0]
    add("png_no_iend.png", png[:chunks[-1][1]], "ok", "IEND missing (image data complete)")
    add("png_trunc_sig.png", png[:8], "decode", "signature only")
    add("png_trunc_ihdr.png", png[:20], "decode", "cut inside IHDR")
    add("png_header_only.png", png[:idat[1]], "decode", "IHDR (and other headers), no IDAT")
    for pct in (25, 50, 90):
        cut = idat[1] + 8 + (idat[2] - 12 - idat[1]) * pct // 100
        add(f"png_trunc_idat_{pct}pct.png", png[:cut], "decode", f"cut {pct}% into the IDAT data")
    bad = bytearray(png)
    bad[idat[1] + 8 + (idat[2] - idat[1]) // 2] ^= 0xFF
    add("png_idat_crc.png", bytes(bad), "decode", "flipped byte in IDAT: CRC mismatch",
        pil_differs="PIL does not check IDAT CRCs; libpng refuses corrupt critical chunks")
    bad = bytearray(png)
    ihdr_w = struct.unpack(">I", png[16:20])[0]
    bad[16:20] = struct.pack(">I", 0)
    bad[29:33] = struct.pack(">I", zlib.crc32(bytes(bad[12:29])))
    add("png_zero_width.png", bytes(bad), "too_large", "IHDR width 0")
    bad[16:24] = struct.pack(">II", 0xEFDEF31F, 0xD43E6027)
    bad[29:33] = struct.pack(">I", zlib.crc32(bytes(bad[12:29])))
    add("png_ihdr_4g_x_4g.png", bytes(bad), "too_large",
        "IHDR near 2^32 x 2^32: the pixel count overflows int64 (found by the fuzzer)")
    assert ihdr_w == 96
    # Decompression bomb: 20000x20000 1-bit all-zero image, ~50 MB of raw rows in a small file.
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 2500)
    idat_data = b"".join(comp.compress(row) for _ in range(20000)) + comp.flush()
    add("png_bomb_20000x20000.png", png_raw(20000, 20000, 1, 0, idat_data), "too_large",
        f"decompression bomb: 400 MP in {len(idat_data) // 1024} KiB")
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * 8000)
    idat_data = b"".join(comp.compress(row) for _ in range(7000)) + comp.flush()
    add("png_bomb_8000x7000_rgb.png", png_raw(8000, 7000, 8, 2, idat_data), "too_large",
        "56 MP RGB all-zero: just above the 50 MP cap",
        pil_differs="PIL's own bomb limit is 179 MP")
    ztxt = b"Comment\0\0" + zlib.compress(b"A" * (64 << 20), 9)
    small = np.full((8, 8, 3), 77, np.uint8)
    ztxt_png = png_raw(8, 8, 8, 2, zlib.compress(b"".join(b"\0" + r.tobytes() for r in small)),
                       extra=png_chunk(b"zTXt", ztxt))
    add("png_ztxt_bomb.png", ztxt_png, "ok",
        "zTXt inflating to 64 MiB: discarded unread", ref="npy", expected=small,
        pil_differs="PIL refuses text chunks that inflate beyond 1 MiB")
    add("png_bad_ihdr_depth.png", png_raw(8, 8, 3, 2, zlib.compress(b"\0" * 9 * 8)), "decode",
        "RGB with bit depth 3 (invalid)")

    # ---- WebP ----
    add("webp_lossy.webp", save(base_im, "WEBP", quality=80), "ok", "lossy VP8")
    add("webp_lossless.webp", save(base_im, "WEBP", lossless=True), "ok", "lossless VP8L")
    add("webp_alpha.webp", save(Image.fromarray(rgba, "RGBA"), "WEBP", quality=80), "ok",
        "lossy with alpha (dropped)")
    add("webp_1x1.webp", save(Image.new("RGB", (1, 1), (1, 2, 3)), "WEBP", lossless=True), "ok",
        "1x1")
    add("webp_exif_o8.webp", save(Image.fromarray(photo(80, 48, 12)), "WEBP", quality=90,
                                  exif=b"Exif\0\0" + tiff_block([orientation_entry(8)])), "ok",
        "EXIF chunk with orientation 8", orientation=8)
    webp = save(base_im, "WEBP", quality=80)
    add("webp_trunc_50pct.webp", webp[:len(webp) // 2], "decode", "truncated")
    add("webp_header_only.webp", webp[:30], "decode", "RIFF + chunk header only")
    frames = [Image.fromarray(photo(32, 32, s)) for s in (1, 2)]
    add("webp_animated.webp", save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "unsupported", "animated WebP",
        pil_differs="PIL decodes the first frame; the service takes still images")
    vp8x = struct.pack("<I", 0) + (16383).to_bytes(3, "little") + (16383).to_bytes(3, "little")
    body = b"WEBP" + riff_chunk(b"VP8X", vp8x)
    add("webp_16384x16384_claim.webp", b"RIFF" + struct.pack("<I", len(body)) + body,
        "too_large", "VP8X canvas 16384x16384, no image data")

    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"gen_corpus: {len(manifest)} files in {out_dir}")
    return 0


def png_interlaced(rgb):
    """Adam7-interlaced 8-bit RGB PNG (PIL cannot write interlaced PNGs)."""
    h, w, _ = rgb.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        raw += b"".join(b"\0" + r.tobytes() for r in sub)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + \
        png_chunk(b"IEND", b"")


if __name__ == "__main__":
    sys.exit(main())
