"""``slimface bench kernels`` pieces on tiny inputs (no timing assertions)."""
from __future__ import annotations

import numpy as np

from slimface.cli.bench_kernels import _summary, time_conv, timed


def test_timed_reports_every_function_and_gives_fast_calls_more_repeats():
    calls = []
    out = timed({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=2,
                budget_ms=5.0)
    assert set(out) == {"a", "b"} and all(v["min_ms"] <= v["median_ms"] for v in out.values())
    assert out["a"]["calls"] == out["b"]["calls"] > 2  # a no-op call is far under the budget
    assert calls.count("a") == calls.count("b")


def test_time_conv_row_has_the_reported_fields():
    shape = {"model": "toy", "cin": 5, "h": 6, "w": 4, "cout": 3, "k": 3, "stride": 1, "pad": 1}
    row = time_conv(shape, batch=2, threads=1, reps=1, rng=np.random.default_rng(0),
                    budget_ms=1.0)
    for key in ("binary_ms", "torch_fp32_ms", "speedup", "speedup_median", "torch_layout"):
        assert key in row
    summary = _summary([row], [])
    assert set(summary) == {"toy_b2"} and summary["toy_b2"]["min_speedup"] == row["speedup"]
