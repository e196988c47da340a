"""Backbones and heads, built by name from a registry.

Family modules register themselves on import. The first lookup in a registry
(``create_backbone``, ``BACKBONES``..., from here or from ``_registry``) imports every family
(``_registry.FAMILIES``), so a name is found (the QAT ``quantized`` one included) without
the caller importing anything. The families are imported then, not with the package: the
model cards (:mod:`slimface.models.pretrained`) and the numpy side of inference
(:mod:`slimface.models.embedding`) load without PyTorch, which costs over a second to import
and which a command running a model in ONNX Runtime never needs.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slimface.models._registry import (BACKBONES, HEADS, create_backbone, create_head,
                                           list_backbones, list_heads, register_backbone,
                                           register_head)

__all__ = ["BACKBONES", "HEADS", "create_backbone", "create_head", "list_backbones",
           "list_heads", "register_backbone", "register_head"]


def __getattr__(name: str) -> Any:
    """The registry's names (the first lookup in a registry imports every family)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}._registry"), name)
    globals()[name] = value  # later reads skip this function
    return value
