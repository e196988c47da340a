"""Stopping and resuming gives bit-identical weights to an uninterrupted run."""
from __future__ import annotations

import json

import torch

from slimface.train.config import TrainConfig
from slimface.train.distributed import DistInfo
from slimface.train.trainer import Trainer
from tests._train_tiny import TinyNet, synthetic_crops

CFG = TrainConfig(backbone="tiny", head="arcface", head_kwargs={"s": 16.0, "m": 0.3},
                  batch_size=8, lr=0.05, warmup_steps=2, epochs=3, milestones=(1, 2),
                  checkpoint_every=2, log_every=1, channels_last=False)


def _train(out, max_steps: int, resume: bool = False) -> Trainer:
    torch.manual_seed(CFG.seed)
    cfg = TrainConfig(**{**CFG.__dict__, "max_steps": max_steps})
    trainer = Trainer(cfg, synthetic_crops(), out, resume=resume, progress=False,
                      info=DistInfo(), backbone=TinyNet(dropout=0.3))
    trainer.fit()
    return trainer


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    # 6 steps/epoch; 9 steps crosses a data pass, an LR milestone and uses dropout.
    full = _train(tmp_path / "full", 9)
    _train(tmp_path / "split", 4)
    resumed = _train(tmp_path / "split", 9, resume=True)
    assert resumed.state.step == 9
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert (full.optimizer.state_dict()["state"][0]["momentum_buffer"]
            .equal(resumed.optimizer.state_dict()["state"][0]["momentum_buffer"]))


def test_metrics_log_and_backbone_file_are_written(tmp_path):
    from slimface.train.checkpoint import load_state

    _train(tmp_path, 3)
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert {"loss", "lr", "images_per_s", "train_acc"} <= set(lines[0])
    state = load_state(tmp_path / "checkpoint.pt")
    assert state["step"] == 3 and "optimizer" in state
    assert load_state(tmp_path / "backbone.pt")["format"] == "slimface-backbone"


def test_backbone_file_loads_through_the_runtime_loader(tmp_path):
    from slimface.models import create_backbone
    from slimface.runtime.loader import load_model
    from slimface.train.checkpoint import backbone_record, load_trained_backbone, save_state

    model = create_backbone("mobilefacenet_050")
    save_state(tmp_path / "backbone.pt", backbone_record("mobilefacenet_050", {}, model))
    for loaded in (load_model(str(tmp_path / "backbone.pt")),
                   load_trained_backbone(tmp_path / "backbone.pt")):
        assert loaded.template == "arcface112"
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v)
