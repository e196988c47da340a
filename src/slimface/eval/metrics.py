"""Threshold-free verification metrics over all pairs: ROC, AUC, TAR at a fixed FAR.

Conventions shared with :mod:`slimface.eval.verification`: higher score = more alike, and a
pair is accepted when ``score > threshold``.

Resolution matters at low FAR. LFW view 2 has 3000 negative pairs, so the smallest non-zero
FAR it can measure is 1/3000 = 3.3e-4: "TAR at FAR 1e-4" there means "TAR with zero false
accepts", i.e. the fraction of positives scoring above the highest negative. :func:`tar_at_far`
says so in its result (``n_neg``, ``far_resolution``, ``below_resolution``, the FAR actually
achieved) rather than pretending to a precision the data does not have.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from slimface.eval.verification import check_scores_labels

DEFAULT_FARS: tuple[float, ...] = (1e-3, 1e-4)


@dataclass(frozen=True)
class TarAtFar:
    """True-accept rate at a target false-accept rate, with what the data can resolve."""

    far_target: float
    tar: float               # fraction of positive pairs with score > threshold
    threshold: float
    far_achieved: float      # fraction of negative pairs with score > threshold (<= target)
    n_neg: int
    far_resolution: float    # 1 / n_neg: the smallest non-zero FAR measurable
    below_resolution: bool   # far_target < 1 / n_neg: the threshold is the highest negative

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """ROC over all pairs: ``(far, tar, thresholds)``, thresholds descending.

    Point ``i`` accepts pairs with ``score >= thresholds[i]`` (one point per distinct score),
    starting from the point (0, 0) at threshold ``+inf``.
    """
    s, y = check_scores_labels(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = np.cumsum(~y_sorted)[last_of_run]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    far = np.r_[0.0, fp / n_neg]
    tar = np.r_[0.0, tp / n_pos]
    return far, tar, np.r_[np.inf, s_sorted[last_of_run]]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC = P(positive scores above negative), ties counted half.

    Computed from ranks (Mann-Whitney U), which equals the trapezoidal area of
    :func:`roc_curve`.
    """
    s, y = check_scores_labels(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes (got {n_pos} positive, {n_neg} negative)")
    ranks = rankdata(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def threshold_at_far(scores_neg: np.ndarray, far: float) -> float:
    """The lowest threshold at which at most ``far`` of ``scores_neg`` are accepted.

    With ``n`` negatives, ``m = floor(far * n)`` false accepts are allowed, and the threshold is
    the ``(m + 1)``-th highest negative score (accept when ``score > threshold``). Others use
    this to calibrate a model's default verification threshold on non-LFW negatives.
    """
    neg = np.sort(np.asarray(scores_neg, dtype=np.float64).ravel())[::-1]
    if neg.size == 0:
        raise ValueError("threshold_at_far needs at least one negative score")
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    allowed = int(np.floor(far * neg.size + 1e-9))
    if allowed >= neg.size:
        return float(np.nextafter(neg[-1], -np.inf))
    return float(neg[allowed])


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> TarAtFar:
    """TAR at the threshold :func:`threshold_at_far` gives on this set's own negatives."""
    s, y = check_scores_labels(scores, labels)
    neg, pos = s[~y], s[y]
    if neg.size == 0 or pos.size == 0:
        raise ValueError(f"TAR@FAR needs both classes (got {pos.size} positive, "
                         f"{neg.size} negative)")
    thr = threshold_at_far(neg, far)
    return TarAtFar(far_target=far, tar=float(np.mean(pos > thr)), threshold=thr,
                    far_achieved=float(np.mean(neg > thr)), n_neg=int(neg.size),
                    far_resolution=1.0 / neg.size, below_resolution=far < 1.0 / neg.size)


def far_key(far: float) -> str:
    """``1e-3`` -> ``"tar_at_far_1e-3"`` (the JSON key the CLI and reports use)."""
    mantissa, exponent = f"{far:e}".split("e")
    m = mantissa.rstrip("0").rstrip(".")
    return f"tar_at_far_{m}e{int(exponent)}"


def verification_metrics(scores: np.ndarray, labels: np.ndarray,
                         fars: tuple[float, ...] = DEFAULT_FARS) -> dict[str, Any]:
    """AUC and TAR at each FAR, over all pairs (no folds), as flat JSON-ready values."""
    out: dict[str, Any] = {"auc": roc_auc(scores, labels)}
    details = {}
    for far in fars:
        r = tar_at_far(scores, labels, far)
        out[far_key(far)] = r.tar
        details[far_key(far)] = r.as_dict()
    out["tar_at_far_details"] = details
    return out
