"""The ``quantized`` backbone: any registry backbone with its convs and FCs quantized for QAT
(:func:`slimface.quant.qat.quantize_model`), so QAT runs from a config like any other model."""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from slimface.models._registry import create_backbone, register_backbone
from slimface.quant.qat import quantize_model


@register_backbone(name="quantized")
def create_quantized_backbone(base: str = "face_resnet_c",
                              base_kwargs: dict[str, Any] | None = None, scheme: str = "xnor",
                              w_bits: int = 1, a_bits: int | None = None,
                              keep_float: Sequence[str] | None = None, scale: str = "channel",
                              beta: str = "none", h: str = "clip", **_: Any) -> nn.Module:
    """A registry backbone ``base`` passed through :func:`quantize_model` (for QAT configs).

    With no arguments this is Face-ResNet C with XNOR weights and activations everywhere
    except the first conv.

    Every argument is JSON, so trainer checkpoints (``backbone_kwargs``) rebuild it. The model
    remembers ``backbone_name`` / ``backbone_kwargs`` of its float skeleton, which is what a
    ``.slim`` deploy file records as its architecture.
    """
    model = create_backbone(base, **dict(base_kwargs or {}))
    quantize_model(model, scheme, w_bits, a_bits, keep_float, scale, beta, h)
    model.backbone_name, model.backbone_kwargs = base, dict(base_kwargs or {})
    return model
