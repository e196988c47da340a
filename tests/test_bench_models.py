"""``slimface bench models``: one JSON object with a baseline-relative row per model."""
from __future__ import annotations

import json

import pytest
from slimface.cli.bench_models import interleaved_ms, weight_bytes
from slimface.cli.main import main


def test_bench_models_reports_ratios_against_the_first_model(capsys, fake_clock):
    assert main(["bench", "models", "--model", "slimnet_m", "slimnet_s", "--runtime", "torch",
                 "--batch", "1", "--repeats", "2", "--threads", "1", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    base, other = out["rows"]
    assert out["baseline"] == "slimnet_m" and base["speedup_torch_b1"] == 1.0
    assert other["macs"] < base["macs"] and other["size_ratio"] > 1.0
    # every timed call takes 1 ms on the fake clock: equal speed, 1 ms per batch of 1
    assert other["torch_b1_min_ms"] == pytest.approx(1.0)
    assert other["torch_b1_median_ms"] == pytest.approx(1.0)
    assert other["speedup_torch_b1"] == pytest.approx(1.0)
    assert "ms per face" in captured.err


def test_interleaved_ms_times_every_runner_per_face():
    calls = {"a": 0, "b": 0}

    def runner(key):
        def fn(x):
            calls[key] += x.shape[0]
        return fn

    res = interleaved_ms({"a": runner("a"), "b": runner("b")}, {"a": (4, 4), "b": (2, 2)},
                         batch=3, repeats=2, warmup=1)
    # 1 warm-up, then 2 blocks of (1 untimed + 1 timed) call, each call a batch of 3 faces
    assert calls == {"a": 15, "b": 15} and res["a"]["repeats"] == 2


def test_weight_bytes_counts_float_parameters_and_buffers():
    import torch

    m = torch.nn.BatchNorm1d(4)  # weight, bias, running mean/var floats; counter is int
    assert weight_bytes(m) == 16 * 4
