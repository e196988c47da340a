"""Stopping and resuming gives bit-identical weights to an uninterrupted run (margin heads)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from slimface.train.config import TrainConfig
from slimface.train.distributed import DistInfo
from slimface.train.margin import MarginObjective
from slimface.train.trainer import Trainer
from tests._train_tiny import TinyNet, synthetic_crops

DATA = Path(__file__).parent / "data" / "train"
CFG = TrainConfig(backbone="tiny", head="arcface", head_kwargs={"s": 16.0, "m": 0.3},
                  batch_size=8, lr=0.05, warmup_steps=2, epochs=3, milestones=(1, 2),
                  checkpoint_every=2, log_every=1, channels_last=False)


def _trainer(out, max_steps: int, resume: bool = False) -> Trainer:
    cfg = replace(CFG, max_steps=max_steps)
    torch.manual_seed(CFG.seed)  # the backbone is built here, before the trainer seeds
    return Trainer(cfg, MarginObjective(cfg, synthetic_crops()), out, resume=resume,
                   progress=False, info=DistInfo(), backbone=TinyNet(dropout=0.3))


def _train(out, max_steps: int, resume: bool = False) -> Trainer:
    trainer = _trainer(out, max_steps, resume)
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


def test_log_and_backbone_file_are_written(tmp_path):
    from slimface.train.checkpoint import load_state

    _train(tmp_path, 3)
    lines = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert {"loss", "lr", "images_per_s", "train_acc", "step_s"} <= set(lines[0])
    state = load_state(tmp_path / "checkpoint.pt")
    assert state["step"] == 3 and "optimizer" in state and state["objective"] == "margin"
    assert load_state(tmp_path / "backbone.pt")["format"] == "slimface-backbone"


def test_resumes_a_checkpoint_of_the_margin_trainer(tmp_path):
    """``margin_step4_checkpoint.pt`` was written at step 4 by the margin trainer this loop
    replaced (``CFG`` with ``max_steps=4``; its LR scheduler state is now recomputed from the
    step): weights, head, optimizer and step carry over."""
    legacy = torch.load(DATA / "margin_step4_checkpoint.pt", weights_only=True)
    assert "scheduler" in legacy and "objective" not in legacy
    (tmp_path / "checkpoint.pt").write_bytes((DATA / "margin_step4_checkpoint.pt").read_bytes())
    resumed = _trainer(tmp_path, 6, resume=True)
    assert resumed.state.step == 4 and resumed.state.images == legacy["images"]
    for k, v in legacy["head"].items():
        assert torch.equal(resumed.objective.head.state_dict()[k], v), k
    assert resumed.lr_at(4) == CFG.lr and resumed.lr_at(6) == CFG.lr * 0.1   # milestone 6
    resumed.fit()
    assert resumed.state.step == 6


def test_lr_schedules_are_pure_functions_of_the_step(tmp_path):
    t = _trainer(tmp_path, 9)
    assert [round(t.lr_at(s), 6) for s in (0, 1, 5, 6, 12)] == [0.025, 0.05, 0.05, 0.005,
                                                               0.0005]
    cos = _trainer(tmp_path / "c", 9)
    cos.config = replace(CFG, lr_schedule="cosine")
    assert cos.lr_at(1) == 0.05 and cos.lr_at(18) == 0.0


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


def test_max_minutes_ends_the_session_with_a_checkpoint(tmp_path):
    from slimface.train.checkpoint import load_state

    t = _trainer(tmp_path, 9)
    summary = t.fit(max_minutes=1e-9)
    assert summary["steps"] == 1 and load_state(tmp_path / "checkpoint.pt")["step"] == 1
    assert _train(tmp_path, 9, resume=True).state.step == 9
