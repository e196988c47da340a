"""``slimface bench kernels`` pieces on tiny inputs (no timing assertions)."""
from __future__ import annotations

import numpy as np

from slimface.cli.bench_kernels import _summary, interleaved, time_conv


def test_interleaved_reports_every_function():
    calls = []
    out = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=2)
    assert calls == ["a", "b", "a", "b", "a", "b"]  # warm-up, then alternating
    assert set(out) == {"a", "b"} and all(v["min_ms"] <= v["median_ms"] for v in out.values())


def test_time_conv_row_has_the_reported_fields():
    shape = {"model": "toy", "cin": 5, "h": 6, "w": 4, "cout": 3, "k": 3, "stride": 1, "pad": 1}
    row = time_conv(shape, batch=2, threads=1, reps=1, rng=np.random.default_rng(0))
    for key in ("binary_ms", "torch_fp32_ms", "speedup", "speedup_cpu", "torch_layout"):
        assert key in row
    summary = _summary([row], [])
    assert set(summary) == {"toy_b2"} and summary["toy_b2"]["min_speedup"] == row["speedup"]
