"""The distill objective in the one loop: same pixels for teacher and student, exact resume
(of this loop's checkpoints and of the function-matching trainer's layout it replaced)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from slimface.errors import ConfigError, ModelFileError
from slimface.train.augment import AugmentConfig, augment_batch
from slimface.train.config import TrainConfig
from slimface.train.distributed import DistInfo
from slimface.train.function_matching import (FaceCanvases, FunctionMatching, centre_views,
                                              relational_loss)
from slimface.train.trainer import Trainer, cosine_lr
from tests._train_tiny import PixelTeacher, canvases, distill_config

DATA = Path(__file__).parent / "data" / "train"


config = distill_config


def trainer(out: Path, cfg: TrainConfig | None = None, teacher: PixelTeacher | None = None,
            **kw) -> Trainer:
    cfg = cfg or config()
    objective = FunctionMatching(cfg, FaceCanvases(canvases()), teacher or PixelTeacher())
    return Trainer(cfg, objective, out, progress=False, info=DistInfo(), **kw)


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
    t = trainer(tmp_path, teacher=teacher)
    fed: list[torch.Tensor] = []
    original = t.backbone.forward_raw
    monkeypatch.setattr(t.backbone, "forward_raw", lambda x: (fed.append(x), original(x))[1])
    teacher.seen.clear()
    t.train_step(0)
    student_pixels = fed[0].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(student_pixels, teacher.seen[0].astype(np.float32))


def test_resume_continues_exactly(tmp_path: Path) -> None:
    full = trainer(tmp_path / "a")
    full.fit()
    trainer(tmp_path / "b").fit(until_step=3)
    resumed = trainer(tmp_path / "b", resume=True)
    assert resumed.state.step == 3
    resumed.fit()
    for (k, a), b in zip(full.backbone.state_dict().items(),
                         resumed.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 6]                  # every log_every steps and where a run stops
    assert (tmp_path / "b" / "backbone.pt").is_file()


@pytest.fixture()
def one_thread():
    """The fixtures below were computed on one thread (float sums depend on the split)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resumes_a_checkpoint_of_the_function_matching_trainer_exactly(tmp_path: Path,
                                                                       one_thread) -> None:
    """``distill_step3_checkpoint.pt`` was written at step 3 of 6 by the function-matching
    trainer this loop replaced (keys step, seconds, best, history, config, student, optimizer,
    teacher), ``distill_step6_student.pt`` is that trainer's weights after the uninterrupted 6
    steps of the same config (``config()`` here, ``tiny_student``, ``PixelTeacher``, one
    thread)."""
    legacy = torch.load(DATA / "distill_step3_checkpoint.pt", weights_only=True)
    assert sorted(legacy) == ["best", "config", "history", "optimizer", "seconds", "step",
                              "student", "teacher"]
    (tmp_path / "checkpoint.pt").write_bytes((DATA / "distill_step3_checkpoint.pt").read_bytes())
    resumed = trainer(tmp_path, resume=True)
    assert resumed.state.step == 3 and resumed.state.seconds == legacy["seconds"]
    resumed.fit()
    expected = torch.load(DATA / "distill_step6_student.pt", weights_only=True)
    for k, v in expected.items():
        if k in ("conv.bias", "bn.running_mean"):
            # the BatchNorm after the conv cancels this bias, so its gradient is float
            # rounding, which Adam scales up to steps of the learning rate's size: another
            # instruction set (the fixtures come from an AVX-512 CPU) moves it by up to 1e-3,
            # and the running mean that tracks it with it
            continue
        # the same instruction set gives the same bits; another one rounds differently (an
        # optimizer state lost on resume would move every weight by about 1e-3)
        torch.testing.assert_close(resumed.backbone.state_dict()[k], v, rtol=0, atol=1e-6,
                                   msg=k)
    again = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert again["step"] == 6 and again["objective"] == "distill" and "backbone" in again


def test_checkpoint_of_another_teacher_or_objective_is_refused(tmp_path: Path) -> None:
    trainer(tmp_path).fit(until_step=1)
    other = PixelTeacher()
    other.name = "another-teacher"
    with pytest.raises(ModelFileError, match="pixel-teacher"):
        trainer(tmp_path, teacher=other, resume=True)
    from slimface.train.margin import MarginObjective
    from tests._train_tiny import TinyNet, synthetic_crops

    margin = TrainConfig(backbone="tiny", batch_size=8)
    with pytest.raises(ConfigError, match="'distill' run"):
        Trainer(margin, MarginObjective(margin, synthetic_crops()), tmp_path, resume=True,
                progress=False, info=DistInfo(), backbone=TinyNet())


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path: Path) -> None:
    trainer(tmp_path).fit(until_step=1)
    with pytest.raises(ConfigError, match="--resume"):
        trainer(tmp_path)


