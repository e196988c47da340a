"""The report's pure parts: the quick subset keeps the protocol's structure, the Markdown
tables carry every model and measured column, latency is measured on the model given."""
from pathlib import Path

import pytest
import torch
from torch import nn

from slimface.eval.lfw import Pair
from slimface.eval.report import (latency, latency_against, latency_points, markdown,
                                   quick_subset)


def _pairs(folds: int = 10, per: int = 6) -> list[Pair]:
    return [Pair(Path(f"a{f}{i}{s}"), Path(f"b{f}{i}{s}"), s, f)
            for f in range(folds) for s in (True, False) for i in range(per)]


def test_quick_subset_keeps_every_fold_balanced():
    kept = quick_subset(_pairs(), per_fold=4)
    assert len(kept) == 10 * 4
    for fold in range(10):
        same = [p.same for p in kept if p.fold == fold]
        assert same.count(True) == 2 and same.count(False) == 2


def test_markdown_has_a_row_per_model_with_measured_columns():
    row = {"model": "m1", "role": "teacher", "runtime": "torch", "file": "/x/m1.slim",
           "bytes": 1000, "params": 10, "macs": 2e6, "accuracy_mean": 0.9912,
           "accuracy_std": 0.0031, "auc": 0.999, "all_pairs_tar_at_far_1e-3": 0.97,
           "all_pairs_tar_at_far_1e-4": None, "rank1": 0.9088, "dir_at_far_1e-2": 0.5,
           "n_impostor_pairs": 60_000, "n_gallery": 100, "n_probes": 300, "n_pairs": 600,
           "no_face": 0, "compression": 1.0, "ms_b1": 2.0, "speedup_b1": 1.0, "ms_b32": 1.0,
           "speedup_b32": 1.0}
    meta = {"command": "slimface report --quick", "commit": "abc", "cpu": "cpu", "threads": 2,
            "seconds": 12.0, "quick": True, "n_pairs": 600}
    text = markdown([row, {**row, "model": "m2", "role": "pq", "bytes": 100,
                           "compression": 10.0}], meta)
    assert "| m1 | 99.12 ± 0.31 | 0.9990 | 97.0 | n/a | 90.9 | 50.0 |" in text
    assert "| m2 |" in text
    assert "10.0x" in text and "slimface report --quick" in text
    assert "60,000 impostor pairs" in text


def test_latency_plot_puts_the_teacher_in_every_runtime():
    rows = [{"model": "t", "role": "teacher", "runtime": "torch", "ms_b1": 9.0,
             "teacher_ms_b1": 9.0, "accuracy_mean": 0.99},
            {"model": "s8", "role": "int8", "runtime": "onnx", "ms_b1": 1.0,
             "teacher_ms_b1": 4.0, "accuracy_mean": 0.97}]
    points = {(p["label"], p["runtime"]): p["x"] for p in latency_points(rows)}
    assert points == {("t", "torch"): 9.0, ("s8", "onnx"): 1.0,
                      ("dlib-resnet (teacher, onnx)", "onnx"): 4.0}


class _Tiny(nn.Module):
    input_size = (8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x).flatten(1)


def test_latency_runs_the_model_in_both_layouts_and_returns_the_median(fake_clock):
    model = _Tiny()
    ms = latency(model, batch=2, repeats=3, threads=1)
    assert ms == pytest.approx(1.0)  # every timed call takes 1 ms on the fake clock
    assert model.calls == 2 * (3 + 2)      # both memory layouts, 2 warm-up runs each


def test_a_row_and_its_baseline_are_timed_in_alternating_blocks(fake_clock):
    model, baseline = _Tiny(), _Tiny()
    ms, base_ms = latency_against(model, baseline, batch=2, repeats=3, threads=1)
    assert ms == pytest.approx(1.0) and base_ms == pytest.approx(1.0)
    # each: both layouts (5 calls each), then 1 warm-up and 3 blocks of 1 untimed + 1 timed
    assert model.calls == baseline.calls == 2 * 5 + 1 + 3 * 2


def test_fetched_third_party_models_become_peer_rows_once(tmp_path, monkeypatch):
    from slimface.eval import report
    from slimface.models import pretrained

    fake = tmp_path / "MobileFaceNet.tflite"
    monkeypatch.setattr(pretrained, "pretrained_path", lambda entry: fake)

    def peers(extra=()):
        return [c.label for c in report.default_candidates(tmp_path, extra) if c.role == "peer"]

    assert peers() == []                                    # not fetched: no row
    fake.write_bytes(b"x")
    assert peers() == ["mobilefacenet-tflite (peer)"]
    assert peers(["mobilefacenet_tflite"]) == ["mobilefacenet-tflite (peer)"]  # named: once
    assert peers(["x.onnx"]) == ["mobilefacenet-tflite (peer)", "x.onnx (peer)"]


def test_report_rows_take_their_role_from_the_model_card(tmp_path):
    from slimface.eval import report
    from slimface.models.pretrained import list_cards

    rows = report.default_candidates(tmp_path)
    assert rows[0].role == "teacher" and rows[0].label.startswith(report.TEACHER)
    roles = {c.name: c.role for c in list_cards()}
    for cand in rows:
        name = cand.label.split(" (")[0]
        assert cand.role == ("int8" if "int8" in cand.label else roles[name]), cand.label
    int8 = [c for c in rows if c.role == "int8"]
    assert int8 and all(roles[c.source] == "student" for c in int8)


def test_report_command_summary_shows_the_low_far_and_1n_read_outs(tmp_path, monkeypatch,
                                                                    capsys):
    """The table the command prints (and ``make demo`` shows a newcomer) carries TAR at FAR
    1e-4 and rank-1 beside pair accuracy; n/a where the images cannot resolve a rate."""
    import slimface.eval.report as report_module
    from slimface.cli.main import main

    row = {"model": "m (fp32)", "accuracy_mean": 0.98, "all_pairs_tar_at_far_1e-4": 0.8232,
           "rank1": 0.8845, "bytes": 3_868_616, "compression": 5.8, "ms_b1": 3.7,
           "speedup_b1": 2.14}
    unresolved = {**row, "model": "n (fp32)", "all_pairs_tar_at_far_1e-4": None}
    monkeypatch.setattr(report_module, "build_report",
                        lambda *a, **k: {"meta": {}, "models": [row, unresolved]})
    assert main(["report", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    header, _, first, second = out.splitlines()[1:5]
    assert "TAR@1e-4 %" in header and "rank-1 %" in header
    assert "82.32" in first and "88.45" in first
    assert "n/a" in second
