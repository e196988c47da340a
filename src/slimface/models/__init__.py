"""Backbones and heads, built by name from a registry.

Family modules register themselves on import; the list below is the one place that names
them, so ``create_backbone`` sees every family without the caller importing anything.
"""
from __future__ import annotations

import importlib

from slimface.models._registry import (BACKBONES, HEADS, create_backbone, create_head,
                                       list_backbones, list_heads, register_backbone,
                                       register_head)

_FAMILIES = ("dlib_resnet", "face_resnet", "mobilefacenet", "heads", "students", "graph",
             "pretrained")

for _family in _FAMILIES:
    try:
        importlib.import_module(f"slimface.models.{_family}")
    except ModuleNotFoundError as _exc:  # a family not written yet
        if _exc.name != f"slimface.models.{_family}":
            raise

__all__ = ["BACKBONES", "HEADS", "create_backbone", "create_head", "list_backbones",
           "list_heads", "register_backbone", "register_head"]
