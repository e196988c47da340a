"""Measure the cross-convention template points hard-coded in slimface.align.templates/warp.

Runs dlib (HOG + 5-point predictor, kind "dlib5") and RetinaFace (kind "5pt") on LFW people who
appear in no pair of pairs.txt (allowed for tuning; never the view-2 pair images), keeps images
where both find the same central face, and averages:

* RetinaFace 5pt landmarks mapped into the dlib150 chip that dlib's own landmarks define
  -> ``DLIB150_5PT``;
* dlib's 5 landmarks mapped into the arcface112 / sphereface112x96 crops that RetinaFace's
  landmarks define -> ``ARCFACE112_DLIB5`` / ``SPHEREFACE112X96_DLIB5``;
* RetinaFace landmarks as fractions of the image size -> ``CENTRED_FACE_5PT`` (the no-face
  fallback layout).

It then checks the result on held-out non-pair images: mean pixel correlation and dlib ResNet
embedding cosine between the dlib150 chip from RetinaFace landmarks and the chip from dlib's
landmarks.

Usage: ``python benchmarks/align_template_points.py [--data DIR] [--n 300] [--held-out 100]``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def non_pair_images(lfw: Path) -> list[Path]:
    """LFW images of people named in no line of pairs.txt (view 2)."""
    in_pairs: set[str] = set()
    for line in (lfw / "pairs.txt").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            in_pairs.add(parts[0])
        elif len(parts) == 4:
            in_pairs.update((parts[0], parts[2]))
    root = lfw / "lfw-deepfunneled"
    return sorted(p for d in sorted(root.iterdir()) if d.name not in in_pairs
                  for p in sorted(d.glob("*.jpg")))


def central(faces, shape):
    from slimface.align.pipeline import select_face

    return select_face(faces, shape, "central") if faces else None


def collect(paths: list[Path]):
    """Per image: (image, dlib face, retinaface face) where both agree on the face."""
    from slimface.align.detect import create_detector
    from slimface.io.image import load_image

    dlib_det, retina = create_detector("dlib"), create_detector("retinaface")
    for p in paths:
        img = load_image(p)
        fd, fr = central(dlib_det.detect(img), img.shape), central(retina.detect(img), img.shape)
        if fd is None or fr is None:
            continue
        width = fr.box[2] - fr.box[0]
        if np.linalg.norm(fd.landmarks.mean(0) - fr.landmarks.mean(0)) > 0.2 * width:
            continue  # the two detectors picked different faces
        yield img, fd, fr


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def derive(samples) -> dict[str, np.ndarray]:
    from slimface.align.warp import face_transform

    out: dict[str, list[np.ndarray]] = {k: [] for k in
                                        ("DLIB150_5PT", "ARCFACE112_DLIB5",
                                         "SPHEREFACE112X96_DLIB5", "CENTRED_FACE_5PT")}
    for img, fd, fr in samples:
        out["DLIB150_5PT"].append(apply(face_transform(fd.landmarks, "dlib150", "dlib5"),
                                        fr.landmarks))
        out["ARCFACE112_DLIB5"].append(apply(face_transform(fr.landmarks, "arcface112", "5pt"),
                                             fd.landmarks))
        out["SPHEREFACE112X96_DLIB5"].append(
            apply(face_transform(fr.landmarks, "sphereface112x96", "5pt"), fd.landmarks))
        out["CENTRED_FACE_5PT"].append(fr.landmarks / np.array([img.shape[1], img.shape[0]]))
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def check(samples, constants: dict[str, np.ndarray]) -> dict[str, float]:
    """Chip from 5pt landmarks (with the new constants) vs chip from dlib's landmarks."""
    from slimface.align import templates
    from slimface.align.templates import Template
    from slimface.align.warp import warp_face

    base = templates.dlib150()
    t = Template("dlib150", base.size, {"dlib5": base.points["dlib5"],
                                        "5pt": constants["DLIB150_5PT"].astype(np.float32)},
                 geometry=base.geometry)
    import dlib
    import face_recognition_models as frm

    resnet = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    corr, mad, cos = [], [], []
    for img, fd, fr in samples:
        a = warp_face(img, fd.landmarks, t, kind="dlib5")
        b = warp_face(img, fr.landmarks, t, kind="5pt")
        af, bf = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        corr.append(np.corrcoef(af, bf)[0, 1])
        mad.append(np.abs(af - bf).mean())
        ea, eb = (np.array(resnet.compute_face_descriptor(c)) for c in (a, b))
        cos.append(float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb)))
    return {"n": len(corr), "mean_pixel_correlation": float(np.mean(corr)),
            "mean_abs_pixel_difference": float(np.mean(mad)),
            "dlib_embedding_cosine_mean": float(np.mean(cos)),
            "dlib_embedding_cosine_min": float(np.min(cos))}


def main(argv: list[str] | None = None) -> int:
    from slimface.data.roots import data_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=300, help="images to derive the constants from")
    ap.add_argument("--held-out", type=int, default=100, help="images to check them on")
    args = ap.parse_args(argv)
    paths = non_pair_images(data_root(args.data) / "lfw")
    rng = np.random.default_rng(0)
    paths = [paths[i] for i in rng.permutation(len(paths))]
    train = list(collect(paths[:args.n]))
    held = list(collect(paths[args.n:args.n + args.held_out]))
    if not train or not held:
        ap.error("no image where both detectors agree; raise --n / --held-out")
    constants = derive(train)
    for name, arr in constants.items():
        digits = 4 if name == "CENTRED_FACE_5PT" else 2
        rows = ", ".join("[" + ", ".join(f"{v:.{digits}f}" for v in r) + "]" for r in arr)
        print(f"{name} = [{rows}]")
    report = {"derived_from": len(train), **check(held, constants)}
    print(json.dumps(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
