#!/usr/bin/python3
"""Make the load-test JPEGs from a ../shared ImageNet photo: a 640x480 one, and a 4000x3000 one
upscaled from the same photo with mild seeded noise added, so it compresses like a 12-megapixel
camera photo (an upscaled photo alone is smooth and several times smaller than a real one).

usage: make_images.py SHARED_DIR OUT_DIR  -> prints a JSON object {name: {path, width, height, bytes}}
Exit status 3 (with a message) when the photo is not there.
"""

import json
import os
import sys

PHOTO = "n01622779_great_grey_owl.JPEG"  # 845x563, the largest of the first sample photos
SIZES = {"640x480": (640, 480, 0.0), "4000x3000": (4000, 3000, 4.0)}  # width, height, noise sigma
QUALITY = 90


def make(src, out_dir):
    import numpy as np
    from PIL import Image

    photo = Image.open(src).convert("RGB")
    w, h = photo.size
    crop_w = min(w, h * 4 // 3)  # centre 4:3 crop
    crop_h = crop_w * 3 // 4
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    photo = photo.crop((left, top, left + crop_w, top + crop_h))
    result = {}
    for name, (width, height, sigma) in SIZES.items():
        path = os.path.join(out_dir, "photo_%s.jpg" % name)
        if not os.path.isfile(path) or os.path.getmtime(path) < os.path.getmtime(os.path.abspath(__file__)):
            img = photo.resize((width, height), Image.BICUBIC)
            if sigma:
                rng = np.random.default_rng(6)
                a = np.asarray(img, dtype=np.float32) + rng.normal(0.0, sigma, (height, width, 3))
                img = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))
            tmp = path + ".tmp"
            img.save(tmp, "JPEG", quality=QUALITY)
            os.replace(tmp, path)
        result[name] = {"path": path, "width": width, "height": height, "bytes": os.path.getsize(path),
                        "source": PHOTO}
    return result


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src = os.path.join(argv[1], "data", "imagenet-sample", PHOTO)
    if not os.path.isfile(src):
        print("make_images: %s not found (no ../shared photos)" % src, file=sys.stderr)
        return 3
    os.makedirs(argv[2], exist_ok=True)
    print(json.dumps(make(src, argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
