"""Quantizers (larq style: a function with a custom gradient plus a module) and quantized layers.

One binary convention holds everywhere in slimface: ``sign(0) = +1`` (larq's
``sign(sign(x) + 0.1)``). The quantizers here, the bit packer (:mod:`slimface.runtime.kernel`)
and the C kernel all map ``x >= 0`` to +1 (bit 1) and ``x < 0`` to -1 (bit 0).

References:
    BNN: Courbariaux et al., "Binarized Neural Networks", https://arxiv.org/abs/1602.02830
    XNOR-Net: Rastegari et al., https://arxiv.org/abs/1603.05279
    DoReFa-Net: Zhou et al., https://arxiv.org/abs/1606.06160
    Zhou et al. (2018), "Face Recognition Method Based on Quantized Residual Convolutional
    Neural Networks" (Computer Systems & Applications 27(8)): the DoReFa rules as its eq. 4, 5
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimface._registry import Registry
from slimface.errors import ConfigError

QUANTIZERS: Registry[nn.Module] = Registry("quantizer")
BETA_MODES: tuple[str, ...] = ("none", "mean", "spatial")
DOREFA_H: tuple[str, ...] = ("tanh", "abs", "clip")


def _sign(x: torch.Tensor) -> torch.Tensor:
    """+1 for ``x >= 0``, -1 otherwise (never 0)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _SteSignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, clip_value: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip_value = clip_value
        return _sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= ctx.clip_value).to(grad.dtype), None


def ste_sign(x: torch.Tensor, clip_value: float = 1.0) -> torch.Tensor:
    """Binarize with the straight-through estimator.

    Forward: ``q(x) = +1 if x >= 0 else -1``.
    Backward: ``dq/dx = 1{|x| <= clip_value}`` (the hard-tanh gradient of BNN).
    """
    return _SteSignFn.apply(x, float(clip_value))


