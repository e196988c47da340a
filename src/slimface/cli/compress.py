"""``slimface compress METHOD``: binary / k-bit quantization, product quantization, distillation."""
from __future__ import annotations

from typing import Any

from slimface.cli._subtopics import register_group


def register(sub: Any) -> None:
    register_group(sub, "compress", ("quantize", "pq", "distill"),
                   "compress a model into a .slim deploy file")
