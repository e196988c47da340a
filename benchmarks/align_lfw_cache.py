"""Cold and warm timing of align_paths on the 7,701 LFW view-2 pair images.

Usage: ``python benchmarks/align_lfw_cache.py [--template dlib150] [--detector dlib]
[--fallback retinaface] [--upsample 1] [--cache DIR]``. With ``--cache`` pointing at a fresh
folder the first run is cold (detect + warp + write) and the second warm (cache read only).
Prints one JSON object per run: seconds and detected / fallback_detector / centre counts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def pair_images(lfw: Path) -> list[Path]:
    """Distinct images of pairs.txt (view 2), in first-seen order."""
    seen: dict[Path, None] = {}
    img = lambda name, i: lfw / "lfw-deepfunneled" / name / f"{name}_{int(i):04d}.jpg"  # noqa
    for line in (lfw / "pairs.txt").read_text().splitlines()[1:]:
        p = line.split()
        pairs = [(p[0], p[1]), (p[0], p[2])] if len(p) == 3 else [(p[0], p[1]), (p[2], p[3])]
        for name, i in pairs:
            seen.setdefault(img(name, i), None)
    return list(seen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--template", default="dlib150")
    ap.add_argument("--detector", default="dlib")
    ap.add_argument("--fallback", default="retinaface")
    ap.add_argument("--upsample", type=int, default=None, help="dlib HOG upsampling")
    ap.add_argument("--multi-face", default="central")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--cache", default=None, help="cache folder (sets SLIMFACE_CACHE)")
    args = ap.parse_args(argv)
    if args.cache:
        os.environ["SLIMFACE_CACHE"] = args.cache
    from slimface.align import align_paths, create_detector
    from slimface.data.roots import data_root

    paths = pair_images(data_root(args.data) / "lfw")
    kw = {"upsample": args.upsample} if args.detector == "dlib" else {}
    det = create_detector(args.detector, **kw)
    for run in range(args.runs):
        t0 = time.perf_counter()
        batch = align_paths(paths, args.template, detector=det, fallback_detector=args.fallback,
                            multi_face=args.multi_face, no_face="centre", workers=args.workers)
        seconds = time.perf_counter() - t0
        print(json.dumps({"run": run, "images": len(paths), "seconds": round(seconds, 2),
                          **batch.counts(), "detector": det.signature(),
                          "fallback": args.fallback, "template": args.template}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
