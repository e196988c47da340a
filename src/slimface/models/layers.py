"""Small layers shared by the backbone families.

* :class:`Normalize` keeps pixel normalisation *inside* a backbone, so every model takes the
  same input (float32 NCHW RGB in 0..255, see ``models/_registry.py``) and exported or
  compressed files need no separate preprocessing spec.
* :class:`Affine` is a learnable per-channel ``x * weight + bias``: what a BatchNorm becomes
  once folded for inference (dlib's ``affine_`` layer). Unlike ``BatchNorm2d`` it has no batch
  statistics, so a pretrained network computes the same function in ``train()`` and
  ``eval()`` and fine-tuning on small CPU batches does not drift it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from slimface.errors import ModelError


def _per_channel(values: float | Sequence[float], channels: int, what: str) -> torch.Tensor:
    """A (1, C, 1, 1) float32 tensor from a scalar or a length-C sequence."""
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(channels).clone()
    if t.numel() != channels:
        raise ModelError(f"{what} needs 1 or {channels} values, got {t.numel()}")
    return t.view(1, channels, 1, 1)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with fixed (non-trainable) buffers.

    Args:
        mean: per-channel means in input units (0..255 pixels), or one value for all.
        std: per-channel divisors, or one value for all.
        channels: number of input channels.
    """

    def __init__(self, mean: float | Sequence[float] = 127.5,
                 std: float | Sequence[float] = 128.0, channels: int = 3):
        super().__init__()
        std_t = _per_channel(std, channels, "std")
        if bool((std_t == 0).any()):
            raise ModelError(f"std must be non-zero, got {std_t.flatten().tolist()}")
        self.register_buffer("mean", _per_channel(mean, channels, "mean"))
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = [round(v, 3) for v in self.mean.flatten().tolist()]
        std = [round(v, 3) for v in self.std.flatten().tolist()]
        return f"mean={mean}, std={std}"


class Affine(nn.Module):
    """Learnable per-channel scale and shift: ``y = x * weight + bias`` over dim 1.

    Parameter names match ``BatchNorm2d`` (``weight``, ``bias``) so folding and compression
    code can treat both alike; :meth:`from_batchnorm` builds the inference-time equivalent
    of a BatchNorm.

    Args:
        num_features: number of channels.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> "Affine":
        """The affine map an eval-mode BatchNorm computes (running statistics folded in)."""
        out = cls(bn.num_features)
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            out.weight.copy_(scale)
            shift = -bn.running_mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
            out.bias.copy_(shift)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}"