def test_view1_check_keeps_the_best_step(tmp_path: Path) -> None:
    scores = iter([0.5, 0.7, 0.6])
    kept = []

    def check(model: torch.nn.Module) -> dict[str, float]:
        kept.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"lfw_view1_tar_at_far_1e-4": next(scores)}

    t = trainer(tmp_path, cfg=config(eval_every=2), evaluator=check)
    t.fit()
    assert t.state.best == 0.7 and [r["step"] for r in t.state.history] == [2, 4, 6]
    saved = torch.load(tmp_path / "backbone.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in kept[1].items())        # step 4's weights
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r.get("kept", False) for r in logged] == [True, True, False]


def test_student_and_teacher_must_agree_on_width_and_template(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="embedding_dim 32 != teacher 16"):
        trainer(tmp_path, cfg=config(backbone_kwargs={"embedding_dim": 32}))
    with pytest.raises(ConfigError, match="needs teacher canvases"):
        trainer(tmp_path, teacher=PixelTeacher(template="dlib150", size=(152, 152)))


class PlainStudent(torch.nn.Module):
    """An 8-d student without a teacher-space map (like a quantized Face-ResNet)."""

    template = "arcface112"
    input_size = (112, 112)
    embedding_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 16, stride=16)
        self.fc = torch.nn.Linear(2 * 7 * 7, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x / 255.0)), 1))


