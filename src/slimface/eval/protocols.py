"""Read-outs that see what deployments see: all-pairs verification and 1:N identification.

LFW's 6,000 pairs hold 3,000 negatives, so TAR at FAR 1e-3 rests on 3 false accepts and
nothing below 1e-3 is visible; they never ask "who is this?" either. Both protocols here reuse
the images a pair list already aligned and embedded (7,701 for view 2):

* :func:`all_pairs_verification` scores every image against every other (about 29.6 million
  pairs for view 2; genuine = same person) in row blocks, keeping only the genuine scores and
  the highest impostor scores a threshold needs, so memory stays bounded whatever the set.
* :func:`identification` enrols the first image (by file name) of every identity with two or
  more images and searches with every other image of those identities (closed set: rank-1,
  rank-5); every image of a single-image identity is an impostor probe (open set: DIR, the
  detection and identification rate, at a false-alarm rate). Search is FAISS exact inner
  product on L2-normalised rows, the index and metric ``slimface gallery identify`` uses.

Conventions shared with :mod:`slimface.eval.metrics`: higher score = more alike, accept when
``score > threshold``, and the threshold at FAR ``f`` over ``n`` impostor scores is the
``(floor(f n) + 1)``-th highest. Ties in a ranking count against the probe: its rank is one
plus the number of other identities scoring at least as high as its own mate, so an answer
that depends on the order of equal scores is never credited.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ALL_PAIRS_FARS: tuple[float, ...] = (1e-3, 1e-4, 1e-5)
DIR_FARS: tuple[float, ...] = (1e-2, 1e-3)
RANKS: tuple[int, ...] = (1, 5)
#: A TAR at FAR f is printed only with at least this many / f impostor scores behind it.
MIN_FALSE_ACCEPTS = 10


def far_label(far: float) -> str:
    """``1e-4`` -> ``"1e-4"``: the suffix of JSON keys such as ``tar_at_far_1e-4``."""
    mantissa, exponent = f"{far:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def resolvable(far: float, n_impostor: int, min_false_accepts: int = MIN_FALSE_ACCEPTS) -> bool:
    """Whether ``n_impostor`` scores can support a rate at ``far``: at least
    ``min_false_accepts / far`` of them, so the threshold is not one or two lucky scores."""
    return n_impostor >= min_false_accepts / far


def identities_of(paths: Sequence[Path]) -> list[str]:
    """An LFW-style image's identity is its folder's name (``NAME/NAME_0001.jpg``)."""
    return [Path(p).parent.name for p in paths]


def _as_rows(embeddings: np.ndarray) -> np.ndarray:
    e = np.ascontiguousarray(embeddings, dtype=np.float32)
    if e.ndim != 2 or e.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array, got shape {e.shape}")
    return e


def _threshold_from_top(top_desc: np.ndarray, n_total: int, far: float) -> float:
    """The ``(floor(far n) + 1)``-th highest of ``n_total`` scores, from the top few sorted
    descending (enough of them: the caller keeps ``floor(max_far n) + 1``)."""
    allowed = int(np.floor(far * n_total + 1e-9))
    if allowed >= n_total:
        return float(np.nextafter(top_desc[-1], -np.inf))
    return float(top_desc[allowed])


# --------------------------------------------------------------------------- all pairs

@dataclass
class _TopScores:
    """The ``k`` highest of a stream of scores, kept in one small array."""

    k: int
    values: np.ndarray

    @classmethod
    def empty(cls, k: int) -> "_TopScores":
        return cls(k, np.empty(0, dtype=np.float32))

    def add(self, scores: np.ndarray) -> None:
        if scores.size > self.k:
            scores = np.partition(scores, scores.size - self.k)[-self.k:]
        merged = np.concatenate([self.values, scores])
        if merged.size > self.k:
            merged = np.partition(merged, merged.size - self.k)[-self.k:]
        self.values = merged

    def sorted_desc(self) -> np.ndarray:
        return np.sort(self.values)[::-1]


def all_pairs_verification(embeddings: np.ndarray, identities: Sequence[str],
                           fars: Sequence[float] = ALL_PAIRS_FARS,
                           block_rows: int = 512,
                           min_false_accepts: int = MIN_FALSE_ACCEPTS) -> dict[str, Any]:
    """TAR at each FAR over every pair of distinct images (cosine of L2-normalised rows).

    Works in blocks of ``block_rows`` rows against all later rows, so memory is
    ``block_rows x n`` scores plus the genuine scores and the ``floor(max(fars) n_imp) + 1``
    highest impostor scores, whatever ``n``.

    Returns:
        ``n_images``, ``n_genuine``, ``n_impostor`` and, per FAR, ``tar_at_far_<f>`` (None when
        fewer than ``min_false_accepts / f`` impostor pairs exist) and
        ``threshold_at_far_<f>``.
    """
    e = _as_rows(embeddings)
    ids = np.unique(np.asarray(identities), return_inverse=True)[1]
    if ids.size != e.shape[0]:
        raise ValueError(f"{e.shape[0]} embeddings but {ids.size} identities")
    n = e.shape[0]
    counts = np.bincount(ids)
    n_genuine = int(np.sum(counts * (counts - 1) // 2))
    n_impostor = n * (n - 1) // 2 - n_genuine
    top = _TopScores.empty(int(np.floor(max(fars) * n_impostor + 1e-9)) + 1)
    genuine: list[np.ndarray] = []
    for start in range(0, n - 1, block_rows):
        stop = min(start + block_rows, n)
        scores = e[start:stop] @ e[start:].T                     # rows vs themselves and later
        later = np.triu(np.ones((stop - start, n - start), dtype=bool), k=1)
        same = ids[start:stop, None] == ids[None, start:]
        genuine.append(scores[later & same])
        top.add(scores[later & ~same])
    gen = np.concatenate(genuine) if genuine else np.empty(0, np.float32)
    out: dict[str, Any] = {"n_images": n, "n_genuine": n_genuine, "n_impostor": n_impostor}
    top_desc = top.sorted_desc()
    for far in fars:
        key = far_label(far)
        if n_genuine == 0 or n_impostor == 0 or not resolvable(far, n_impostor, min_false_accepts):
            out[f"tar_at_far_{key}"] = None
            out[f"threshold_at_far_{key}"] = None
            continue
        thr = _threshold_from_top(top_desc, n_impostor, far)
        out[f"tar_at_far_{key}"] = float(np.mean(gen > thr))
        out[f"threshold_at_far_{key}"] = thr
    return out


# --------------------------------------------------------------------------- 1:N

@dataclass(frozen=True)
class IdentificationSplit:
    """Who is enrolled, who searches: indices into the embedded images."""

    gallery: np.ndarray          # one image per identity with 2+ images (first by file name)
    gallery_ids: list[str]
    mated: np.ndarray            # the other images of those identities
    mated_ids: list[str]
    impostors: np.ndarray        # every image of a single-image identity


def identification_split(paths: Sequence[Path],
                         identities: Sequence[str] | None = None) -> IdentificationSplit:
    """Gallery = first image by file name of each identity with 2+ images; the rest probe."""
    ids = list(identities) if identities is not None else identities_of(paths)
    by_id: dict[str, list[int]] = {}
    for i in sorted(range(len(paths)), key=lambda i: (ids[i], Path(paths[i]).name, i)):
        by_id.setdefault(ids[i], []).append(i)
    gallery, gallery_ids, mated, mated_ids, impostors = [], [], [], [], []
    for name, members in sorted(by_id.items()):
        if len(members) == 1:
            impostors.append(members[0])
            continue
        gallery.append(members[0])
        gallery_ids.append(name)
        mated.extend(members[1:])
        mated_ids.extend([name] * (len(members) - 1))
    as_idx = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
    return IdentificationSplit(as_idx(gallery), gallery_ids, as_idx(mated), mated_ids,
                               as_idx(impostors))


def _search_all(gallery: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS exact inner product, every gallery row returned: (scores, ids), best first."""
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    scores, order = index.search(probes, gallery.shape[0])
    return scores, order


