"""Backbones and heads, built by name from a registry.

Family modules register themselves on import; the import below is the one place that names
them, so ``create_backbone`` sees every family (the QAT ``quantized`` one included) without
the caller importing anything.
"""
from __future__ import annotations

from slimface.models._registry import (BACKBONES, HEADS, create_backbone, create_head,
                                       list_backbones, list_heads, register_backbone,
                                       register_head)

# after the registry: family modules may use the names above while they register
from slimface.models import (dlib_resnet, face_resnet, graph, heads, mobilefacenet,  # noqa: E402,F401,I001
                             pretrained, quantized, students)

__all__ = ["BACKBONES", "HEADS", "create_backbone", "create_head", "list_backbones",
           "list_heads", "register_backbone", "register_head"]
