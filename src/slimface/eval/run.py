"""LFW evaluation from raw images: align every pair image once, embed once, score, report.

``evaluate_lfw(model, data_root)`` is what ``slimface eval`` runs and what training and
compression code call to measure a model. The steps are separate functions so a caller that
evaluates many models (or one model many times during training) can align once with
:func:`align_pair_images` and reuse the crops with :func:`evaluate_crops`.

Alignment follows the model: its ``template`` attribute picks the crop, ``detector`` the
detector (default RetinaFace) and ``fallback_detector`` a second detector for images the first
misses. LFW photos are centred on their subject, so among several faces the one nearest the
image centre is used, and an image where no detector finds a face gets the template's centre
crop (counted as ``no_face``; Zhou et al. (2018), "Face Recognition Method Based on Quantized
Residual Convolutional Neural Networks", do the same with a 144x144 centre crop).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from torch import nn

from slimface.conventions import DEFAULT_FLIP
from slimface.errors import DataError, ModelError
from slimface.eval.lfw import Pair, find_lfw_root, load_view1, load_view2, unique_images
from slimface.eval.metrics import verification_metrics
from slimface.eval.protocols import deployment_readouts
from slimface.eval.verification import (Candidates, cosine_scores, k_fold_verification,
                                        split_verification)

PairsName = Literal["view2", "view1"]
PAIRS_NAMES: tuple[str, ...] = ("view2", "view1")
#: Result keys holding per-pair arrays (for plots); left out of JSON summaries.
ARRAY_KEYS: tuple[str, ...] = ("scores", "labels", "folds")


@dataclass
class AlignedPairImages:
    """Crops of every distinct image of a pair list, and where each path's crop is."""

    paths: list[Path]
    crops: np.ndarray            # (N, H, W, 3) uint8, same order as ``paths``
    status: list[str]            # "detected" | "fallback_detector" | "centre" per image
    index: dict[Path, int]
    template: str
    detector: str
    fallback_detector: str | None
    seconds: float

    def count(self, status: str) -> int:
        return sum(s == status for s in self.status)


def load_lfw_pairs(data_root: str | os.PathLike[str] | None,
                   pairs: PairsName = "view2") -> list[Pair]:
    """View-2 pairs (folds 0..9) or view-1 pairs (train fold 0 + test fold 1)."""
    from slimface.io.paths import data_root as resolve_data_root

    if pairs not in PAIRS_NAMES:
        raise DataError(f"unknown LFW pairs {pairs!r} (choose from {', '.join(PAIRS_NAMES)})")
    lfw_root = find_lfw_root(resolve_data_root(data_root))
    return load_view2(lfw_root) if pairs == "view2" else load_view1(lfw_root).pairs


def _template_name(model: nn.Module) -> str:
    template = getattr(model, "template", None)
    if template is None:
        raise DataError(f"model {getattr(model, 'name', type(model).__name__)!r} has no "
                        "'template' attribute; cannot tell how to align its input")
    return template if isinstance(template, str) else getattr(template, "name", str(template))


def probe_model(model: nn.Module, flip: str = DEFAULT_FLIP) -> None:
    """Embed one blank crop of the model's template, so that a model that cannot embed
    (not a face model, an input size its graph does not take) fails in a second, before
    the minutes spent aligning thousands of LFW images for it.

    Raises:
        ModelError: naming the model (its file when loaded from one) and what went wrong.
    """
    from slimface.align.templates import get_template
    from slimface.models.inference import embed_crops

    template = get_template(_template_name(model))
    crop = np.full((1, *template.size, 3), 128, np.uint8)
    name = getattr(model, "name", type(model).__name__)
    what = f"a {template.size[0]}x{template.size[1]} {template.name} crop"
    try:
        out = embed_crops(model, crop, flip=flip)
    except Exception as exc:  # noqa: BLE001 - torch, ONNX Runtime... each raise their own
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        size = tuple(getattr(model, "input_size", template.size))
        hint = f"; its input is {size[0]}x{size[1]}" if size != tuple(template.size) else ""
        raise ModelError(f"{name}: cannot embed {what}, so it cannot be evaluated "
                         f"({type(exc).__name__}: {first}){hint}") from None
    if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] == 0 or not np.isfinite(out).all():
        raise ModelError(f"{name}: {what} gives an output of shape {list(out.shape)}"
                         f"{'' if np.isfinite(out).all() else ' with NaN or inf values'}; "
                         f"expected one finite embedding row")


