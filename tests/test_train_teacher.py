"""Teacher specs: one registry name, or several joined by ``+`` for an equal-weight ensemble
whose embedding is the members' normalised embeddings concatenated, scaled to unit norm."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from slimface.errors import ConfigError, UnknownNameError
from slimface.train.config import TrainConfig, validate
from slimface.train.teacher import EnsembleTeacher, load_teacher, teacher_members
from tests._train_tiny import PixelTeacher, canvases

# the user's cache as it was before the tests isolated theirs (fetched models live there)
_USER_CACHE = Path(os.environ.get("SLIMFACE_CACHE", Path.home() / ".cache" / "slimface"))


class ScaledTeacher(PixelTeacher):
    """A PixelTeacher whose embeddings are not unit-norm (the ensemble normalises them)."""

    def __init__(self, scale: float, **kw):
        super().__init__(**kw)
        self.scale = scale

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.scale * super().embed(crops)


def members() -> tuple[PixelTeacher, PixelTeacher]:
    a = ScaledTeacher(3.0, dim=16)
    b = ScaledTeacher(0.2, dim=8, template="dlib150", size=(152, 152))
    a.name, b.name = "a", "b"
    return a, b


def test_ensemble_embedding_is_the_scaled_concatenation_of_normalised_members() -> None:
    a, b = members()
    ens = EnsembleTeacher([a, b])
    assert (ens.embedding_dim, ens.name, ens.templates) == (24, "a+b", ("arcface112", "dlib150"))
    assert teacher_members(ens) == (a, b) and teacher_members(a) == (a,)
    x, y = canvases(6, size=112), canvases(6, size=152, seed=2)
    e = ens.embed([x, y])
    ea, eb = a.embed(x) / 3.0, b.embed(y) / 0.2
    assert e.shape == (6, 24) and e.dtype == np.float32
    np.testing.assert_allclose(e, np.concatenate([ea, eb], 1) / np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
    # the ensemble's cosine is the mean of the members' cosines
    np.testing.assert_allclose(e @ e.T, ((ea @ ea.T) + (eb @ eb.T)) / 2, atol=1e-6)
    assert {s.shape[1:3] for s in a.seen} == {(112, 112)}      # each its own template's crops
    assert {s.shape[1:3] for s in b.seen} == {(152, 152)}


def test_ensemble_takes_one_crop_batch_per_member() -> None:
    ens = EnsembleTeacher(members())
    with pytest.raises(ValueError, match="expected 2 crop batches"):
        ens.embed([canvases(2, size=112)])


def test_ensemble_needs_two_distinct_members() -> None:
    a, b = members()
    with pytest.raises(ConfigError, match="at least two"):
        EnsembleTeacher([a])
    b.name = "a"
    with pytest.raises(ConfigError, match="twice"):
        EnsembleTeacher([a, b])


def test_unknown_ensemble_member_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown member 'no-such-teacher'"):
        load_teacher("no-such-teacher+dlib-resnet", runtime="torch")
    with pytest.raises(ConfigError, match="empty member"):
        load_teacher("dlib-resnet++mobilefacenet-tflite")
    with pytest.raises(UnknownNameError, match="no-such-teacher"):   # one name: as before
        load_teacher("no-such-teacher", runtime="torch")


def test_teacher_spec_is_validated_with_the_config() -> None:
    base = TrainConfig(objective="distill", teacher="dlib-resnet+mobilefacenet-tflite")
    assert validate(base) is base
    for bad in ("dlib-resnet+", "dlib-resnet+dlib-resnet", "+mobilefacenet-tflite"):
        with pytest.raises(ConfigError, match="joined by"):
            validate(replace(base, teacher=bad))


def test_ensemble_recipe_builds_its_student_at_the_teacher_width() -> None:
    from pathlib import Path

    from slimface.models.pretrained import find_card
    from slimface.train.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "distill_ensemble_fm.py")
    width = sum(find_card(name).embedding_dim for name in cfg.teacher.split("+"))
    assert cfg.teacher == "dlib-resnet+mobilefacenet-tflite" and width == 320
    assert cfg.backbone_kwargs["embedding_dim"] == width


def test_a_gpu_teacher_cannot_ask_for_the_cpu_only_runtime() -> None:
    with pytest.raises(ConfigError, match="teacher_runtime='litert' runs on the CPU"):
        load_teacher("mobilefacenet-tflite", "litert", device="cuda")


def test_a_litert_teacher_travels_to_a_data_worker_and_embeds_the_same() -> None:
    import pickle

    from slimface.errors import ModelError
    from slimface.train.teacher import LiteRTTeacher

    from slimface.models.pretrained import PRETRAINED

    entry = PRETRAINED["mobilefacenet-tflite"]
    found = list((_USER_CACHE / "models").glob(f"*/{entry.filename}"))
    if not found:
        pytest.skip("run `slimface models fetch --model mobilefacenet-tflite` for this test")
    try:
        teacher = LiteRTTeacher(found[0], entry.pixel_mean, entry.pixel_std, entry.template,
                                entry.name)
    except ModelError as exc:
        pytest.skip(f"LiteRT is not installed ({exc})")
    crops = np.random.default_rng(0).integers(0, 255, (5, 112, 112, 3), dtype=np.uint8)
    before = teacher.embed(crops)
    copy = pickle.loads(pickle.dumps(teacher))   # what spawning a worker does
    assert np.array_equal(copy.embed(crops), before)
