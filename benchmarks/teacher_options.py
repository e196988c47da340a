"""Which teacher to distil from: each model alone, or an ensemble of their embeddings.

An ensemble concatenates each member's L2-normalised embedding, either as it is ("raw"),
centred on the mean of CelebA crops (never LFW), or centred and whitened (PCA on the same
crops), each re-normalised and weighted. The dlib weight (MobileFaceNet weight 1) and whitening are chosen on LFW
**view 1** by all-pairs TAR at FAR 1e-4 over view 1's images; each option is then reported on
view 2 (10-fold pair accuracy, all-pairs TAR at FAR 1e-3/1e-4/1e-5, rank-1, DIR at FAR 1e-2).

    slimface models fetch --model mobilefacenet-tflite
    python benchmarks/teacher_options.py --json teacher_options.json

Prints a table on stderr and one JSON object (stdout, or --json FILE).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from slimface._provenance import describe_cpu, git_commit

MEMBERS = ("mobilefacenet-tflite", "dlib-resnet")
DLIB_WEIGHTS = (0.25, 0.5, 0.75, 1.0)
MODES = ("raw", "centred", "whitened")


def member_embeddings(name: str, views: dict[str, Any], calib_n: int) -> dict[str, np.ndarray]:
    """One member's embeddings of every view's images and of CelebA calibration crops."""
    from slimface.compress.pq import calibration_crops
    from slimface.eval.run import align_pair_images, embed_with_progress
    from slimface.io.paths import data_root
    from slimface.runtime.loader import load_model

    model = load_model(name)
    out = {}
    for view, pairs in views.items():
        aligned = align_pair_images(pairs, model, progress=True)
        out[view] = embed_with_progress(model, aligned.crops, progress=True)
        out[f"{view}_paths"] = aligned.paths
    calib_dir = data_root() / "celeba_subset" / "img_align_celeba_89x109"
    out["calib"] = embed_with_progress(model, calibration_crops(model, calib_dir, calib_n),
                                       progress=True)
    return out


def cached_embeddings(cache: str | None, views: dict[str, Any], calib_n: int) -> dict:
    """Every member's embeddings, from ``cache`` when it holds them (same images, same n)."""
    from pathlib import Path

    if cache and Path(cache).is_file():
        with np.load(cache) as z:
            if int(z["calib_n"]) == calib_n:
                return {m: {k: (z[f"{m}|{k}"] if not k.endswith("_paths")
                                else [Path(p) for p in z[f"{m}|{k}"]])
                            for k in ("view1", "view2", "calib", "view1_paths", "view2_paths")}
                        for m in MEMBERS}
    emb = {m: member_embeddings(m, views, calib_n) for m in MEMBERS}
    if cache:
        np.savez(cache, calib_n=calib_n, **{f"{m}|{k}": (np.asarray([str(p) for p in v])
                                                       if k.endswith("_paths") else v)
                                          for m in MEMBERS for k, v in emb[m].items()})
    return emb


def transform(calib: np.ndarray, mode: str) -> Any:
    """``raw`` (as the model gives it), ``centred`` on the calibration mean, or ``whitened``
    (centred, then PCA-whitened); L2-normalised in every case."""
    mu = calib.mean(0) if mode != "raw" else np.zeros(calib.shape[1], calib.dtype)
    whiten = mode == "whitened"
    w = None
    if whiten:
        cov = np.cov(calib - mu, rowvar=False)
        vals, vecs = np.linalg.eigh(cov)
        w = vecs / np.sqrt(np.maximum(vals, 1e-6 * vals.max()))

    def apply(e: np.ndarray) -> np.ndarray:
        x = e - mu
        if w is not None:
            x = x @ w
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return apply


def combine(parts: list[np.ndarray], weights: list[float]) -> np.ndarray:
    e = np.concatenate([w * p for w, p in zip(weights, parts)], axis=1)
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def readouts(emb: np.ndarray, paths: list, pairs: list | None) -> dict[str, Any]:
    from slimface.eval.protocols import deployment_readouts
    from slimface.eval.run import pair_scores, score_report

    r = deployment_readouts(emb, paths)
    out = {"tar_at_far": r["tar_at_far"], "rank1": r["rank1"], "dir_at_far": r["dir_at_far"]}
    if pairs is not None:
        index = {p: i for i, p in enumerate(paths)}
        scores = pair_scores(emb, index, pairs)
        labels = np.array([p.same for p in pairs])
        folds = np.array([p.fold for p in pairs])
        out["accuracy"] = score_report(scores, labels, folds)["accuracy_mean"]
    return out


def main(argv: list[str] | None = None) -> int:
    from slimface.eval.run import load_lfw_pairs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-n", type=int, default=2000, help="CelebA crops for the mean")
    parser.add_argument("--json", default="-", help="output file (default stdout)")
    parser.add_argument("--cache", default=None, metavar="NPZ",
                        help="keep the members' embeddings here and reuse them on a rerun")
    args = parser.parse_args(argv)
    views = {"view1": load_lfw_pairs(None, "view1"), "view2": load_lfw_pairs(None, "view2")}
    emb = cached_embeddings(args.cache, views, args.calib_n)
    for m in MEMBERS[1:]:  # every member embeds the same images in the same order
        assert emb[m]["view2_paths"] == emb[MEMBERS[0]]["view2_paths"]
    options: list[dict[str, Any]] = []
    for mode in MODES:
        for m in MEMBERS:
            options.append({"option": f"{m} alone, {mode}", "members": [m], "weights": [1.0],
                            "mode": mode})
        for wd in DLIB_WEIGHTS:
            options.append({"option": f"ensemble, dlib weight {wd}, {mode}",
                            "members": list(MEMBERS), "weights": [1.0, wd], "mode": mode})
    for opt in options:
        fns = [transform(emb[m]["calib"], opt["mode"]) for m in opt["members"]]
        for view in ("view1", "view2"):
            e = combine([f(emb[m][view]) for f, m in zip(fns, opt["members"])], opt["weights"])
            opt[view] = readouts(e, emb[MEMBERS[0]][f"{view}_paths"],
                                 views[view] if view == "view2" else None)
    ensembles = [o for o in options if len(o["members"]) > 1]
    best_ensemble = max(ensembles, key=lambda o: o["view1"]["tar_at_far"]["1e-4"])
    best = max(options, key=lambda o: o["view1"]["tar_at_far"]["1e-4"])
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for o in options:
        v1, v2 = o["view1"], o["view2"]
        mark = " <- best on view 1" if o is best else ""
        print(f"{o['option']:<40} view1 TAR@1e-4 {pct(v1['tar_at_far']['1e-4']):>6} | "
              f"view2 acc {pct(v2['accuracy'])} TAR@1e-3/1e-4/1e-5 "
              f"{pct(v2['tar_at_far']['1e-3'])}/{pct(v2['tar_at_far']['1e-4'])}/"
              f"{pct(v2['tar_at_far']['1e-5'])} rank-1 {pct(v2['rank1'])} "
              f"DIR@1e-2 {pct(v2['dir_at_far']['1e-2'])}{mark}", file=sys.stderr)
    result = {"commit": git_commit(), "cpu": describe_cpu()["cpu"], "calib_n": args.calib_n,
              "selection": "all-pairs TAR at FAR 1e-4 on LFW view 1's images",
              "best": best["option"], "best_ensemble": best_ensemble["option"],
              "options": options}
    text = json.dumps(result, indent=2, default=float) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
    else:
        with open(args.json, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
