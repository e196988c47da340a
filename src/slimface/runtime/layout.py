"""The memory layout of an activation, as the runtime's layers branch on it."""
from __future__ import annotations

import torch


def tensor_layout(x: torch.Tensor) -> str:
    """``"channels_last"`` (a 4-d NHWC tensor that is not also plain contiguous, as 1x1
    maps are), ``"contiguous"`` or ``"strided"``."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return "channels_last"
    return "contiguous" if x.is_contiguous() else "strided"
