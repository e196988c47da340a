"""Parameter and multiply-accumulate counts, measured by our own forward hooks.

Why our own counter: the papers' tables (Table 3 of Zhou et al. 2018's quantized Face-ResNet,
MobileFaceNets' 221M) are the targets, and a counter we can read is the only way to know which
convention a number follows.

Convention: one multiply-accumulate (MAC) per weight use in ``Conv2d`` (groups honoured) and
``Linear`` layers, i.e. ``out_elements * (in_channels / groups) * kh * kw``; the bias add is
not counted. BatchNorm, activations, pooling, SE gating multiplies and residual adds are *not*
counted as MACs (they are elementwise and foldable or negligible). Parameters are every
parameter tensor's element count (BN affine weights included, running stats excluded).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not), buffers excluded."""
    return sum(p.numel() for p in model.parameters())


def _conv_macs(module: nn.Conv2d, out: torch.Tensor) -> int:
    k = math.prod(module.kernel_size) * (module.in_channels // module.groups)
    return int(out[0].numel() * k)


def _linear_macs(module: nn.Linear, out: torch.Tensor) -> int:
    return int(out[0].numel() // module.out_features * module.out_features * module.in_features)


def count_macs(model: nn.Module, input_size: tuple[int, int], channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass on one image of ``input_size`` (H, W).

    Subclasses of Conv2d / Linear (quantized layers) are counted like their float parents.
    """
    total = [0]

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            total[0] += _conv_macs(module, out)
        elif isinstance(module, nn.Linear):
            total[0] += _linear_macs(module, out)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        with torch.no_grad():
            model(torch.zeros(1, channels, *input_size, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]


def profile_model(model: nn.Module, input_size: tuple[int, int] | None = None) -> dict[str, int]:
    """``{"params", "macs"}`` for ``model`` at ``input_size`` (default ``model.input_size``)."""
    size = tuple(input_size or getattr(model, "input_size"))
    return {"params": count_params(model), "macs": count_macs(model, size)}  # type: ignore[arg-type]
