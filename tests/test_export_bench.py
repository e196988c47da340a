"""``slimface bench int8`` on a tiny model: fp32 and int8 files timed in one interleaved run
(``--sweep`` adds four more quantizations; too slow for a unit test)."""
from __future__ import annotations

import json

import pytest
from _gallery_fakes import register_tiny, write_faces
from test_export import _fake_aligned_crops

from slimface.cli.main import main


def test_bench_int8_reports_both_models_and_speedups(tmp_path, monkeypatch, capsys,
                                                     fake_clock):
    import slimface.cli.bench_int8 as bench

    register_tiny(monkeypatch)
    monkeypatch.setattr(bench, "aligned_crops", _fake_aligned_crops)
    write_faces(tmp_path / "celeb", 10, 8)
    assert main(["bench", "int8", "--model", "tiny-test", "--calib", str(tmp_path / "celeb"),
                 "--calib-n", "8", "--repeats", "2", "--no-lfw", "--batch", "1", "2",
                 "--workdir", str(tmp_path / "w"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    res = out["results"]
    assert res["fp32"]["speedup_vs_fp32"] == {"b1": 1.0, "b2": 1.0}
    assert out["default_int8"] in res and len(res) == 2
    # every timed call takes 1 ms on the fake clock: 1 ms per batch, so 0.5 ms per face at b2
    assert res[out["default_int8"]]["latency"]["b2"]["ms_per_face"] == pytest.approx(0.5)
    assert res[out["default_int8"]]["parity_vs_torch"]["mean_cosine"] > 0.95
    assert {"avx512_vnni", "cpu"} <= set(out["cpu"])