def test_a_student_without_teacher_map_learns_through_a_projection(tmp_path: Path) -> None:
    t = trainer(tmp_path, backbone=PlainStudent())     # 8-d output, 16-d teacher
    t.fit(until_step=2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["projection"]["weight"].shape == (16, 8)
    assert state["target_std"].shape == (16,)
    resumed = trainer(tmp_path, backbone=PlainStudent(), resume=True)
    assert torch.equal(resumed.objective.model.projection.weight,
                       state["projection"]["weight"])


def test_distill_config_is_validated() -> None:
    from slimface.train.config import validate

    with pytest.raises(ConfigError, match="needs a teacher"):
        validate(replace(config(), teacher=""))
    with pytest.raises(ConfigError, match="unknown loss weight"):
        validate(replace(config(), loss_weights={"hint": 1.0}))
    with pytest.raises(ConfigError, match="unknown augment key"):
        validate(replace(config(), augment={"mixup_alpah": 1.0}))
    with pytest.raises(ConfigError, match="sources"):
        validate(replace(config(), sources=("imagenet",)))
    assert config().optimizer_name == "adamw" and config().schedule_name == "cosine"
    assert TrainConfig().optimizer_name == "sgd" and TrainConfig().schedule_name == "step"


def cross_template_trainer(out: Path, teacher: PixelTeacher, **kw) -> Trainer:
    """A ``dlib150`` teacher for an ``arcface112`` student: canvases on both templates."""
    to_teacher = np.tile(np.array([[1.49, 0.0, 1.5], [0.0, 1.49, 3.0]]), (24, 1, 1))
    data = FaceCanvases(canvases(), teacher_canvases={"dlib150": canvases(size=174, seed=2)},
                        to_teachers={"dlib150": to_teacher})
    cfg = config()
    return Trainer(cfg, FunctionMatching(cfg, data, teacher), out, progress=False,
                   info=DistInfo(), **kw)


def test_a_teacher_on_another_template_gets_its_own_views_and_resumes_exactly(tmp_path: Path):
    teacher = PixelTeacher(template="dlib150", size=(150, 150))
    full = cross_template_trainer(tmp_path / "a", teacher)
    full.fit()
    assert {v.shape[1:] for v in teacher.seen} == {(150, 150, 3)}   # stats, then every step
    cross_template_trainer(tmp_path / "b", PixelTeacher(template="dlib150", size=(150, 150))
                           ).fit(until_step=4)
    resumed = cross_template_trainer(tmp_path / "b", PixelTeacher(template="dlib150",
                                                                  size=(150, 150)), resume=True)
    resumed.fit()
    for k, v in full.backbone.state_dict().items():
        assert torch.equal(resumed.backbone.state_dict()[k], v), k


def ensemble_members() -> list[PixelTeacher]:
    """A teacher on the student's template and one on ``dlib150`` (150x150 views)."""
    same = PixelTeacher(dim=16)
    other = PixelTeacher(dim=8, template="dlib150", size=(150, 150))
    same.name, other.name = "pixel-arcface", "pixel-dlib"
    return [same, other]


def ensemble_trainer(out: Path, members: list[PixelTeacher], cfg: TrainConfig | None = None,
                     **kw) -> Trainer:
    from slimface.train.teacher import EnsembleTeacher

    to_teacher = np.tile(np.array([[1.49, 0.0, 1.5], [0.0, 1.49, 3.0]]), (24, 1, 1))
    data = FaceCanvases(canvases(), teacher_canvases={"dlib150": canvases(size=174, seed=2)},
                        to_teachers={"dlib150": to_teacher})
    cfg = cfg or config(backbone_kwargs={"embedding_dim": 24})
    return Trainer(cfg, FunctionMatching(cfg, data, EnsembleTeacher(members)), out,
                   progress=False, info=DistInfo(), **kw)


def test_each_ensemble_member_sees_the_same_view_on_its_own_template(tmp_path: Path,
                                                                      monkeypatch) -> None:
    from slimface.train.augment import augment_pair

    same, other = ensemble_members()
    t = ensemble_trainer(tmp_path, [same, other])
    objective = t.objective
    drawn: list[tuple[np.ndarray, int]] = []
    original_views = objective.views
    monkeypatch.setattr(objective, "views",
                        lambda idx, step, info: (drawn.append((idx, step)),
                                                 original_views(idx, step, info))[1])
    fed: list[torch.Tensor] = []
    original = t.backbone.forward_raw
    monkeypatch.setattr(t.backbone, "forward_raw", lambda x: (fed.append(x), original(x))[1])
    same.seen.clear()
    other.seen.clear()
    t.train_step(0)
    assert len(same.seen) == len(other.seen) == 1
    student_pixels = fed[0].permute(0, 2, 3, 1).numpy()
    assert np.array_equal(student_pixels, same.seen[0].astype(np.float32))
    idx, step = drawn[0]
    data = objective.data
    s, expected = augment_pair(data.canvas[idx], data.teacher_canvases["dlib150"][idx],
                               data.to_teachers["dlib150"][idx], (112, 112), (150, 150),
                               np.random.default_rng([t.config.seed, step]), objective.augment)
    assert objective.augment.mixup > 0                 # mixed alike in every view
    assert np.array_equal(s, same.seen[0]) and np.array_equal(expected, other.seen[0])


def test_ensemble_distillation_trains_and_resumes_exactly(tmp_path: Path) -> None:
    full = ensemble_trainer(tmp_path / "a", ensemble_members())
    full.fit()
    logged = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text()
              .splitlines()]
    assert logged and all(np.isfinite(r["loss"]) for r in logged)
    assert full.backbone.output_map.target_mean.shape == (24,)
    ensemble_trainer(tmp_path / "b", ensemble_members()).fit(until_step=3)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["teacher"] == "pixel-arcface+pixel-dlib"
    resumed = ensemble_trainer(tmp_path / "b", ensemble_members(), resume=True)
    resumed.fit()
    for k, v in full.backbone.state_dict().items():
        assert torch.equal(resumed.backbone.state_dict()[k], v), k
    with pytest.raises(ModelFileError, match="pixel-arcface\\+pixel-dlib"):
        trainer(tmp_path / "b", resume=True)               # a single teacher's run it is not


def test_ensemble_student_width_and_canvases_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="embedding_dim 16 != teacher 24"):
        ensemble_trainer(tmp_path, ensemble_members(), cfg=config())
    t = ensemble_trainer(tmp_path, ensemble_members(), backbone=PlainStudent())
    assert t.objective.model.projection.weight.shape == (24, 8)
    from slimface.train.teacher import EnsembleTeacher

    members = ensemble_members() + [PixelTeacher(dim=4, template="sphereface112x96",
                                                 size=(112, 96))]
    cfg = config(backbone_kwargs={"embedding_dim": 28})
    data = FaceCanvases(canvases(),
                        teacher_canvases={"sphereface112x96": canvases(size=128, seed=2)},
                        to_teachers={"sphereface112x96": np.tile(np.eye(2, 3), (24, 1, 1))})
    with pytest.raises(ConfigError, match="'dlib150': the data needs teacher canvases"):
        Trainer(cfg, FunctionMatching(cfg, data, EnsembleTeacher(members)), tmp_path / "c",
                progress=False, info=DistInfo())
