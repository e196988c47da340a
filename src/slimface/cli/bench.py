"""``slimface bench WHAT``: speed benchmarks that print a table (stderr) and JSON (stdout)."""
from __future__ import annotations

from typing import Any

from slimface.cli import (bench_gallery, bench_int8, bench_kernels, bench_models,
                          bench_photos, bench_pq, bench_train)
from slimface.cli._subtopics import register_group


def register(sub: Any) -> None:
    register_group(sub, "bench", (bench_kernels, bench_models, bench_train, bench_pq,
                                  bench_gallery, bench_int8, bench_photos),
                   "speed benchmarks (baseline measured in the same run)")
