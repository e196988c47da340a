"""``slimface bench kernels`` pieces on tiny inputs (no timing assertions)."""
from __future__ import annotations

import numpy as np
import pytest

from slimface.cli import bench_kernels
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
    for key in ("binary_ms", "torch_fp32_ms", "speedup", "speedup_median", "torch_layout",
                "deployed_ms", "speedup_deployed"):
        assert key in row
    assert row["path"] in ("kernel", "torch") and row["path_reason"].startswith("measured")
    summary = _summary([row], [])
    assert set(summary) == {"toy_b2", "all_convs"}
    assert summary["toy_b2"]["min_speedup"] == row["speedup"]
    assert summary["all_convs"]["min_deployed_speedup"] == row["speedup_deployed"]


def test_time_conv_reports_words_path_and_ceiling_only_for_streamed_outputs(monkeypatch):
    from slimface.runtime import kernel

    shape = {"model": "toy", "cin": 40, "h": 4, "w": 4, "cout": 16, "k": 1, "stride": 1, "pad": 0}
    small = time_conv(shape, batch=1, threads=1, reps=1, rng=np.random.default_rng(0),
                      budget_ms=1.0)
    assert small["speedup_words"] > 0 and small["binary_words_ms"] > 0
    assert small["output_write_ms"] is None and small["float_out_ceiling"] is None
    monkeypatch.setattr(kernel, "STREAM_BYTES", 16 * 16 * 4)  # this output counts as streamed
    asked = []
    monkeypatch.setattr(kernel, "streamed_write_ms",
                        lambda nbytes, threads=None: asked.append((nbytes, threads)) or 0.25)
    fixed = {"binary": 1.0, "binary_signs": 1.0, "binary_words": 1.0, "torch_nchw": 8.0,
             "torch_cl": 6.0, "deployed": 1.5}
    monkeypatch.setattr(bench_kernels, "timed", lambda fns, reps, budget_ms: {
        k: {"min_ms": fixed[k], "median_ms": fixed[k]} for k in fns})
    big = time_conv(shape, batch=1, threads=1, reps=1, rng=np.random.default_rng(0),
                    budget_ms=1.0)
    assert asked == [(1 * 4 * 4 * 16 * 4, 1)]  # the float output N x OH x OW x Cout, 1 thread
    assert big["torch_fp32_ms"] == 6.0 and big["torch_layout"] == "cl"
    assert big["output_write_ms"] == 0.25 and big["float_out_ceiling"] == 24.0


def test_no_convs_runs_only_the_whole_model_rows(tmp_path, monkeypatch):
    """``--no-convs``: no conv-shape row is timed; the model rows and summary still come."""
    import json

    from slimface.cli import bench_kernels
    from slimface.cli.main import main

    monkeypatch.setattr(bench_kernels, "time_conv", lambda *a, **k: pytest.fail("timed a conv"))
    monkeypatch.setattr(bench_kernels, "time_models", lambda *a, **k: [])
    student = {"model": "s.slim", "twin": "slimnet_s2", "batch": 1, "binary_ms_per_face": 1.0,
               "fp32_ms_per_face": 1.2, "speedup": 1.2, "speedup_median": 1.1,
               "kernel_layers": 3, "torch_layers": 0}
    monkeypatch.setattr(bench_kernels, "time_student", lambda *a, **k: [student])
    out = tmp_path / "k.json"
    assert main(["bench", "kernels", "--no-convs", "--batch", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["convs"] == [] and result["summary"] == {"student_vs_fp32_twin_b1": 1.2}
