"""The intake section of `make bench`: decode and preprocess ms per image size, cnnserve next to
PIL + torchvision in the same run.

Ours: the service's own per-stage timings (`timings_ms` decode and preprocess, the code path of
POST /v1/classify) from `cnnserve classify --json --threads 1` on the image repeated, with one
256/224 model (the decode is the server's: only the region the centre crop reads, DCT-scaled when
the photo is at least twice the resize size). PIL + torchvision: bench/peer_intake.py (Image.open +
exif_transpose + convert("RGB") on the bytes in memory, then Resize + CenterCrop + ToTensor +
Normalize). In R rounds, a fresh process each, alternating which runs first (ABBA); medians over the
pooled passes.

Then, when jpegtran (libjpeg-turbo-progs) is installed, the same photos with a restart marker every
MCU row added losslessly (`jpegtran -restart 1`: the same coefficients, so the same pixels), ours at
one thread and at two (`--threads 2`: the decode in two bands of rows at once, see README's intake
section), alternating in the same rounds."""

import json
import os
import shutil
import subprocess

import bench_util

HERE = os.path.dirname(os.path.abspath(__file__))
WARMUP = 3


def _ours(binary, weights_dir, model, image, iters, timeout, threads=1):
    cmd = [binary, "classify", "--weights-dir", weights_dir, "--model", model, "--threads", str(threads), "--json",
           "--top-k", "1"] + [image] * (WARMUP + iters)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=timeout)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    if r.returncode != 0 or len(rows) != WARMUP + iters:
        raise RuntimeError("cnnserve classify exit %d, %d answers" % (r.returncode, len(rows)))
    rows = rows[WARMUP:]
    return ([o["timings_ms"]["decode"] for o in rows], [o["timings_ms"]["preprocess"] for o in rows],
            rows[0]["image"])


def _pil(python, images, iters, timeout):
    cmd = [python, os.path.join(HERE, "peer_intake.py"), "--iters", str(iters), "--warmup", str(WARMUP),
           "--resize", "256", "--crop", "224"] + images
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("peer_intake.py exit %d: %s" % (r.returncode, r.stderr.strip()[-300:]))
    return json.loads(r.stdout)