def identification(embeddings: np.ndarray, paths: Sequence[Path],
                   identities: Sequence[str] | None = None,
                   ranks: Sequence[int] = RANKS,
                   dir_fars: Sequence[float] = DIR_FARS,
                   min_false_accepts: int = MIN_FALSE_ACCEPTS) -> dict[str, Any]:
    """Closed-set rank-k and open-set DIR at FAR of a 1:N search (see the module docstring).

    Returns:
        ``n_gallery``, ``n_mated_probes``, ``n_impostor_probes``, ``rank<k>`` per k,
        ``dir_at_far_<f>`` per FAR (None when the impostor probes cannot resolve it) with
        ``dir_threshold_at_far_<f>``; rank-k is None when there is no mated probe.
    """
    e = _as_rows(embeddings)
    split = identification_split(paths, identities)
    out: dict[str, Any] = {"n_gallery": int(split.gallery.size),
                           "n_mated_probes": int(split.mated.size),
                           "n_impostor_probes": int(split.impostors.size)}
    if split.gallery.size == 0 or split.mated.size == 0:
        out.update({f"rank{k}": None for k in ranks})
        out.update({f"dir_at_far_{far_label(f)}": None for f in dir_fars})
        return out
    gal = np.ascontiguousarray(e[split.gallery])
    scores, order = _search_all(gal, np.ascontiguousarray(e[split.mated]))
    mate_col = np.asarray([split.gallery_ids.index(m) for m in split.mated_ids])
    mate_score = scores[np.arange(len(mate_col)), np.argmax(order == mate_col[:, None], axis=1)]
    # rank = 1 + other identities scoring at least as high as the mate (ties count against)
    rank = np.sum(scores >= mate_score[:, None], axis=1)
    for k in ranks:
        out[f"rank{k}"] = float(np.mean(rank <= k))
    top1_correct = rank == 1
    top1_score = scores[:, 0]
    impostor_top = (_search_all(gal, np.ascontiguousarray(e[split.impostors]))[0][:, 0]
                    if split.impostors.size else np.empty(0, np.float32))
    top_desc = np.sort(impostor_top)[::-1]
    for far in dir_fars:
        key = far_label(far)
        if not resolvable(far, impostor_top.size, min_false_accepts):
            out[f"dir_at_far_{key}"] = None
            out[f"dir_threshold_at_far_{key}"] = None
            continue
        thr = _threshold_from_top(top_desc, impostor_top.size, far)
        out[f"dir_at_far_{key}"] = float(np.mean(top1_correct & (top1_score > thr)))
        out[f"dir_threshold_at_far_{key}"] = thr
    return out


def deployment_readouts(embeddings: np.ndarray, paths: Sequence[Path]) -> dict[str, Any]:
    """Both read-outs over one set of embedded images, as JSON-ready fields.

    Keys: ``tar_at_far`` (``{"1e-3": ..., "1e-4": ..., "1e-5": ...}``, all pairs), ``rank1``,
    ``rank5``, ``dir_at_far`` (``{"1e-2": ..., "1e-3": ...}``), and the full dicts of
    :func:`all_pairs_verification` (``all_pairs``: counts, thresholds) and
    :func:`identification` (``identification``: counts, thresholds). A figure the data cannot
    resolve is None.
    """
    ids = identities_of(paths)
    pairs = all_pairs_verification(embeddings, ids)
    ident = identification(embeddings, paths, ids)
    out: dict[str, Any] = {
        "tar_at_far": {far_label(f): pairs[f"tar_at_far_{far_label(f)}"] for f in ALL_PAIRS_FARS},
        "dir_at_far": {far_label(f): ident[f"dir_at_far_{far_label(f)}"] for f in DIR_FARS}}
    out.update({f"rank{k}": ident[f"rank{k}"] for k in RANKS})
    return {**out, "all_pairs": pairs, "identification": ident}
