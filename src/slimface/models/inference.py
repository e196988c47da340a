"""Batch inference of any backbone on aligned crops: the single place that turns uint8 crops
into L2-normalised embeddings, so eval, gallery, distillation and export all agree on
layout, flip handling and normalisation."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from slimface.conventions import FLIP_MODES, FlipMode  # noqa: F401 - re-exported


def crops_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 NHWC RGB -> float32 NCHW in 0..255 (the backbone contract)."""
    if crops.ndim == 3:
        crops = crops[None]
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def combine_flip(e: np.ndarray, ef: np.ndarray, flip: FlipMode) -> np.ndarray:
    """Raw embeddings of crops and of their mirrors -> one feature per crop (each view
    normalised first, then summed or concatenated; see :func:`embed_crops`)."""
    e, ef = l2_normalize(e), l2_normalize(ef)
    return e + ef if flip == "sum" else np.concatenate([e, ef], axis=1)


def embed_batches(raw: Callable[[np.ndarray], np.ndarray], crops: np.ndarray,
                  embedding_dim: int, batch_size: int = 64, flip: FlipMode = "none",
                  normalize: bool = True) -> np.ndarray:
    """:func:`embed_crops` for any ``raw`` (uint8 NHWC crops -> float raw embeddings): the
    batching, flip and normalisation every runtime shares (PyTorch here, ONNX Runtime in
    ``runtime/ort_embed``). A batch and its mirror images go to ``raw`` as one batch."""
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


@torch.inference_mode()
def embed_crops(model: nn.Module, crops: np.ndarray, batch_size: int = 64,
                flip: FlipMode = "none", normalize: bool = True,
                device: torch.device | str = "cpu") -> np.ndarray:
    """Embed uint8 NHWC crops; ``flip`` adds the mirror image by summing or concatenating.

    Summing (InsightFace) keeps the dimension; concatenating is the 2x-wide feature of Zhou et
    al. (2018)'s quantized Face-ResNet. Each half is normalised before combining so neither
    view dominates. The crops and their mirrors go through the model as one batch: one
    forward pass of two images costs much less than two passes of one (a single photo's
    face is the common case), and in eval mode the batch does not change the numbers.
    ``device`` is where ``model`` lives (its batches are moved there).
    """
    if model.training:  # walking the module tree costs ~1 ms a call otherwise
        model.eval()
    return embed_batches(lambda x: model(crops_to_tensor(x).to(device)).float().cpu().numpy(),
                         crops,
                         int(getattr(model, "embedding_dim", 0) or 0), batch_size, flip,
                         normalize)