def align_pair_images(pairs: Sequence[Pair], model: nn.Module, cache: bool = True,
                      progress: bool = True) -> AlignedPairImages:
    """Detect and align every distinct image of ``pairs`` for ``model`` (crop cache aware)."""
    from slimface.align.pipeline import align_paths

    paths = unique_images(pairs)
    template = _template_name(model)
    detector = getattr(model, "detector", None) or "retinaface"
    fallback = getattr(model, "fallback_detector", None)
    start = time.perf_counter()
    batch = align_paths(paths, template=template, detector=detector, fallback_detector=fallback,
                        multi_face="central", no_face="centre", cache=cache, progress=progress)
    return AlignedPairImages(paths=paths, crops=batch.crops, status=list(batch.status),
                             index={p: i for i, p in enumerate(paths)}, template=template,
                             detector=detector, fallback_detector=fallback,
                             seconds=time.perf_counter() - start)


def pair_scores(embeddings: np.ndarray, index: dict[Path, int],
                pairs: Sequence[Pair]) -> np.ndarray:
    """Cosine similarity of each pair, from one embedding row per distinct image."""
    ia = np.fromiter((index[p.path_a] for p in pairs), dtype=np.int64, count=len(pairs))
    ib = np.fromiter((index[p.path_b] for p in pairs), dtype=np.int64, count=len(pairs))
    return cosine_scores(embeddings[ia], embeddings[ib])


def score_report(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                 candidates: Candidates = "midpoints") -> dict[str, Any]:
    """Accuracy by protocol, plus AUC and TAR@FAR over all pairs.

    More than two fold ids: the k-fold protocol. Exactly two (view 1): threshold on the lower
    id (pairsDevTrain), accuracy on the higher (pairsDevTest); ``accuracy_std`` is then None.
    """
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise ValueError(f"need a train and a test fold, got fold ids {fold_ids.tolist()}")
    if fold_ids.size > 2:
        result = k_fold_verification(scores, labels, folds, candidates)
        report: dict[str, Any] = {
            "protocol": f"{fold_ids.size}-fold: threshold maximising accuracy on the other "
                        "folds, accuracy on the held-out fold",
            "accuracy_mean": result.mean, "accuracy_std": result.std,
            "fold_accuracies": result.fold_accuracies.tolist(),
            "thresholds": result.thresholds.tolist(),
            "threshold_mean": float(np.mean(result.thresholds))}
    else:
        train, test = folds == fold_ids[0], folds == fold_ids[-1]
        split = split_verification(scores[train], labels[train], scores[test], labels[test],
                                   candidates)
        report = {"protocol": "view 1: threshold maximising accuracy on pairsDevTrain, "
                              "accuracy on pairsDevTest",
                  "accuracy_mean": split["test_accuracy"], "accuracy_std": None,
                  "train_accuracy": split["train_accuracy"],
                  "thresholds": [split["threshold"]], "threshold_mean": split["threshold"]}
    report.update(verification_metrics(scores, labels))
    return report


def embed_with_progress(model: nn.Module, crops: np.ndarray, batch_size: int = 64,
                        flip: str = DEFAULT_FLIP, progress: bool = True) -> np.ndarray:
    """``embed_crops`` in chunks of a few batches, with a tqdm bar on stderr."""
    from tqdm import tqdm

    from slimface.models.inference import embed_crops

    step = batch_size * 8
    parts = []
    with tqdm(total=len(crops), desc="embed", unit="img", disable=not progress,
              dynamic_ncols=True, leave=False) as bar:
        for start in range(0, len(crops), step):
            parts.append(embed_crops(model, crops[start:start + step], batch_size=batch_size,
                                     flip=flip))
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else embed_crops(model, crops, flip=flip)


