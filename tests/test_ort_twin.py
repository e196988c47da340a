"""A model whose ONNX Runtime twin was recorded loads as that twin, without PyTorch, and only
while the weights file, the software and the requested runtime still match."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from slimface.gallery.embedder import FaceEmbedder
from slimface.runtime import ort_embed, ort_twin

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import _train_tiny  # noqa: F401 - registers the tiny_student backbone

ARCH = {"backbone": "tiny_student", "kwargs": {"embedding_dim": 16}}


@pytest.fixture()
def checkpoint(tmp_path: Path, monkeypatch) -> Path:
    """A small student checkpoint, with a cache of its own for the export and the record."""
    from slimface.models import create_backbone

    monkeypatch.setenv("SLIMFACE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = create_backbone(ARCH["backbone"], **ARCH["kwargs"]).eval()
    path = tmp_path / "student.pt"
    torch.save({"architecture": ARCH, "state_dict": model.state_dict(),
                "template": "arcface112"}, path)
    return path


def _crops(n: int = 3) -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def _first_run(spec: str, runtime: str, monkeypatch) -> np.ndarray:
    """A process's first use of ``spec``: the model itself, then its runner's choice."""
    monkeypatch.setenv(ort_twin.ENV_VAR, runtime)
    embedder = FaceEmbedder(spec)
    assert isinstance(embedder.model, torch.nn.Module)
    return embedder.runner.embed_crops(_crops(), flip="sum")


def test_forced_onnx_choice_is_recorded_and_reloaded_as_a_twin(checkpoint, monkeypatch):
    first = _first_run(str(checkpoint), "onnx", monkeypatch)
    again = FaceEmbedder(str(checkpoint))
    assert isinstance(again.model, ort_twin.OrtTwin)
    assert again.runner is again.model
    assert again.model.input_size == (112, 112) and again.template == "arcface112"
    np.testing.assert_allclose(again.runner.embed_crops(_crops(), flip="sum"), first,
                               atol=1e-6)


def test_twin_keeps_the_torch_models_fingerprint(checkpoint, monkeypatch):
    _first_run(str(checkpoint), "onnx", monkeypatch)
    full = FaceEmbedder(str(checkpoint), fast_start=False)
    assert isinstance(full.model, torch.nn.Module)
    assert FaceEmbedder(str(checkpoint)).info == full.info


def test_auto_runtime_ignores_a_twin_that_was_only_forced(checkpoint, monkeypatch):
    _first_run(str(checkpoint), "onnx", monkeypatch)
    monkeypatch.setenv(ort_twin.ENV_VAR, "auto")
    assert ort_twin.load_twin(str(checkpoint)) is None


def test_auto_runtime_uses_a_twin_measured_faster(checkpoint, monkeypatch):
    monkeypatch.setattr(ort_embed, "_faster", lambda *a: True)
    _first_run(str(checkpoint), "auto", monkeypatch)
    assert isinstance(ort_twin.load_twin(str(checkpoint)), ort_twin.OrtTwin)


def test_torch_runtime_never_uses_a_twin(checkpoint, monkeypatch):
    _first_run(str(checkpoint), "onnx", monkeypatch)
    monkeypatch.setenv(ort_twin.ENV_VAR, "torch")
    assert isinstance(FaceEmbedder(str(checkpoint)).model, torch.nn.Module)


def _save_other_weights(path: Path) -> None:
    """Other weights of the same size, saved over ``path`` with its old modification time."""
    from slimface.models import create_backbone

    stat = path.stat()
    torch.manual_seed(1)
    model = create_backbone(ARCH["backbone"], **ARCH["kwargs"]).eval()
    torch.save({"architecture": ARCH, "state_dict": model.state_dict(),
                "template": "arcface112"}, path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_changed_weights_file_loads_the_model_again(checkpoint, monkeypatch):
    _first_run(str(checkpoint), "onnx", monkeypatch)
    _save_other_weights(checkpoint)
    assert ort_twin.load_twin(str(checkpoint)) is None
    assert isinstance(FaceEmbedder(str(checkpoint)).model, torch.nn.Module)


def test_weights_replaced_after_loading_are_not_recorded(checkpoint, monkeypatch):
    monkeypatch.setenv(ort_twin.ENV_VAR, "onnx")
    embedder = FaceEmbedder(str(checkpoint))
    _save_other_weights(checkpoint)  # e.g. a training run writes a newer checkpoint
    assert isinstance(embedder.runner, ort_twin.OrtEmbedder)
    assert not ort_twin.record_path(ort_twin.model_spec(checkpoint)).exists()


def test_changed_slimface_module_loads_the_model_again(checkpoint, monkeypatch):
    _first_run(str(checkpoint), "onnx", monkeypatch)
    record = ort_twin.record_path(ort_twin.model_spec(checkpoint))
    data = json.loads(record.read_text())
    assert "runtime/ort_twin.py" in data["code"]["files"]
    data["code"]["files"]["runtime/ort_twin.py"][0] += 1  # as if the file had been edited
    record.write_text(json.dumps(data))
    assert ort_twin.load_twin(str(checkpoint)) is None


@pytest.mark.parametrize("damage", ["record", "export"])
def test_damaged_cache_loads_the_model_again(checkpoint, monkeypatch, damage):
    _first_run(str(checkpoint), "onnx", monkeypatch)
    record = ort_twin.record_path(ort_twin.model_spec(checkpoint))
    if damage == "record":
        record.write_text("{not json")
    else:
        (record.parent.parent / json.loads(record.read_text())["onnx"]).write_bytes(b"x")
    assert ort_twin.load_twin(str(checkpoint)) is None


def test_model_object_is_never_recorded(checkpoint, monkeypatch):
    from slimface.runtime.loader import load_model

    monkeypatch.setenv(ort_twin.ENV_VAR, "onnx")
    assert isinstance(FaceEmbedder(load_model(checkpoint)).runner, ort_twin.OrtEmbedder)
    assert not ort_twin.record_path(ort_twin.model_spec(checkpoint)).exists()


def test_calibration_evaluates_the_model_not_its_twin(checkpoint, monkeypatch):
    from slimface.eval import run as eval_run
    from slimface.gallery.thresholds import calibrate

    _first_run(str(checkpoint), "onnx", monkeypatch)
    embedder = FaceEmbedder(str(checkpoint))
    assert isinstance(embedder.model, ort_twin.OrtTwin)
    seen = []

    def fake_view1(model, data_root, flip, pairs):
        seen.append(model)
        scores = np.random.default_rng(0).random(2000)
        return {"scores": scores.tolist(), "labels": (scores > 0.5).tolist()}

    monkeypatch.setattr(eval_run, "evaluate_lfw", fake_view1)
    calibrate(embedder, None)
    assert isinstance(seen[0], torch.nn.Module)


def test_pretrained_name_is_stamped_with_its_shipped_file(checkpoint, monkeypatch):
    _first_run(str(checkpoint), "onnx", monkeypatch)
    tiny = ort_twin.load_twin(str(checkpoint))
    stamp = ort_twin.weights_stamp("slimface-mobile")
    assert ort_twin.record_twin("slimface-mobile", tiny, tiny, "f" * 24, "onnx",
                                stamp) is not None
    twin = ort_twin.load_twin("slimface-mobile")
    assert isinstance(twin, ort_twin.OrtTwin) and twin.fingerprint == "f" * 24
    from slimface.models.pretrained import find_card

    weights = json.loads(ort_twin.record_path("slimface-mobile").read_text())["weights"]
    assert weights["path"] == str(find_card("slimface-mobile").path().resolve())


def test_second_process_embeds_without_importing_torch(checkpoint, monkeypatch):
    """What a user's second ``slimface verify`` does: the model's twin, no PyTorch."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        if sys.argv[3] == "first":
            sys.path.insert(0, sys.argv[4])
            import _train_tiny  # registers the checkpoint's architecture
        from slimface.gallery.embedder import FaceEmbedder
        crops = np.random.default_rng(3).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
        embedder = FaceEmbedder(sys.argv[1])
        out = embedder.runner.embed_crops(crops, flip="sum")
        print(type(embedder.model).__name__, "torch" in sys.modules, embedder.info.fingerprint)
        np.save(sys.argv[2], out)
    """)
    env = {**os.environ, ort_twin.ENV_VAR: "onnx"}
    tmp = checkpoint.parent

    def run(out: Path, which: str) -> list[str]:
        done = subprocess.run([sys.executable, "-c", script, str(checkpoint), str(out), which,
                               str(Path(__file__).parent)], env=env,
                              capture_output=True, text=True, timeout=300, check=True)
        return done.stdout.split()

    first, second = run(tmp / "a.npy", "first"), run(tmp / "b.npy", "second")
    assert first[:2] == ["TinyStudent", "True"]
    assert second[:2] == ["OrtTwin", "False"]
    assert first[2] == second[2]
    np.testing.assert_allclose(np.load(tmp / "b.npy"), np.load(tmp / "a.npy"), atol=1e-6)
