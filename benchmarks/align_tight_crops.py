"""Detector misses on tight face crops with and without ``pad="auto"`` (25% replicated border).

Usage: ``python benchmarks/align_tight_crops.py [--data DIR]``: 300 CelebA 89x109, 300 UTKFace
160x160 (every 33rd / 77th file) and 100 AT&T 92x112 images; prints one JSON line per
(set, detector, pad) with the number of images where no face was found.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from slimface.align.detect import create_detector
    from slimface.io.image import load_image
    from slimface.data.roots import data_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)
    root = data_root(args.data)
    sets = {
        "celeba": sorted((root / "celeba_subset/img_align_celeba_89x109").glob("*/*.jpg"))[::33][:300],
        "utkface": sorted((root / "utkface/UTKFace_160").glob("*.jpg"))[::77][:300],
        "att": sorted((root / "att_faces").glob("*/*.pgm"))[::4][:100],
    }
    for name, files in sets.items():
        images = [load_image(f) for f in files]
        for det in ("retinaface", "dlib"):
            for pad in ("auto", 0.0):
                d = create_detector(det, pad=pad)
                missed = sum(not d.detect(im) for im in images)
                print(json.dumps({"set": name, "images": len(images), "detector": det,
                                  "pad": pad, "missed": missed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
