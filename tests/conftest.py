"""Shared fixtures: real data slices from ../shared/data (skipped cleanly when absent)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def data_root() -> Path:
    from slimface.data.roots import find_data_root

    root = find_data_root()
    if root is None:
        pytest.skip("../shared/data not found (set SLIMFACE_DATA)")
    return root


@pytest.fixture(scope="session")
def lfw_root(data_root: Path) -> Path:
    root = data_root / "lfw"
    if not (root / "pairs.txt").is_file():
        pytest.skip("LFW not present under the data root")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Tests never write to the user's ~/.cache or data folder; one temp cache per session
    (its recorded ONNX Runtime twins removed after each test), and an empty user data folder
    (calibrated thresholds) per test."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("SLIMFACE_CACHE", str(cache))
    monkeypatch.setenv("SLIMFACE_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    # a model's recorded ONNX Runtime twin would change what the next test's embedder loads
    shutil.rmtree(cache / "onnx" / "twins", ignore_errors=True)


@pytest.fixture()
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``slimface.runtime.timing`` reads a clock that advances 1 ms per reading: timed code
    still runs, but every timed call takes exactly 1 ms, so tests check values, not speed."""
    import types

    from slimface.runtime import timing

    now = [0.0]

    def perf_counter() -> float:
        now[0] += 1e-3
        return now[0]

    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=perf_counter))
