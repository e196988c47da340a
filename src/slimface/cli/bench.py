"""``slimface bench WHAT``: speed benchmarks that print a table (stderr) and JSON (stdout)."""
from __future__ import annotations

from typing import Any

from slimface.cli._subtopics import register_group


def register(sub: Any) -> None:
    register_group(sub, "bench", ("kernels", "models", "train", "pq", "gallery", "int8"),
                   "speed benchmarks (baseline measured in the same run)")
