"""Batch inference of any backbone on aligned crops: the single place that turns uint8 crops
into L2-normalised embeddings, so eval, gallery, distillation and export all agree on
layout, flip handling and normalisation."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slimface.conventions import FLIP_MODES, FlipMode  # noqa: F401 - re-exported
from slimface.models.embedding import (combine_flip, embed_batches,  # noqa: F401 - re-exported
                                       l2_normalize)


def crops_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 NHWC RGB -> float32 NCHW in 0..255 (the backbone contract)."""
    if crops.ndim == 3:
        crops = crops[None]
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()


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