def run_intake(binary, weights_dir, models, python, images, rounds, iters, log, timeout=600):
    """images: make_images.py's {name: {path, width, height, bytes}}. Returns the results dict."""
    model = next((m for m in models if m != "inception_v3" and
                  os.path.isfile(os.path.join(weights_dir, m + ".safetensors"))), None)
    if model is None:
        return {"skipped": "no 256/224 model file in %s" % weights_dir}
    per_round = max(1, iters // rounds)
    pooled = {n: {"ours_decode": [], "ours_preprocess": [], "pil_decode": [], "pil_preprocess": []}
              for n in images}
    info, pil_error = {}, None
    for k in range(rounds):
        log("intake round %d/%d" % (k + 1, rounds))
        order = ("ours", "pil") if k % 2 == 0 else ("pil", "ours")
        for who in order:
            if who == "ours":
                for name, img in images.items():
                    d, p, info[name] = _ours(binary, weights_dir, model, img["path"], per_round, timeout)
                    pooled[name]["ours_decode"] += d
                    pooled[name]["ours_preprocess"] += p
            elif pil_error is None:
                try:
                    res = _pil(python, [i["path"] for i in images.values()], per_round, timeout)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                    pil_error = str(e)
                    continue
                for name, img in images.items():
                    pooled[name]["pil_decode"] += res[img["path"]]["decode_ms"]
                    pooled[name]["pil_preprocess"] += res[img["path"]]["preprocess_ms"]
    out = {"model": model, "resize": 256, "crop": 224, "rounds": rounds, "passes_per_round": per_round,
           "images": {}}
    if pil_error:
        out["pil_skipped"] = pil_error
    for name, img in images.items():
        row = {"file": os.path.basename(img["path"]), "width": img["width"], "height": img["height"],
               "bytes": img["bytes"], "decode_scale": info[name].get("decode_scale")}
        for key, values in pooled[name].items():
            if values:
                row[key] = bench_util.timing_stats(values)
        if row.get("pil_decode"):
            ours = row["ours_decode"]["median_ms"] + row["ours_preprocess"]["median_ms"]
            pil = row["pil_decode"]["median_ms"] + row["pil_preprocess"]["median_ms"]
            row["ours_over_pil"] = ours / pil
        out["images"][name] = row
    out["restart"] = _restart(binary, weights_dir, model, images, rounds, per_round, log, timeout)
    return out


def _restart(binary, weights_dir, model, images, rounds, per_round, log, timeout):
    """The photos with restart markers: ours at 1 and 2 threads, alternating, per round."""
    jpegtran = shutil.which("jpegtran")
    if not jpegtran:
        return {"skipped": "jpegtran not installed (libjpeg-turbo-progs, `make deps`)"}
    files = {}
    for name, img in images.items():
        path = os.path.splitext(img["path"])[0] + "_rst.jpg"
        r = subprocess.run([jpegtran, "-restart", "1", "-copy", "all", "-outfile", path, img["path"]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
        if r.returncode != 0:
            return {"skipped": "jpegtran exit %d: %s" % (r.returncode, r.stderr.strip()[-200:])}
        files[name] = path
    pooled = {n: {"t1_decode": [], "t1_preprocess": [], "t2_decode": [], "t2_preprocess": []} for n in files}
    for k in range(rounds):
        log("intake restart-marker round %d/%d" % (k + 1, rounds))
        for threads in ((1, 2) if k % 2 == 0 else (2, 1)):
            for name, path in files.items():
                d, p, _ = _ours(binary, weights_dir, model, path, per_round, timeout, threads)
                pooled[name]["t%d_decode" % threads] += d
                pooled[name]["t%d_preprocess" % threads] += p
    out = {"images": {}}
    for name, path in files.items():
        row = {"file": os.path.basename(path), "bytes": os.path.getsize(path)}
        for key, values in pooled[name].items():
            row[key] = bench_util.timing_stats(values)
        t1 = row["t1_decode"]["median_ms"] + row["t1_preprocess"]["median_ms"]
        t2 = row["t2_decode"]["median_ms"] + row["t2_preprocess"]["median_ms"]
        row["t2_over_t1"] = t2 / t1
        out["images"][name] = row
    return out


def markdown(intake):
    """The report's lines for res["intake"]."""
    lines = ["## Intake: decode + preprocess per image (median ms; ratio < 1: cnnserve faster)", ""]
    if intake.get("skipped"):
        return lines + ["Skipped: %s" % intake["skipped"], ""]
    lines += ["Resize %d + centre crop %d (%s's preprocessing), one thread; ours = the service's `timings_ms` "
              "(`cnnserve classify --json`), PIL + torchvision = bench/peer_intake.py; %d rounds of %d passes "
              "each, alternating order. Ours decodes only the region the crop reads, DCT-scaled (scale column) "
              "when the short side is at least twice the resize size; PIL decodes the whole photo at full size."
              % (intake["resize"], intake["crop"], intake["model"], intake["rounds"], intake["passes_per_round"]), ""]
    if intake.get("pil_skipped"):
        lines += ["PIL + torchvision skipped: %s" % intake["pil_skipped"], ""]
    lines += ["| image | bytes | ours decode (scale) | ours preprocess | ours total | PIL decode | "
              "torchvision preprocess | PIL + torchvision total | ours / PIL |", "|---|---|---|---|---|---|---|---|---|"]

    def med(row, key):
        return row[key]["median_ms"] if key in row else None

    for row in intake["images"].values():
        od, op, pd, pp = (med(row, k) for k in ("ours_decode", "ours_preprocess", "pil_decode", "pil_preprocess"))
        cells = ["%s (%dx%d)" % (row["file"], row["width"], row["height"]), str(row["bytes"]),
                 "%.3f (%s)" % (od, row.get("decode_scale")), "%.3f" % op, "%.3f" % (od + op)]
        cells += ["%.3f" % pd, "%.3f" % pp, "%.3f" % (pd + pp), "%.3f" % row["ours_over_pil"]] if pd is not None \
            else ["–"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    restart = intake.get("restart")
    if not restart:
        return lines
    lines += ["Photos with a restart marker every MCU row (`jpegtran -restart 1`, same pixels): ours at one "
              "thread and at two (decoded in two bands of rows at once; two threads only help on idle cores).", ""]
    if restart.get("skipped"):
        return lines + ["Skipped: %s" % restart["skipped"], ""]
    lines += ["| image | bytes | 1 thread decode + preprocess | 2 threads decode + preprocess | 2 / 1 |",
              "|---|---|---|---|---|"]
    for row in restart["images"].values():
        t1 = row["t1_decode"]["median_ms"] + row["t1_preprocess"]["median_ms"]
        t2 = row["t2_decode"]["median_ms"] + row["t2_preprocess"]["median_ms"]
        lines.append("| %s | %d | %.3f | %.3f | %.3f |" % (row["file"], row["bytes"], t1, t2, row["t2_over_t1"]))
    return lines + [""]