def evaluate_crops(model: nn.Module, aligned: AlignedPairImages, pairs: Sequence[Pair],
                   flip: str = DEFAULT_FLIP, batch_size: int = 64,
                   candidates: Candidates = "midpoints",
                   progress: bool = False) -> dict[str, Any]:
    """Embed pre-aligned crops once each, score ``pairs`` and run the protocol, then the
    all-pairs and 1:N read-outs over the same embedded images
    (:func:`slimface.eval.protocols.deployment_readouts`)."""
    start = time.perf_counter()
    embeddings = embed_with_progress(model, aligned.crops, batch_size, flip, progress)
    seconds_embed = time.perf_counter() - start
    scores = pair_scores(embeddings, aligned.index, pairs)
    labels = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs], dtype=np.int64)
    report = score_report(scores, labels, folds, candidates)
    report.update(deployment_readouts(embeddings, aligned.paths))
    report.update(seconds_embed=seconds_embed, scores=scores, labels=labels, folds=folds)
    return report


def evaluate_lfw(model: nn.Module | str, data_root: str | os.PathLike[str] | None = None,
                 flip: str = DEFAULT_FLIP, batch_size: int = 64, cache: bool = True,
                 progress: bool = True, pairs: PairsName = "view2",
                 candidates: Candidates = "midpoints") -> dict[str, Any]:
    """Evaluate ``model`` on LFW from raw images; returns a flat, JSON-ready dict.

    Args:
        model: a loaded model or anything :func:`slimface.runtime.loader.load_model` takes.
        data_root: folder holding ``lfw/`` (default: ``$SLIMFACE_DATA`` or ``../shared/data``).
        flip: ``"none"``, ``"sum"`` or ``"concat"`` (image + mirror features, as Zhou et al. 2018).
        batch_size: embedding batch size.
        cache: reuse/write the crop cache of the alignment pipeline.
        progress: tqdm bars on stderr.
        pairs: ``"view2"`` (the benchmark, 10 folds) or ``"view1"`` (tuning split).
        candidates: threshold candidates of the protocol (see ``eval.verification``).

    Returns:
        ``accuracy_mean``, ``accuracy_std``, ``fold_accuracies``, ``thresholds``, ``auc``,
        ``tar_at_far_1e-3``, ``tar_at_far_1e-4`` over the pair list (+ ``tar_at_far_details``
        with ``n_neg``), the all-pairs and 1:N read-outs over the pair list's images
        (``tar_at_far`` per FAR 1e-3/1e-4/1e-5, ``rank1``, ``rank5``, ``dir_at_far`` per FAR
        1e-2/1e-3, with counts and thresholds in ``all_pairs`` and ``identification``),
        ``n_pairs``, ``n_images``, ``no_face`` (centre crops), ``fallback_detector`` (images
        aligned by the fallback detector), ``seconds``, ``seconds_align``, ``seconds_embed``,
        ``model``, ``flip``..., plus the arrays ``scores``, ``labels``, ``folds`` (see
        :func:`json_summary` to drop them).
    """
    start = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        from slimface.runtime.loader import load_model

        model = load_model(model)
    probe_model(model, flip)
    pair_list = load_lfw_pairs(data_root, pairs)
    aligned = align_pair_images(pair_list, model, cache=cache, progress=progress)
    report = evaluate_crops(model, aligned, pair_list, flip=flip, batch_size=batch_size,
                            candidates=candidates, progress=progress)
    head = {"benchmark": "lfw" if pairs == "view2" else "lfw-view1",
            "model": str(getattr(model, "name", type(model).__name__)), "flip": flip,
            "template": aligned.template, "detector": aligned.detector,
            "fallback_detector_name": aligned.fallback_detector}
    counts = {"n_pairs": len(pair_list), "n_images": len(aligned.paths),
              "no_face": aligned.count("centre"),
              "fallback_detector": aligned.count("fallback_detector"),
              "seconds_align": aligned.seconds}
    return {**head, **report, **counts, "seconds": time.perf_counter() - start}


def json_summary(result: dict[str, Any], include_scores: bool = False) -> dict[str, Any]:
    """``result`` without the per-pair arrays (unless asked), ready for ``emit_json``."""
    if include_scores:
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in result.items()}
    return {k: v for k, v in result.items() if k not in ARRAY_KEYS}
