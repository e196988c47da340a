"""``quantize_model``: swap a float network's convs and FCs for quantized ones (QAT-ready).

The ``quantized`` backbone (:mod:`slimface.models.quantized`) is a registry model passed
through :func:`quantize_model`.

Model Q of Zhou et al. (2018), "Face Recognition Method Based on Quantized Residual
Convolutional Neural Networks", is model C with every conv and FC binarized except the first
conv (Conv1a, fed by normalised pixels, whose sign would be meaningless) and the classifier Fc6
(a head, outside the backbone). Schemes: ``bnn`` (sign weights), ``xnor`` (sign weights times a
per channel or per layer L1 scale alpha, optional activation scale beta) and ``dorefa`` (k-bit
weights, eq. 4 of that paper, and optionally k-bit activations, eq. 5).

When activations are quantized, the backbone's ReLU/PReLU modules become ``nn.Identity``: the
next layer's input quantizer applies the sign (or DoReFa's h) itself. Because sign is monotone
it commutes with max pooling, a float model's conv -> BN -> act -> pool block runs as conv ->
BN -> pool -> sign, the order Zhou et al. ask for. That order starves the sign (the max of four
zero-mean BN outputs is positive ~15 times in 16); Face-ResNet's ``act_order=
"conv_pool_bn_act"`` (XNOR-Net's block: BN after the pool) keeps the bits balanced and is
what a binary-activation model should be built with.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from slimface.quant.quantizers import (DorefaActivation, DorefaWeight, QuantConv2d,
                                          QuantLinear, SteSign, XnorWeight)
from slimface.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMES: tuple[str, ...] = ("bnn", "xnor", "dorefa")
FLOAT_BITS = 32
_ACTIVATIONS = (nn.ReLU, nn.PReLU, nn.ReLU6, nn.LeakyReLU)


def quantize_model(model: nn.Module, scheme: str = "xnor", w_bits: int = 1,
                   a_bits: int | None = None, keep_float: Sequence[str] | None = None,
                   scale: str = "channel", beta: str = "none", h: str = "clip",
                   clip_value: float = 1.0) -> nn.Module:
    """Replace ``model``'s Conv2d/Linear layers in place by quantized ones and return it.

    Args:
        model: float network (weights are kept as the latent float weights).
        scheme: one of :data:`SCHEMES`.
        w_bits: weight bits; must be 1 for ``bnn`` and ``xnor``.
        a_bits: activation bits. ``None`` means the scheme's default: binary (1) for ``bnn``
            and ``xnor`` as in BNN / XNOR-Net, float for ``dorefa``. ``32`` keeps float
            activations (binary-weight networks).
        keep_float: module paths left in float. Default: the model's own ``keep_float``
            attribute when it has one, else its first Conv2d, plus its last Linear unless the
            model is a backbone (has ``embedding_dim``; its classifier is a separate head).
        scale: XNOR alpha per output ``"channel"`` or per ``"layer"``.
        beta: XNOR activation scale (``"none"``, ``"mean"``, ``"spatial"``).
        h: DoReFa activation function (``"tanh"``, ``"abs"``, ``"clip"``).
        clip_value: STE gradient window of the sign.
    """
    a_bits = _resolve_bits(scheme, w_bits, a_bits)
    keep = tuple(keep_float) if keep_float is not None else default_keep_float(model)
    _check_paths(model, keep)
    swapped = []
    for path, module in list(model.named_modules()):
        if path in keep or not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if isinstance(module, (QuantConv2d, QuantLinear)):
            raise ConfigError(f"layer {path!r} is already quantized; quantize a float model")
        wq, iq = _quantizers(scheme, w_bits, a_bits, scale, beta, h, clip_value)
        _set_submodule(model, path, _quantized_copy(module, wq, iq))
        swapped.append(path)
    if a_bits is not None:
        _drop_activations(model)
    model.quantization = {"scheme": scheme, "w_bits": w_bits, "a_bits": a_bits,
                          "keep_float": list(keep), "scale": scale, "beta": beta, "h": h,
                          "layers": swapped}
    log.info("quantized %d layers with %s (w%d, a%s); float: %s", len(swapped), scheme, w_bits,
             a_bits if a_bits is not None else "float", ", ".join(keep) or "none")
    return model


def _resolve_bits(scheme: str, w_bits: int, a_bits: int | None) -> int | None:
    """Validate bit widths; returns the activation bits (None = float activations)."""
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; choose one of {SCHEMES}")
    if scheme in ("bnn", "xnor") and w_bits != 1:
        raise ConfigError(f"scheme {scheme!r} has 1-bit weights; got w_bits={w_bits} "
                          f"(use scheme 'dorefa' for k-bit weights)")
    if not 1 <= w_bits <= 8:
        raise ConfigError(f"w_bits must be 1..8, got {w_bits}")
    if a_bits is None:
        a_bits = 1 if scheme in ("bnn", "xnor") else None
    elif a_bits == FLOAT_BITS:
        a_bits = None
    elif not 1 <= a_bits <= 8:
        raise ConfigError(f"a_bits must be 1..8 or 32 (float), got {a_bits}")
    if scheme in ("bnn", "xnor") and a_bits not in (None, 1):
        raise ConfigError(f"scheme {scheme!r} has binary or float activations; got "
                          f"a_bits={a_bits} (use 'dorefa' for k-bit activations)")
    return a_bits


def default_keep_float(model: nn.Module) -> tuple[str, ...]:
    """Model Q's float layers: first conv, and the last FC when it is a classifier."""
    own = getattr(model, "keep_float", None)
    if own is not None:
        return tuple(own)
    convs = [p for p, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [p for p, m in model.named_modules() if isinstance(m, nn.Linear)]
    keep = convs[:1]
    if linears and not hasattr(model, "embedding_dim"):
        keep.append(linears[-1])
    return tuple(keep)


def _check_paths(model: nn.Module, keep: Sequence[str]) -> None:
    names = dict(model.named_modules())
    bad = [k for k in keep if k not in names]
    if bad:
        layers = [p for p, m in names.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
        raise ConfigError(f"keep_float names unknown layers {bad}; layers are {layers[:12]}"
                          f"{' ...' if len(layers) > 12 else ''}")


def _quantizers(scheme: str, w_bits: int, a_bits: int | None, scale: str, beta: str, h: str,
                clip_value: float) -> tuple[nn.Module, nn.Module | None]:
    if scheme == "bnn":
        wq: nn.Module = SteSign(clip_value)
    elif scheme == "xnor":
        wq = XnorWeight(scale, clip_value)
    else:
        wq = DorefaWeight(w_bits)
    if a_bits is None:
        return wq, None
    if a_bits == 1:
        return wq, SteSign(clip_value, beta=beta if scheme == "xnor" else "none")
    return wq, DorefaActivation(a_bits, h)


def _quantized_copy(module: nn.Module, wq: nn.Module, iq: nn.Module | None) -> nn.Module:
    """The quantized twin of a Conv2d/Linear, sharing its latent float weights' values."""
    if isinstance(module, nn.Conv2d):
        new: nn.Module = QuantConv2d(
            module.in_channels, module.out_channels, module.kernel_size, module.stride,
            module.padding, module.dilation, module.groups, module.bias is not None,
            module.padding_mode, input_quantizer=iq, weight_quantizer=wq)
    else:
        new = QuantLinear(module.in_features, module.out_features, module.bias is not None,
                          input_quantizer=iq, weight_quantizer=wq)
    new.to(module.weight.device, module.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(module.weight)
        if module.bias is not None:
            new.bias.copy_(module.bias)
    new.train(module.training)
    return new


def _drop_activations(model: nn.Module) -> None:
    """ReLU-like activations before a sign would map everything to +1: make them identity."""
    for path, module in list(model.named_modules()):
        if isinstance(module, _ACTIVATIONS):
            _set_submodule(model, path, nn.Identity())


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


def quantized_layers(model: nn.Module) -> dict[str, Any]:
    """Paths of the quantized layers in ``model`` (for reports and tests)."""
    return {p: m for p, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}
