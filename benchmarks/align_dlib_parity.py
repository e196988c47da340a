"""Our dlib150 chip vs dlib's own ``get_face_chip(img, shape, 150, 0.25)`` on real LFW images.

Usage: ``python benchmarks/align_dlib_parity.py [--n 20]``. For each image: dlib HOG + 5-point
landmarks, then (a) dlib.get_face_chip, (b) warp_face(..., "dlib150", kind="dlib5") and
(c) warp_face with RetinaFace 5pt landmarks onto dlib150. Prints mean absolute pixel
difference a-b, and mean pixel correlation a-c.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import dlib

    from slimface.align.detect import create_detector
    from slimface.align.pipeline import select_face
    from slimface.align.warp import warp_face
    from slimface.io.image import load_image
    from slimface.data.roots import data_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args(argv)
    root = data_root(args.data) / "lfw" / "lfw-deepfunneled"
    files = sorted(root.glob("*/*_0001.jpg"))[::97][:args.n]
    det, retina = create_detector("dlib"), create_detector("retinaface")
    sp = dlib.shape_predictor(__import__("face_recognition_models")
                              .pose_predictor_five_point_model_location())
    mad, corr = [], []
    for f in files:
        img = load_image(f)
        faces = det.detect(img)
        if not faces:
            continue
        face = select_face(faces, img.shape, "central")
        x1, y1, x2, y2 = (int(v) for v in face.box)
        shape = sp(img, dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
        ref = dlib.get_face_chip(img, shape, 150, 0.25).astype(np.float64)
        ours = warp_face(img, face.landmarks, "dlib150", kind="dlib5").astype(np.float64)
        mad.append(np.abs(ref - ours).mean())
        rf = retina.detect(img)
        if rf:
            five = warp_face(img, select_face(rf, img.shape, "central").landmarks, "dlib150")
            corr.append(np.corrcoef(ref.ravel(), five.astype(np.float64).ravel())[0, 1])
    print(json.dumps({"images": len(mad), "mean_abs_diff_dlib5_vs_dlib": float(np.mean(mad)),
                      "max_image_mean_abs_diff": float(np.max(mad)),
                      "retinaface_5pt_images": len(corr),
                      "mean_pixel_correlation_5pt_vs_dlib": float(np.mean(corr))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
