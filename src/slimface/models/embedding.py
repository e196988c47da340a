"""Raw embeddings -> the features every path compares: flip handling, batching and L2
normalisation, in numpy alone.

:mod:`slimface.models.inference` runs PyTorch backbones through these, and ONNX Runtime
(:mod:`slimface.runtime.ort_embed`, :mod:`slimface.runtime.ort_twin`) through the same
functions, so every runtime gives the same vectors; this module loads without PyTorch.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from slimface.conventions import FLIP_MODES, FlipMode


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows (the last axis) scaled to unit length; all-zero rows stay zero."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def combine_flip(e: np.ndarray, ef: np.ndarray, flip: FlipMode) -> np.ndarray:
    """Raw embeddings of crops and of their mirrors -> one feature per crop (each view
    normalised first, then summed or concatenated; see
    :func:`slimface.models.inference.embed_crops`)."""
    e, ef = l2_normalize(e), l2_normalize(ef)
    return e + ef if flip == "sum" else np.concatenate([e, ef], axis=1)


def embed_batches(raw: Callable[[np.ndarray], np.ndarray], crops: np.ndarray,
                  embedding_dim: int, batch_size: int = 64, flip: FlipMode = "none",
                  normalize: bool = True) -> np.ndarray:
    """``embed_crops`` for any ``raw`` (uint8 NHWC crops -> float raw embeddings): the
    batching, flip and normalisation every runtime shares (PyTorch, ONNX Runtime). A batch
    and its mirror images go to ``raw`` as one batch."""
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
    crops = crops[None] if crops.ndim == 3 else crops
    out = []
    for start in range(0, len(crops), batch_size):
        x = crops[start:start + batch_size]
        if flip == "none":
            out.append(raw(x))
            continue
        both = raw(np.concatenate([x, x[:, :, ::-1]]))
        out.append(combine_flip(both[:len(x)], both[len(x):], flip))
    dim = embedding_dim * (2 if flip == "concat" else 1)
    emb = np.concatenate(out, axis=0) if out else np.zeros((0, dim), np.float32)
    return l2_normalize(emb).astype(np.float32) if normalize else emb.astype(np.float32)
