"""Distillation losses, schedule, augmentation, config loading and the export round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from slimface.compress.distill import (DistillConfig, DistillLoss, Distiller,
                                       EmbeddingDistillLoss, FeatureTap, HintLoss, KDLoss,
                                       apply_overrides, augment_batch, colour_jitter,
                                       config_from_dict, config_to_dict, export_student,
                                       init_student_weights, kd_loss, load_distill_config,
                                       lr_at, target_stats)
from slimface.errors import ConfigError, ModelFileError
from slimface.models import create_backbone


def test_embedding_loss_l2_is_zero_for_equal_and_positive_otherwise():
    t = torch.randn(4, 128)
    loss = EmbeddingDistillLoss(128, 128, "l2")
    assert float(loss(t, t)) == 0.0
    assert float(loss(t + 1, t)) == pytest.approx(1.0)


def test_embedding_loss_cosine_ignores_scale():
    t = torch.randn(4, 16)
    loss = EmbeddingDistillLoss(16, 16, "cosine")
    assert float(loss(3 * t, t)) == pytest.approx(0.0, abs=1e-6)


def test_embedding_loss_projects_when_dimensions_differ():
    loss = EmbeddingDistillLoss(64, 128, "l2")
    s = torch.randn(4, 64, requires_grad=True)
    out = loss(s, torch.randn(4, 128))
    out.backward()
    assert isinstance(loss.proj, torch.nn.Linear) and loss.proj.weight.grad is not None
    assert s.grad is not None


def test_embedding_loss_rejects_unknown_kind():
    with pytest.raises(ValueError, match="l2"):
        EmbeddingDistillLoss(8, 8, "huber")


def test_hint_loss_resizes_student_map_to_teacher_map():
    hint = HintLoss(16, 32)
    s = torch.randn(2, 16, 7, 7, requires_grad=True)
    t = torch.randn(2, 32, 9, 9)
    loss = hint(s, t)
    loss.backward()
    assert loss.ndim == 0 and s.grad is not None and hint.regressor[0].weight.grad is not None


def test_kd_loss_zero_when_logits_match_and_grows_with_disagreement():
    z = torch.randn(5, 10)
    assert float(kd_loss(z, z, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(KDLoss(2.0)(z, z.flip(1))) > 0


def test_kd_loss_gradient_only_reaches_the_student():
    s = torch.randn(3, 6, requires_grad=True)
    t = torch.randn(3, 6, requires_grad=True)
    kd_loss(s, t, 3.0).backward()
    assert s.grad is not None and t.grad is None


def test_kd_loss_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)


def test_distill_loss_combines_embedding_and_margin_head_on_labelled_rows():
    from slimface.models import create_head

    head = create_head("arcface", embedding_dim=8, num_classes=3)
    loss = DistillLoss(EmbeddingDistillLoss(8, 8), {"embed": 1.0, "margin": 0.5, "kd": 0.1},
                       head=head)
    s = torch.randn(4, 8, requires_grad=True)
    labels = torch.tensor([0, -1, 2, 1])
    terms = loss(s, torch.randn(4, 8), labels, teacher_logits=torch.randn(4, 3))
    terms.total.backward()
    assert set(terms.parts) == {"embed", "margin", "kd"}
    assert s.grad is not None


def test_distill_loss_without_labels_uses_only_the_embedding_term():
    loss = DistillLoss(EmbeddingDistillLoss(8, 8), {"embed": 1.0, "margin": 1.0})
    terms = loss(torch.randn(2, 8), torch.randn(2, 8), torch.tensor([-1, -1]))
    assert set(terms.parts) == {"embed"}


def test_distill_loss_rejects_unknown_weight_names():
    with pytest.raises(ConfigError, match="unknown loss weight"):
        DistillLoss(EmbeddingDistillLoss(8, 8), {"embd": 1.0})


def test_feature_tap_records_named_modules_and_names_bad_ones():
    from slimface.models import create_backbone

    model = create_backbone("slimnet_s")
    tap = FeatureTap(model, ["stages.1"])
    model.eval()(torch.zeros(1, 3, 112, 112))
    assert tap.outputs["stages.1"].shape[1] == 64
    tap.close()
    with pytest.raises(ConfigError, match="no module"):
        FeatureTap(model, ["stages.9"])


def test_target_stats_centre_and_scale_each_dimension():
    rng = np.random.default_rng(0)
    t = rng.normal(3.0, 2.0, (500, 2, 4)).astype(np.float32)
    mean, std = target_stats(t)
    z = (t - mean) / std
    assert np.allclose(z.reshape(-1, 4).mean(0), 0, atol=1e-4)
    assert np.allclose(z.reshape(-1, 4).std(0), 1, atol=1e-3)


def test_lr_warms_up_then_decays_to_the_floor():
    cfg = DistillConfig(lr=1.0, steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(50, cfg) < lr_at(20, cfg)


def test_augment_batch_crops_flips_and_is_deterministic_per_seed():
    crops = np.random.default_rng(0).integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    cfg = DistillConfig(jitter=0.0)
    idx = np.arange(6)
    x1, f1 = augment_batch(crops, idx, (16, 16), np.random.default_rng(1), cfg)
    x2, f2 = augment_batch(crops, idx, (16, 16), np.random.default_rng(1), cfg)
    assert x1.shape == (6, 3, 16, 16) and torch.equal(x1, x2) and (f1 == f2).all()


def test_colour_jitter_keeps_range_and_zero_strength_is_identity():
    x = torch.rand(3, 3, 8, 8) * 255
    same = colour_jitter(x.clone(), np.random.default_rng(0), 0.0)
    assert torch.allclose(same, x, atol=1e-3)
    out = colour_jitter(x.clone(), np.random.default_rng(0), 0.5, grey_prob=1.0)
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-3)  # grey_prob=1 -> grey images


def test_config_overrides_are_type_checked(tmp_path: Path):
    path = tmp_path / "c.py"
    path.write_text("from slimface.compress.distill import DistillConfig\n"
                    "config = DistillConfig(steps=7)\n")
    cfg = load_distill_config(path, ["lr=0.01", "flip=false", "sources=[\"att\"]"])
    assert (cfg.steps, cfg.lr, cfg.flip, cfg.sources) == (7, 0.01, False, ("att",))
    with pytest.raises(ConfigError, match="unknown config key"):
        apply_overrides(cfg, ["stepz=3"])
    with pytest.raises(ConfigError, match="not a valid int"):
        apply_overrides(cfg, ["steps=many"])
    with pytest.raises(ConfigError, match="unknown source"):
        apply_overrides(cfg, ["sources=[\"imagenet\"]"])


def test_config_file_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_distill_config(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("config = 3\n")
    with pytest.raises(ConfigError, match="DistillConfig"):
        load_distill_config(bad)


def test_config_dict_round_trip():
    cfg = DistillConfig(sources=("att",), loss_weights={"embed": 1.0, "margin": 0.1})
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg


def _tiny_distiller(tmp_path: Path, steps: int = 3) -> Distiller:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (16, 40, 40, 3), dtype=np.uint8)
    t = rng.normal(size=(16, 2, 128)).astype(np.float32)
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    cfg = DistillConfig(student="slimnet_s", student_kwargs={"input_size": [32, 32]},
                        batch_size=8, steps=steps, warmup_steps=1,
                        eval_every=0, log_every=1, checkpoint_minutes=0.0, threads=1)
    return Distiller(cfg, crops, t, np.full(16, -1), (32, 32), tmp_path)


@pytest.mark.slow
def test_distiller_trains_checkpoints_and_resumes(tmp_path: Path):
    d = _tiny_distiller(tmp_path, steps=3)
    d.run(tmp_path / "log.jsonl", progress=False, until_step=2)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "model.pt").is_file()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 2 and np.isfinite(lines[-1]["loss"])
    resumed = _tiny_distiller(tmp_path, steps=3)
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    assert resumed.state.step == 2
    for k, v in d.student.state_dict().items():
        assert torch.equal(v, resumed.student.state_dict()[k]), k


def test_student_output_is_mapped_back_to_teacher_space(tmp_path: Path):
    d = _tiny_distiller(tmp_path)
    x = torch.rand(2, 3, 32, 32) * 255
    d.student.eval()
    raw = d.student.forward_raw(x)
    out = d.student(x)
    assert torch.allclose(out, raw * torch.from_numpy(d.std) + torch.from_numpy(d.mean),
                          atol=1e-5)


def test_export_writes_safetensors_that_load_into_the_architecture(tmp_path: Path):
    from safetensors import safe_open

    from slimface.models import create_backbone
    from slimface.models.students import load_student_weights

    d = _tiny_distiller(tmp_path)
    d.save_model(tmp_path / "model.pt")
    out = export_student(tmp_path / "model.pt", tmp_path / "s.safetensors", {"lfw": 0.5})
    with safe_open(str(out), framework="pt") as f:
        meta = json.loads(f.metadata()["slimface"])
    assert meta["architecture"]["backbone"] == "slimnet_s" and meta["lfw"] == 0.5
    fresh = create_backbone("slimnet_s", input_size=(32, 32)).eval()
    load_student_weights(fresh, out)
    x = torch.rand(1, 3, 32, 32) * 255
    assert torch.allclose(fresh(x), d.student.eval()(x), atol=1e-5)


def test_export_refuses_files_over_the_size_limit(tmp_path: Path):
    d = _tiny_distiller(tmp_path)
    d.save_model(tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="exceeds"):
        export_student(tmp_path / "model.pt", tmp_path / "s.safetensors", {}, max_bytes=1000)


def test_export_names_a_bad_input_file(tmp_path: Path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not torch")
    with pytest.raises(ModelFileError, match="x.pt"):
        export_student(bad, tmp_path / "s.safetensors", {})


@pytest.mark.slow
def test_any_registered_backbone_can_be_the_student(tmp_path: Path):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (8, 120, 120, 3), dtype=np.uint8)
    t = rng.normal(size=(8, 2, 128)).astype(np.float32)
    cfg = DistillConfig(student="mobilefacenet_050", batch_size=4, steps=1, warmup_steps=1,
                        eval_every=0, checkpoint_minutes=60.0, threads=1)
    d = Distiller(cfg, crops, t, np.full(8, -1), (112, 112), tmp_path)
    assert not d.maps_to_teacher
    rec = d.train_step(0)
    assert np.isfinite(rec["loss"])


def test_max_shift_limits_crop_offsets_around_the_centre():
    crops = np.zeros((4, 20, 20, 3), np.uint8)
    crops[:, 10, 10] = 255  # a dot at the canvas centre stays within +-1 px of (8, 8)
    cfg = DistillConfig(jitter=0.0, flip=False, max_shift=1)
    x, _ = augment_batch(crops, np.arange(4), (16, 16), np.random.default_rng(0), cfg)
    ys, xs = np.nonzero(x[:, 0].amax(0).numpy())
    assert ys.min() >= 7 and ys.max() <= 9 and xs.min() >= 7 and xs.max() <= 9


def test_init_from_grows_slimnet_s_into_slimnet_s2_without_changing_its_output(tmp_path: Path):
    small = create_backbone("slimnet_s").eval()
    with torch.no_grad():  # non-trivial BN statistics, so an identity block would show up
        for m in small.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.weight.uniform_(0.5, 1.5)
    path = tmp_path / "model.pt"
    torch.save({"architecture": {"backbone": "slimnet_s", "kwargs": {}},
                "state_dict": small.state_dict()}, path)
    grown = create_backbone("slimnet_s2")
    fresh = init_student_weights(grown, path)
    x = torch.rand(2, 3, 112, 112) * 255
    with torch.no_grad():
        assert torch.allclose(grown.eval()(x), small(x), atol=1e-5)
    assert fresh and all(k.startswith("stages.") for k in fresh)


def test_init_from_refuses_weights_of_another_architecture(tmp_path: Path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": create_backbone("slimnet_l").state_dict()}, path)
    with pytest.raises(ModelFileError, match="do not fit"):
        init_student_weights(create_backbone("slimnet_s"), path)
    with pytest.raises(ConfigError, match="not found"):
        init_student_weights(create_backbone("slimnet_s"), tmp_path / "missing.pt")


def test_output_dropout_is_flagged_for_distillation():
    from slimface.compress.distill import warn_output_dropout
    from slimface.models import create_backbone

    assert warn_output_dropout(create_backbone("face_resnet_a", width=0.25))
    assert not warn_output_dropout(create_backbone("face_resnet_a", width=0.25, dropout=0.0))
