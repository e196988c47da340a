"""Function-matching distillation: same pixels for teacher and student, exact resume."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from slimface.errors import ConfigError
from slimface.train.augment import AugmentConfig, augment_batch
from slimface.train.config import TrainConfig
from slimface.train.function_matching import (FunctionMatchingTrainer, centre_views,
                                              cosine_lr, relational_loss)


class PixelTeacher:
    """A fixed random projection of 8x8-pooled pixels: deterministic and cheap."""

    template = "arcface112"
    name = "pixel-teacher"

    def __init__(self, dim: int = 16):
        self.embedding_dim = dim
        self.seen: list[np.ndarray] = []
        self.w = np.random.default_rng(0).normal(size=(14 * 14 * 3, dim)).astype(np.float32)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.seen.append(crops.copy())
        x = crops.reshape(len(crops), 14, 8, 14, 8, 3).mean(axis=(2, 4)).reshape(len(crops), -1)
        e = (x / 255.0 - 0.5) @ self.w
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def canvases(n: int = 24, size: int = 128) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def config(**kw) -> TrainConfig:
    base = TrainConfig(objective="distill", teacher="pixel-teacher", backbone="slimnet_s",
                       backbone_kwargs={"embedding_dim": 16}, batch_size=4, epochs=1,
                       steps_per_epoch=6, warmup_steps=2, lr=1e-3, threads=1, log_every=2,
                       eval_every=0, checkpoint_minutes=0.0, channels_last=False)
    return replace(base, **kw)


def test_augmented_batches_depend_only_on_seed_and_step() -> None:
    c = canvases(8)
    a = augment_batch(c, (112, 112), np.random.default_rng([0, 5]))
    b = augment_batch(c, (112, 112), np.random.default_rng([0, 5]))
    d = augment_batch(c, (112, 112), np.random.default_rng([0, 6]))
    assert a.shape == (8, 112, 112, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, d)


def test_no_augmentation_is_the_centre_crop() -> None:
    c = canvases(3)
    off = AugmentConfig(scale=0, rotate_deg=0, shift_px=0, flip=0, low_res=0, blur=0, jpeg=0,
                        colour=0, grey=0, mixup=0)
    out = augment_batch(c, (112, 112), np.random.default_rng(0), off)
    assert np.abs(out.astype(int) - centre_views(c, (112, 112)).astype(int)).max() <= 1


def test_relational_loss_is_zero_for_the_same_geometry_and_positive_otherwise() -> None:
    t = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    assert relational_loss(3.0 * t @ q, t) < 1e-10          # rotation and scale keep cosines
    assert relational_loss(torch.randn(6, 8), t) > 1e-3


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    assert cosine_lr(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert cosine_lr(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert cosine_lr(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_teacher_embeds_the_very_pixels_the_student_is_trained_on(tmp_path: Path,
                                                                   monkeypatch) -> None:
    teacher = PixelTeacher()
    trainer = FunctionMatchingTrainer(config(), canvases(), teacher, tmp_path, progress=False)
    fed: list[torch.Tensor] = []
    original = trainer.student.forward_raw
    monkeypatch.setattr(trainer.student, "forward_raw", lambda x: (fed.append(x), original(x))[1])
    teacher.seen.clear()
    trainer.train_step(0)
    student_pixels = fed[0].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(student_pixels, teacher.seen[0].astype(np.float32))


def test_resume_continues_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    full = FunctionMatchingTrainer(config(), canvases(), PixelTeacher(), tmp_path / "a",
                                   progress=False)
    full.fit()
    part = FunctionMatchingTrainer(config(), canvases(), PixelTeacher(), tmp_path / "b",
                                   progress=False)
    part.fit(until_step=3)
    resumed = FunctionMatchingTrainer(config(), canvases(), PixelTeacher(), tmp_path / "b",
                                      resume=True, progress=False)
    assert resumed.step == 3
    resumed.fit()
    for (k, a), b in zip(full.student.state_dict().items(), resumed.student.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    import json

    steps = [json.loads(line)["step"] for line in
             (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 6]                  # every log_every steps and where a run stops
    assert (tmp_path / "b" / "backbone.pt").is_file()


def test_student_and_teacher_must_agree_on_crop_and_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="embedding_dim 32 != teacher 16"):
        FunctionMatchingTrainer(config(backbone_kwargs={"embedding_dim": 32}), canvases(),
                                PixelTeacher(), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="template 'dlib150' differs"):
        FunctionMatchingTrainer(config(backbone="dlib_resnet", backbone_kwargs={}), canvases(),
                                PixelTeacher(), tmp_path, progress=False)


def test_distill_config_needs_a_teacher() -> None:
    from slimface.train.config import validate

    with pytest.raises(ConfigError, match="needs a teacher"):
        validate(replace(config(), teacher=""))
