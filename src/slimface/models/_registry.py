"""Backbone and head registries (timm-style): ``@register_backbone`` keys on the function name.

Every backbone module built here follows one contract so that alignment, evaluation,
compression and export can treat them alike:

* ``forward(x)`` takes float32 NCHW **RGB in 0..255** (pixel normalisation lives inside the
  model, so exported and compressed files need no separate preprocessing spec);
* it returns the un-normalised embedding, shape ``(N, embedding_dim)``;
* attributes ``template`` (alignment template name, see ``slimface.align.templates``),
  ``input_size`` ``(H, W)`` and ``embedding_dim``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # annotations only: the registries load without PyTorch
    from torch import nn

from slimface._registry import Registry

#: The modules that register backbones and heads: the one place that names them.
FAMILIES = ("dlib_resnet", "face_resnet", "graph", "heads", "mobilefacenet", "pretrained",
            "quantized", "students")


def load_families() -> None:
    """Import every family module (each registers its backbones or heads on import): the
    first lookup in either registry does it, so that a name is found wherever it is looked
    up, and importing ``slimface.models`` alone costs no PyTorch import."""
    for family in FAMILIES:
        importlib.import_module(f"slimface.models.{family}")


BACKBONES: Registry[nn.Module] = Registry("backbone", populate=load_families)
HEADS: Registry[nn.Module] = Registry("head", populate=load_families)


def register_backbone(fn: Callable[..., nn.Module] | None = None, **kw: Any) -> Any:
    return BACKBONES.register(fn, **kw)


def register_head(fn: Callable[..., nn.Module] | None = None, **kw: Any) -> Any:
    return HEADS.register(fn, **kw)


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone; ``None`` kwargs are dropped so factory defaults apply."""
    return BACKBONES.create(name, **kwargs)


def list_backbones() -> list[str]:
    return BACKBONES.names()


def create_head(name: str, **kwargs: Any) -> nn.Module:
    return HEADS.create(name, **kwargs)


def list_heads() -> list[str]:
    return HEADS.names()
