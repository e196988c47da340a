"""Where a model's default verify threshold comes from, and the view-1 calibration rule."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from slimface.gallery import thresholds as th


def test_model_metadata_wins_over_the_table(tmp_path):
    table = tmp_path / "t.json"
    th.save_threshold("dlib-resnet", {"value": 0.5, "far": 1e-3, "flip": "sum",
                                      "source": "table"}, path=table)
    model = SimpleNamespace(threshold={"value": 0.7, "far": 1e-3, "source": "file"})
    assert th.lookup_threshold(model, "dlib-resnet", "sum", path=table).value == 0.7
    assert th.lookup_threshold(object(), "dlib_resnet", "sum", path=table).value == 0.5


def test_table_entry_for_another_flip_mode_is_not_used(tmp_path):
    table = tmp_path / "t.json"
    th.save_threshold("m", {"value": 0.5, "far": 1e-3, "flip": "none", "source": "x"},
                      path=table)
    assert th.lookup_threshold(object(), "m", "sum", path=table) is None
    assert th.lookup_threshold(object(), "unknown", "none", path=table) is None


def test_threshold_at_far_accepts_at_most_far_of_the_negatives():
    neg = np.linspace(0, 1, 2000)
    t = th.threshold_at_far(neg, 1e-3)
    assert np.sum(neg > t) <= 2 and np.sum(neg >= t) >= 2


def test_shipped_table_entries_are_documented():
    for name, entry in th.read_table(th.SHIPPED_THRESHOLDS_PATH).items():
        assert {"value", "far", "source", "flip"} <= set(entry), name
        assert "view 1" in entry["source"] and "view 2 untouched" in entry["source"]


def test_entry_calibrated_on_other_weights_is_not_used(tmp_path):
    # a retrained model keeps its registry name; its old threshold may sit on another scale
    table = tmp_path / "t.json"
    th.save_threshold("m", {"value": 0.5, "far": 1e-3, "flip": "sum", "source": "x",
                            "fingerprint": "aaaa"}, path=table)
    assert th.lookup_threshold(object(), "m", "sum", path=table, fingerprint="bbbb") is None
    assert th.lookup_threshold(object(), "m", "sum", path=table,
                               fingerprint="aaaa").value == 0.5
    assert th.lookup_threshold(object(), "m", "sum", path=table).value == 0.5


def test_a_file_calibrated_by_path_is_found_by_path_or_by_name(tmp_path):
    """`verify --calibrate --model /abs/q.slim` then `verify --model q.slim` (or another
    path to the same file): the table keys files by base name, never by a machine's path."""
    table = tmp_path / "t.json"
    th.save_threshold(str(tmp_path / "weights" / "Q-Net.slim"),
                      {"value": 0.7, "far": 1e-3, "flip": "sum", "source": "x",
                       "fingerprint": "ff"}, path=table)
    assert str(tmp_path) not in table.read_text()
    for name in ("Q-Net.slim", str(tmp_path / "elsewhere" / "Q-Net.slim")):
        assert th.lookup_threshold(object(), name, "sum", path=table,
                                   fingerprint="ff").value == 0.7


def test_calibrations_go_to_the_user_table_and_override_the_shipped_one(tmp_path, monkeypatch):
    shipped = tmp_path / "package" / "thresholds.json"
    th.save_threshold("m", {"value": 0.5, "far": 1e-3, "flip": "sum", "source": "shipped"},
                      path=shipped)
    before = shipped.read_bytes()
    monkeypatch.setattr(th, "THRESHOLDS_PATH", shipped)
    home = tmp_path / "home"
    monkeypatch.setenv("SLIMFACE_HOME", str(home))
    assert th.lookup_threshold(object(), "m", "sum").source == "shipped"

    written = th.save_threshold("m", {"value": 0.6, "far": 1e-3, "flip": "sum",
                                      "source": "mine"})
    assert written == home / "thresholds.json" and shipped.read_bytes() == before
    assert th.lookup_threshold(object(), "m", "sum").value == 0.6
    assert th.read_table()["m"]["source"] == "mine"
    # a user entry for another flip mode does not hide the shipped one
    th.save_threshold("m", {"value": 0.7, "far": 1e-3, "flip": "none", "source": "mine"})
    assert th.lookup_threshold(object(), "m", "sum").source == "shipped"
    assert th.lookup_threshold(object(), "m", "none").value == 0.7


def test_user_data_folder_defaults_to_the_platforms(monkeypatch):
    from platformdirs import user_data_dir

    from slimface.io.paths import user_data_root

    monkeypatch.delenv("SLIMFACE_HOME", raising=False)
    assert user_data_root() == Path(user_data_dir("slimface", appauthor=False))
    assert th.SHIPPED_THRESHOLDS_PATH.parent.name == "runtime"
