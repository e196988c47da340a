"""How small a face can be: LFW view-1 pairs with every image shrunk so its face is N pixels wide.

Usage: ``python benchmarks/face_size.py [--model M] [--scales 1 0.5 ...] [--json OUT]``

Each LFW view-1 image (pairsDevTrain + pairsDevTest: 3,200 pairs, tuning data, no view-2
image) is shrunk by a factor (area filter, as a camera or a thumbnail would) and given to
``FaceMatcher`` as pixels in memory (``face="central"``, ``no_face="centre"``, the
protocol's choices). Per factor: the median width of the detected face box in pixels, how
many images had no face found, and the pairs' accuracy at the model's calibrated
threshold (the operating point ``verify`` uses) with the mean genuine and impostor
similarity. Prints a table, and JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="slimface-mobile")
    parser.add_argument("--scales", type=float, nargs="+",
                        default=[1.0, 0.5, 0.35, 0.25, 0.18, 0.13])
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()

    import cv2

    from slimface import FaceMatcher
    from slimface.data.lfw import load_view1, unique_images
    from slimface.data.roots import find_data_root
    from slimface.io.image import load_image

    root = find_data_root()
    if root is None:
        sys.exit("face_size.py: ../shared/data not found")
    pairs = load_view1(root / "lfw").pairs
    images = unique_images(pairs)
    fm = FaceMatcher(opts.model, face="central", no_face="centre")
    threshold = fm.threshold.value
    rows = []
    for scale in opts.scales:
        start = time.perf_counter()
        emb, widths, centred = {}, [], 0
        for path in images:
            pixels = load_image(path)
            if scale != 1.0:
                h, w = pixels.shape[:2]
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
            face = fm.embed_face(pixels)
            emb[path] = face.embedding
            if face.box is None:
                centred += 1
            else:
                widths.append(face.box[2] - face.box[0])
        sims = np.array([float(emb[p.path_a] @ emb[p.path_b]) for p in pairs])
        same = np.array([p.same for p in pairs])
        rows.append({"scale": scale, "image_px": round(250 * scale),
                     "face_px_median": round(float(np.median(widths)), 1) if widths else None,
                     "no_face": centred, "images": len(images),
                     "accuracy_at_threshold": round(float(((sims > threshold) == same).mean()), 4),
                     "tar_at_threshold": round(float((sims[same] > threshold).mean()), 4),
                     "far_at_threshold": round(float((sims[~same] > threshold).mean()), 4),
                     "genuine_mean": round(float(sims[same].mean()), 4),
                     "impostor_mean": round(float(sims[~same].mean()), 4),
                     "seconds": round(time.perf_counter() - start, 1)})
        r = rows[-1]
        print(f"scale {scale:<5} image {r['image_px']:>3} px  face {r['face_px_median']} px  "
              f"no face {centred:>4}  acc {100 * r['accuracy_at_threshold']:.2f}  "
              f"TAR {100 * r['tar_at_threshold']:.2f}  FAR {100 * r['far_at_threshold']:.2f}",
              flush=True)
    result = {"model": opts.model, "threshold": threshold, "pairs": len(pairs), "rows": rows}
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
