"""Would a linear map after the network help? Centring, within-class normalisation (WCCN)
and whitening, fitted on CelebA, judged on LFW view 1.

Usage: ``python benchmarks/linear_postprocess.py [--model M] [--json OUT]``

A map fitted on labelled faces and folded into the head's last layer would cost nothing at
run time, so it is worth knowing whether one helps. The embeddings (flip-summed, as every
match is made) of the CelebA identities with two or more images fit each map: their mean
(centring), their within-identity covariance (WCCN) or their total covariance (whitening),
each inverse square root shrunk towards the identity by ``lam`` times its mean eigenvalue.
Each map is judged on LFW view 1 (pairsDevTrain + pairsDevTest, tuning data; view 2 is not
read): pair accuracy at the pairsDevTrain threshold, all-pairs TAR at FAR 1e-3 / 1e-4 and
1:N rank-1 over its 4,992 images. Prints a table, and JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

SHRINKAGE = (0.1, 0.3, 1.0, 3.0)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def shrunk_inverse_sqrt(cov: np.ndarray, lam: float) -> np.ndarray:
    """(cov + lam * mean eigenvalue * I) ** -1/2: a whitening that trusts few directions less."""
    cov = cov + lam * np.trace(cov) / len(cov) * np.eye(len(cov))
    values, vectors = np.linalg.eigh(cov)
    return vectors @ np.diag(values ** -0.5) @ vectors.T


def within_class_covariance(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    classes = np.unique(labels)
    scatter = np.zeros((x.shape[1], x.shape[1]))
    for c in classes:
        centred = x[labels == c] - x[labels == c].mean(0)
        scatter += centred.T @ centred
    return scatter / (len(x) - len(classes))


def candidate_maps(fit: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """name -> function of unit embeddings, every map fitted on ``fit`` (unit rows)."""
    mean = fit.mean(0)
    maps: dict[str, Any] = {"none": lambda e: e, "centred": lambda e: e - mean}
    within = within_class_covariance(fit, labels)
    total = np.cov(fit - mean, rowvar=False, bias=True)
    for lam in SHRINKAGE:
        for name, cov in (("WCCN", within), ("whitened", total)):
            proj = shrunk_inverse_sqrt(cov, lam)
            maps[f"{name}, lam {lam}"] = lambda e, p=proj: (e - mean) @ p
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="slimface-mobile")
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()

    from slimface.align.pipeline import align_paths
    from slimface.data.identity import scan_identity_folders
    from slimface.data.roots import find_data_root
    from slimface.eval.view1 import LfwView1Evaluator
    from slimface.models.inference import embed_crops
    from slimface.runtime.loader import load_model

    root = find_data_root()
    if root is None:
        raise SystemExit("linear_postprocess: no data folder (set SLIMFACE_DATA)")
    model = load_model(opts.model)
    view1 = LfwView1Evaluator(root, model.template)
    celeba = scan_identity_folders(root / "celeba_subset" / "img_align_celeba_89x109",
                                   min_images=2)
    celeba_crops = align_paths(celeba.paths, model.template, detector="retinaface",
                               multi_face="central", no_face="centre", cache=True,
                               progress=True).crops
    fit, judged = (unit_rows(embed_crops(model, crops, batch_size=64, flip="sum"))
                   for crops in (celeba_crops, view1.crops))

    def readouts(e: np.ndarray) -> dict[str, float]:
        m = view1.metrics(e)
        return {"accuracy": 100 * m["lfw_view1_acc"],
                "tar_at_far_1e-3": 100 * m["lfw_view1_tar_at_far_1e-3"],
                "tar_at_far_1e-4": 100 * m["lfw_view1_tar_at_far_1e-4"],
                "rank1": 100 * m["lfw_view1_rank1"]}

    rows = {name: readouts(fn(judged)) for name, fn in candidate_maps(fit, celeba.labels).items()}
    print(f"{opts.model}: LFW view 1, maps fitted on {len(fit)} CelebA faces "
          f"of {len(np.unique(celeba.labels))} people")
    print(f"{'map':22s} {'acc':>6s} {'TAR@1e-3':>9s} {'TAR@1e-4':>9s} {'rank-1':>7s}")
    for name, r in rows.items():
        print(f"{name:22s} {r['accuracy']:6.2f} {r['tar_at_far_1e-3']:9.2f} "
              f"{r['tar_at_far_1e-4']:9.2f} {r['rank1']:7.2f}")
    if opts.json:
        opts.json.write_text(json.dumps({"model": opts.model, "fit_faces": len(fit),
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
