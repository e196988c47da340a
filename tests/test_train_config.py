"""Config files and --set overrides: typed, validated, unknown keys rejected."""
from __future__ import annotations

from pathlib import Path

import pytest

from slimface.errors import ConfigError
from slimface.train.config import (TrainConfig, apply_overrides, config_from_dict,
                                   config_to_dict, load_config)

# Every experiment, margin heads and distillation alike, is a TrainConfig file.
CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_file_loads_and_names_known_models(path):
    from slimface.models import BACKBONES, HEADS

    cfg = load_config(path)  # validated: objective, teacher, sources, losses, augment keys
    assert cfg.backbone in BACKBONES and cfg.head in HEADS


def test_distillation_configs_keep_their_recipes():
    root = CONFIGS[0].parent
    fm = load_config(root / "distill_mobilefacenet_fm.py")
    assert (fm.objective, fm.teacher, fm.optimizer_name, fm.schedule_name) == (
        "distill", "mobilefacenet-tflite", "adamw", "cosine")
    mobile = load_config(root / "distill_slimface_mobile.py")
    assert (mobile.teacher, mobile.backbone, mobile.steps_per_epoch, mobile.optimizer_name,
            mobile.loss_weights, mobile.augment["shift_px"]) == (
        "dlib_resnet", "slimnet_s", 20000, "adam", {"embed": 1.0}, 2.0)
    s2 = load_config(root / "distill_slimface_mobile_s2.py")
    assert (s2.backbone, s2.steps_per_epoch, s2.seed, s2.augment) == (
        "slimnet_s2", 6000, 1, mobile.augment)
    assert s2.init_from.endswith("distill_slimface_mobile/backbone.pt")
    q = load_config(root / "distill_q_face_resnet_small.py")
    assert q.backbone_kwargs["base"] == "face_resnet_a" and q.weight_decay == 0.0


def test_seed_configs_follow_spec_schedule():
    for v in "abc":
        cfg = load_config(Path(CONFIGS[0]).parent / f"face_resnet_{v}_casia.py")
        assert (cfg.epochs, cfg.steps_per_epoch, cfg.batch_size, cfg.lr) == (100, 10_000, 64, 0.01)
        assert cfg.milestones == (40, 70, 90) and cfg.head == "softmax"


def test_set_converts_types():
    cfg = apply_overrides(TrainConfig(), ["max_steps=5", "lr=0.5", "flip=false",
                                          "milestones=3,6", 'head_kwargs={"s": 30}'])
    assert (cfg.max_steps, cfg.lr, cfg.flip, cfg.milestones) == (5, 0.5, False, (3, 6))
    assert cfg.head_kwargs == {"s": 30}


@pytest.mark.parametrize("item,match", [("max_stepz=5", "unknown config key 'max_stepz'"),
                                        ("lr=fast", "not a valid float"),
                                        ("batch_size=0", "batch_size must be >= 1"),
                                        ("milestones=5,2", "ascend"),
                                        ("lr", "key=value")])
def test_bad_overrides_raise_config_error(item, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(TrainConfig(), [item])


def test_config_file_with_misspelled_field_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from slimface.train.config import TrainConfig\n"
                   "config = TrainConfig(learning_rate=0.1)\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.py")


def test_config_round_trips_through_json_dict():
    cfg = TrainConfig(milestones=(1, 2), head_kwargs={"m": 0.3})
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_optimizer_choice_is_validated_and_built():
    """"adam" builds AdamW (binary nets), "sgd" momentum SGD; both keep weight decay off 1-d
    parameters; "adamw" decays every parameter; an unknown name is refused."""
    import torch

    from slimface.train.config import validate
    from slimface.train.trainer import make_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    for name, cls in (("adam", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        opt = make_optimizer(model, validate(TrainConfig(optimizer=name, weight_decay=0.1)))
        assert type(opt) is cls
        decays = sorted(g["weight_decay"] for g in opt.param_groups)
        assert decays == [0.0, 0.1]
    opt = make_optimizer(model, validate(TrainConfig(optimizer="adamw", weight_decay=0.1)))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1]
    with pytest.raises(ConfigError, match="sgd, adam, adamw"):
        validate(TrainConfig(optimizer="lamb"))
