"""``slimface compress METHOD``: binary / k-bit quantization, product quantization, distillation."""
from __future__ import annotations

from typing import Any

from slimface.cli import compress_distill, compress_pq, compress_quantize
from slimface.cli._subtopics import register_group


def register(sub: Any) -> None:
    register_group(sub, "compress", (compress_quantize, compress_pq, compress_distill),
                   "compress a model into a .slim deploy file")
