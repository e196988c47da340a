"""The LFW 10-fold verification protocol (LFW view 2), written out so it can be checked.

What we do, exactly:

1. Each pair has one score, the cosine similarity of its two (L2-normalised) embeddings.
   A pair is predicted "same person" when ``score > threshold`` (strictly greater).
2. For each fold ``k`` of 10: the threshold is chosen on the other 9 folds (5400 pairs) as the
   one with the highest accuracy there, and applied unchanged to fold ``k`` (600 pairs).
3. Candidate thresholds (``candidates="midpoints"``, the default) are the midpoints between
   consecutive distinct training scores, plus one value below the lowest score and one above
   the highest. Every distinct split of the sorted training scores is tried once, so the best
   training accuracy is exact (no grid resolution), and no training score ever sits on a
   threshold. Scores are compared in float64.
4. Ties: of all candidates with the best training accuracy, the **smallest** threshold wins
   (what ``argmax`` over ascending thresholds gives; deterministic, independent of pair order).
5. Reported: the 10 held-out accuracies, their mean and their population standard deviation
   (``numpy.std``, ``ddof=0``, as InsightFace), and the 10 thresholds.

InsightFace (``recognition/arcface_torch/eval/verification.py``) does the same with squared
Euclidean distances on a fixed grid ``np.arange(0, 4, 0.01)``, predicting same when ``d < t``.
For unit vectors ``d = 2 - 2 cos``, so that is the cosine grid ``1 - t / 2`` (step 0.005) with
``cos > 1 - t/2``; its ``argmax`` picks the smallest distance, i.e. the **largest** cosine
threshold among ties. ``candidates="insightface"`` reproduces that grid and tie-break. The grid
can miss the best split between two close scores, so it may read slightly lower.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Candidates = Literal["midpoints", "insightface"]
CANDIDATE_MODES: tuple[str, ...] = ("midpoints", "insightface")


@dataclass(frozen=True)
class FoldResult:
    """Outcome of the k-fold protocol; accuracies are fractions in 0..1."""

    fold_accuracies: np.ndarray     # (n_folds,) held-out accuracy of each fold
    thresholds: np.ndarray          # (n_folds,) threshold chosen on the other folds
    train_accuracies: np.ndarray    # (n_folds,) accuracy of that threshold on its 9 folds

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_accuracies))

    @property
    def std(self) -> float:
        """Population standard deviation over folds (``ddof=0``, as InsightFace reports)."""
        return float(np.std(self.fold_accuracies))


def check_scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if s.size == 0:
        raise ValueError("no scores given")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{int(np.sum(~np.isfinite(s)))} scores are NaN or infinite")
    return s, y


def candidate_thresholds(scores: np.ndarray, mode: Candidates = "midpoints") -> np.ndarray:
    """Ascending thresholds worth trying on ``scores`` (see the module docstring)."""
    if mode == "insightface":
        return np.sort(1.0 - np.arange(0.0, 4.0, 0.01) / 2.0)
    if mode != "midpoints":
        raise ValueError(f"candidates must be one of {CANDIDATE_MODES}, got {mode!r}")
    u = np.unique(np.asarray(scores, dtype=np.float64))
    mids = (u[:-1] + u[1:]) / 2.0
    return np.concatenate([[u[0] - 1.0], mids, [u[-1] + 1.0]])


def accuracies_at(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of ``score > t`` for every ``t`` of ``thresholds``, in O((n + m) log n).

    For each threshold, true accepts = positives above it and true rejects = negatives at or
    below it, counted with ``searchsorted`` on the sorted positive / negative scores.
    """
    s, y = check_scores_labels(scores, labels)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    t = np.asarray(thresholds, dtype=np.float64)
    true_accepts = pos.size - np.searchsorted(pos, t, side="right")
    true_rejects = np.searchsorted(neg, t, side="right")
    return (true_accepts + true_rejects) / s.size


def best_threshold(scores: np.ndarray, labels: np.ndarray,
                   candidates: Candidates = "midpoints") -> tuple[float, float]:
    """The accuracy-maximising threshold and its accuracy.

    Ties go to the smallest threshold (``"midpoints"``) or, as InsightFace, to the largest
    cosine threshold (``"insightface"``).
    """
    thresholds = candidate_thresholds(scores, candidates)
    acc = accuracies_at(scores, labels, thresholds)
    if candidates == "insightface":  # its first grid distance = our largest cosine
        best = int(acc.size - 1 - np.argmax(acc[::-1]))
    else:  # first maximum = smallest threshold (thresholds ascend)
        best = int(np.argmax(acc))
    return float(thresholds[best]), float(acc[best])


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs where ``score > threshold`` agrees with the label."""
    s, y = check_scores_labels(scores, labels)
    return float(np.mean((s > threshold) == y))


def k_fold_verification(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                        candidates: Candidates = "midpoints") -> FoldResult:
    """Threshold chosen on all folds but one, accuracy on that one, for every fold.

    Args:
        scores: one similarity per pair (higher = more alike).
        labels: True for same-person pairs.
        folds: the fold index of each pair (LFW view 2: 0..9).
        candidates: ``"midpoints"`` (exact, default) or ``"insightface"`` (fixed grid).
    """
    s, y = check_scores_labels(scores, labels)
    f = np.asarray(folds).ravel()
    if f.shape != s.shape:
        raise ValueError(f"folds and scores differ in length: {f.size} vs {s.size}")
    fold_ids = np.unique(f)
    if fold_ids.size < 2:
        raise ValueError(f"k-fold verification needs at least 2 folds, got {fold_ids.tolist()}")
    test_acc, thresholds, train_acc = [], [], []
    for k in fold_ids:
        held_out = f == k
        thr, tr_acc = best_threshold(s[~held_out], y[~held_out], candidates)
        thresholds.append(thr)
        train_acc.append(tr_acc)
        test_acc.append(accuracy(s[held_out], y[held_out], thr))
    return FoldResult(np.array(test_acc), np.array(thresholds), np.array(train_acc))


def split_verification(train_scores: np.ndarray, train_labels: np.ndarray,
                       test_scores: np.ndarray, test_labels: np.ndarray,
                       candidates: Candidates = "midpoints") -> dict[str, float]:
    """One train/test split (LFW view 1): threshold from train, accuracy on test.

    Training code uses this to watch accuracy without touching view 2.
    """
    thr, tr_acc = best_threshold(train_scores, train_labels, candidates)
    return {"threshold": thr, "train_accuracy": tr_acc,
            "test_accuracy": accuracy(test_scores, test_labels, thr)}


def cosine_scores(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (re-normalises, so un-normalised rows are fine)."""
    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"embedding arrays differ in shape: {a.shape} vs {b.shape}")
    na = np.maximum(np.linalg.norm(a, axis=1), 1e-12)
    nb = np.maximum(np.linalg.norm(b, axis=1), 1e-12)
    return np.einsum("ij,ij->i", a, b) / (na * nb)