class _RoundSteFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, levels: int) -> torch.Tensor:
        return torch.round(x * levels) / levels

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def quantize_k(x: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa's ``q_k(x) = round((2^k - 1) x) / (2^k - 1)`` for x in [0, 1].

    Backward: identity (straight-through), as in DoReFa-Net.
    """
    return _RoundSteFn.apply(x, (1 << bits) - 1)


def xnor_weight(w: torch.Tensor, per_channel: bool = True, clip_value: float = 1.0
                ) -> torch.Tensor:
    """XNOR-Net weights ``alpha * sign(W)`` with ``alpha = ||W||_1 / n``.

    ``alpha`` is per output channel (dim 0) or one per layer. Backward: the STE of
    :func:`ste_sign` for the sign, the true gradient for ``alpha``.
    """
    alpha = xnor_alpha(w, per_channel)
    return alpha * ste_sign(w, clip_value)


def xnor_alpha(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """The L1 scale of XNOR-Net, shaped to broadcast against ``w``."""
    if per_channel and w.dim() > 1:
        return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    return w.abs().mean()


def dorefa_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa k-bit weights: ``2 q_k(tanh(W) / (2 max|tanh(W)|) + 1/2) - 1``.

    Eq. 4 of Zhou et al. (2018). ``bits == 1`` falls back to the XNOR rule with one
    ``alpha = E|W|`` per layer.
    Backward: straight-through through the rounding, true gradient through tanh.
    """
    if bits == 1:
        return xnor_weight(w, per_channel=False, clip_value=float("inf"))
    t = torch.tanh(w)
    t = t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5
    return 2 * quantize_k(t, bits) - 1


def dorefa_activation(x: torch.Tensor, bits: int, h: str = "clip") -> torch.Tensor:
    """DoReFa k-bit activations: ``q_k(h(x))`` with h one of :data:`DOREFA_H`.

    Eq. 5 of Zhou et al. (2018). ``tanh``: 0.5 (tanh(x) + 1); ``abs``: min(1, |x|);
    ``clip``: clip(x, 0, 1).
    Backward: straight-through through the rounding, true gradient through h.
    """
    if h == "tanh":
        y = 0.5 * (torch.tanh(x) + 1)
    elif h == "abs":
        y = x.abs().clamp(max=1.0)
    elif h == "clip":
        y = x.clamp(0.0, 1.0)
    else:
        raise ConfigError(f"unknown DoReFa activation function h={h!r}; choose one of {DOREFA_H}")
    return quantize_k(y, bits)


class Quantizer(nn.Module):
    """Base of quantizer modules: ``precision`` is the number of bits a value takes."""

    precision: int = 32

    def extra_repr(self) -> str:
        return f"precision={self.precision}"


@QUANTIZERS.register(name="ste_sign", aliases=("sign", "bnn"))
class SteSign(Quantizer):
    """Module form of :func:`ste_sign` (BNN weights or activations).

    ``beta`` (XNOR-Net's activation scale) is only meaningful as an input quantizer of a
    :class:`QuantConv2d` / :class:`QuantLinear`: ``"none"``; ``"mean"`` (one ``E|x|`` per
    sample); ``"spatial"`` (the paper's K map: mean over channels of ``|x|``, averaged over
    each receptive field).
    """

    precision = 1

    def __init__(self, clip_value: float = 1.0, beta: str = "none"):
        super().__init__()
        if beta not in BETA_MODES:
            raise ConfigError(f"unknown beta mode {beta!r}; choose one of {BETA_MODES}")
        self.clip_value = float(clip_value)
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ste_sign(x, self.clip_value)

    def extra_repr(self) -> str:
        return f"precision=1, clip_value={self.clip_value}, beta={self.beta!r}"


@QUANTIZERS.register(name="xnor_weight", aliases=("xnor",))
class XnorWeight(Quantizer):
    """Module form of :func:`xnor_weight`; ``scale`` is ``"channel"`` or ``"layer"``."""

    precision = 1

    def __init__(self, scale: str = "channel", clip_value: float = 1.0):
        super().__init__()
        if scale not in ("channel", "layer"):
            raise ConfigError(f"unknown XNOR scale {scale!r}; choose 'channel' or 'layer'")
        self.scale = scale
        self.clip_value = float(clip_value)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return xnor_weight(w, self.scale == "channel", self.clip_value)

    def split(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sign(w), alpha)`` with alpha shaped (C_out,) or (1,): ``forward = alpha * sign``.

        Layers multiply alpha after the +-1 convolution, so the QAT model computes each
        output as one rounding of ``alpha * exact integer``, exactly like the deploy kernel.
        """
        alpha = xnor_alpha(w, self.scale == "channel").reshape(-1)
        return ste_sign(w, self.clip_value), alpha

    def extra_repr(self) -> str:
        return f"precision=1, scale={self.scale!r}, clip_value={self.clip_value}"


@QUANTIZERS.register(name="dorefa_weight")
class DorefaWeight(Quantizer):
    """Module form of :func:`dorefa_weight`."""

    def __init__(self, bits: int = 2):
        super().__init__()
        self.precision = _check_bits(bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return dorefa_weight(w, self.precision)

    def split(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For 1 bit, ``(sign(w), alpha)`` as :meth:`XnorWeight.split`; None otherwise."""
        if self.precision != 1:
            return None
        return ste_sign(w, float("inf")), xnor_alpha(w, False).reshape(-1)


@QUANTIZERS.register(name="dorefa_activation", aliases=("dorefa_act",))
class DorefaActivation(Quantizer):
    """Module form of :func:`dorefa_activation`."""

    def __init__(self, bits: int = 2, h: str = "clip"):
        super().__init__()
        if h not in DOREFA_H:
            raise ConfigError(f"unknown DoReFa activation function h={h!r}; "
                              f"choose one of {DOREFA_H}")
        self.precision = _check_bits(bits)
        self.h = h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dorefa_activation(x, self.precision, self.h)

    def extra_repr(self) -> str:
        return f"precision={self.precision}, h={self.h!r}"


def _check_bits(bits: int) -> int:
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ConfigError(f"bits must be an integer from 1 to 8, got {bits!r}")
    return bits


def create_quantizer(name: str, **kwargs: Any) -> nn.Module:
    """Build a quantizer by alias (``ste_sign``, ``xnor_weight``, ``dorefa_weight``...)."""
    return QUANTIZERS.create(name, **kwargs)


def activation_scale(q: nn.Module | None, x: torch.Tensor, kernel_size: tuple[int, ...],
                     stride: tuple[int, ...]) -> torch.Tensor | None:
    """XNOR-Net's beta for the input ``x`` (already padded), or None when ``q`` asks for none.

    Shared by the QAT layers and the deploy layers so both scale identically.
    """
    beta = getattr(q, "beta", "none")
    if beta == "none":
        return None
    a = x.abs()
    if beta == "mean" or x.dim() == 2:
        return a.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    k = a.mean(dim=1, keepdim=True)
    return F.avg_pool2d(k, kernel_size, stride)


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` with optional input and weight quantizers.

    With both quantizers ``None`` it is exactly ``nn.Conv2d``. With an input quantizer, zero
    padding is applied *before* quantizing, so a binary layer sees ``sign(0) = +1`` at the
    border — the convention the bit-packed kernel implements.
    """

    def __init__(self, *args: Any, input_quantizer: nn.Module | None = None,
                 weight_quantizer: nn.Module | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.input_quantizer = input_quantizer
        self.weight_quantizer = weight_quantizer
        if input_quantizer is not None and self.padding_mode != "zeros":
            raise ConfigError(f"quantized inputs need padding_mode='zeros', "
                              f"got {self.padding_mode!r}")

    def quantized_weight(self) -> torch.Tensor:
        return self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, alpha = _split_weight(self.weight_quantizer, self.weight)
        beta = None
        padding = self.padding
        if self.input_quantizer is not None:
            if isinstance(self.padding, str):
                raise ConfigError(f"quantized inputs need numeric padding, got {self.padding!r}")
            ph, pw = self.padding
            if ph or pw:
                x = F.pad(x, (pw, pw, ph, ph))
            beta = activation_scale(self.input_quantizer, x, self.kernel_size, self.stride)
            x, padding = self.input_quantizer(x), 0
        elif alpha is None:
            return self._conv_forward(x, w, self.bias)
        if self.padding_mode != "zeros":
            raise ConfigError("binary weights with scale need padding_mode='zeros'")
        y = F.conv2d(x, w, None, self.stride, padding, self.dilation, self.groups)
        return _scale_shift(y, beta, alpha, self.bias, (1, -1, 1, 1))


class QuantLinear(nn.Linear):
    """``nn.Linear`` with optional input and weight quantizers (exactly Linear when both None)."""

    def __init__(self, *args: Any, input_quantizer: nn.Module | None = None,
                 weight_quantizer: nn.Module | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.input_quantizer = input_quantizer
        self.weight_quantizer = weight_quantizer

    def quantized_weight(self) -> torch.Tensor:
        return self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, alpha = _split_weight(self.weight_quantizer, self.weight)
        beta = None
        if self.input_quantizer is not None:
            beta = activation_scale(self.input_quantizer, x, (), ())
            x = self.input_quantizer(x)
        elif alpha is None:
            return F.linear(x, w, self.bias)
        return _scale_shift(F.linear(x, w), beta, alpha, self.bias, (1, -1))


def _split_weight(q: nn.Module | None, w: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weights the conv sees and the per-channel scale applied after it (or None)."""
    if q is None:
        return w, None
    split = getattr(q, "split", None)
    parts = split(w) if split is not None else None
    return (q(w), None) if parts is None else parts


def _scale_shift(y: torch.Tensor, beta: torch.Tensor | None, alpha: torch.Tensor | None,
                 bias: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """``y * beta * alpha + bias`` in the order the deploy layers use."""
    if beta is not None:
        y = y * beta
    if alpha is not None:
        y = y * (alpha.view(shape) if alpha.numel() > 1 else alpha)
    return y if bias is None else y + bias.view(shape)
