"""Backbones and heads, built by name from a registry.

Family modules register themselves on import. Reading a registry through this package
(``create_backbone``, ``BACKBONES``...) imports every family first, so ``create_backbone``
sees them all (the QAT ``quantized`` one included) without the caller importing anything.
The families are imported on that first read, not with the package: the model cards
(:mod:`slimface.models.pretrained`) and the numpy side of inference
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

#: The modules that register backbones and heads: the one place that names them.
FAMILIES = ("dlib_resnet", "face_resnet", "graph", "heads", "mobilefacenet", "pretrained",
            "quantized", "students")

__all__ = ["BACKBONES", "HEADS", "create_backbone", "create_head", "list_backbones",
           "list_heads", "register_backbone", "register_head"]


def __getattr__(name: str) -> Any:
    """The registry's names, with every family registered first."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")
    registry = importlib.import_module(f"{__name__}._registry")
    value = getattr(registry, name)
    globals()[name] = value  # later reads skip this function
    return value
