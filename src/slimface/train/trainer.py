"""The training loop: one code path for one process and for ``torchrun`` (DDP).

Exactness rules that make ``--resume`` and DDP reproducible:

* which images step ``s`` sees comes from ``DistributedSampler`` (seeded per data pass) and
  ``s`` alone: rank ``r`` of ``W`` takes every ``W``-th index, so ``W`` processes x batch ``b``
  see the same images per step as 1 process x batch ``W*b``;
* augmentation (crop offset, flip) is a pure function of (seed, step, global batch slot);
* the global torch RNG (dropout) is re-seeded from (seed, step, rank) before every step;
* optimizer, LR scheduler and step counter are checkpointed atomically.

So a resumed run replays exactly the steps an uninterrupted run would have taken.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from slimface.errors import ConfigError
from slimface.models import create_backbone, create_head
from slimface.models.heads import HeadOutput
from slimface.train.checkpoint import (BACKBONE_NAME, CHECKPOINT_NAME, backbone_record,
                                       load_state, save_state)
from slimface.train.config import TrainConfig, config_to_dict
from slimface.train.data import CropSet, augment_params, crop_batch
from slimface.train.distributed import DistInfo, all_reduce_mean, init_distributed

log = logging.getLogger("slimface.train")
Evaluator = Callable[[nn.Module], dict[str, float]]
#: ``(data_root, template, detector, batch_size) -> Evaluator``: how a caller injects a
#: periodic health check (``slimface train`` passes ``slimface.eval.view1.LfwView1Evaluator``).
EvaluatorFactory = Callable[[Path, str, str, int], Evaluator]


class FaceTrainModel(nn.Module):
    """Backbone + head as one module, so DDP synchronises both with one wrapper."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        return self.head(self.backbone(x), labels)


class StepSampler:
    """Maps a global step to this rank's dataset indices and their global batch slots."""

    def __init__(self, n: int, batch_size: int, info: DistInfo, seed: int):
        self.sampler = DistributedSampler(range(n), num_replicas=info.world_size,
                                          rank=info.rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.batch_size = batch_size
        self.info = info
        self.batches_per_pass = len(self.sampler) // batch_size
        if self.batches_per_pass < 1:
            raise ConfigError(f"{n} images cannot fill one batch of {batch_size} x "
                              f"{info.world_size} processes; lower batch_size")
        self._pass = -1
        self._order: list[int] = []

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        data_pass, i = divmod(step, self.batches_per_pass)
        if data_pass != self._pass:
            self.sampler.set_epoch(data_pass)
            self._order = list(self.sampler)
            self._pass = data_pass
        idx = np.asarray(self._order[i * self.batch_size:(i + 1) * self.batch_size])
        slots = np.arange(self.batch_size) * self.info.world_size + self.info.rank
        return idx, slots


def lr_factor(step: int, warmup_steps: int, milestone_steps: tuple[int, ...],
              gamma: float) -> float:
    """Linear warm-up, then multiply by ``gamma`` at every milestone passed."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    return warm * gamma ** sum(step >= m for m in milestone_steps)


def _split_decay(module: nn.Module) -> list[dict[str, Any]]:
    """No weight decay on 1-d parameters (BN, PReLU, biases): standard for face nets."""
    decay = [p for p in module.parameters() if p.ndim > 1]
    no_decay = [p for p in module.parameters() if p.ndim <= 1]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (Face-ResNet's recipe, Zhou et al. 2018), or AdamW, the usual choice
    for binary networks.

    The BNN literature (XNOR-Net++, Bi-Real) trains networks with binary weights and
    activations by Adam: its per-parameter step does not shrink with the straight-through
    gradient's scale. Weight decay stays off 1-d parameters either way.
    """
    groups = _split_decay(model)
    for group in groups:
        group.setdefault("weight_decay", config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


@dataclass
class RunState:
    step: int = 0
    images: int = 0


class Trainer:
    """Train ``config`` on ``data``; rank 0 writes checkpoints, metrics and the progress bar.

    The seed is set before the backbone is built, so every rank starts from the same weights
    (pass an already built ``backbone`` only after seeding the same way on every rank).
    """

    def __init__(self, config: TrainConfig, data: CropSet, out_dir: str | Path,
                 resume: bool = False, evaluator: Evaluator | None = None,
                 progress: bool = True, info: DistInfo | None = None,
                 backbone: nn.Module | None = None):
        self.config = config
        self.data = data
        self.out_dir = Path(out_dir)
        self.info = info or init_distributed()
        self.evaluator = evaluator
        self.progress = progress
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        # ``backbone`` lets tests and distillation pass a module the registry does not know.
        self.backbone = backbone or create_backbone(config.backbone, **config.backbone_kwargs)
        head_kwargs = dict(config.head_kwargs)
        try:
            self.head = create_head(config.head, embedding_dim=self.backbone.embedding_dim,
                                    num_classes=data.num_classes, **head_kwargs)
        except TypeError as exc:
            raise ConfigError(f"head {config.head!r} rejects head_kwargs {head_kwargs}: {exc}")
        self.model = FaceTrainModel(self.backbone, self.head)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.sampler = StepSampler(len(data), config.batch_size, self.info, config.seed)
        self.steps_per_epoch = config.steps_per_epoch or self.sampler.batches_per_pass
        self.total_steps = config.schedule_steps(self.steps_per_epoch)
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.optimizer = make_optimizer(self.model, config)
        milestones = tuple(m * self.steps_per_epoch for m in config.milestones)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config.warmup_steps, milestones, config.gamma))
        self.state = RunState()
        if resume:
            self._load_checkpoint()
        self.ddp: nn.Module = (DistributedDataParallel(self.model) if self.info.enabled
                               else self.model)

    # ----- checkpoints -------------------------------------------------------------------
    def _checkpoint_state(self) -> dict[str, Any]:
        return {"step": self.state.step, "images": self.state.images,
                "backbone": self.backbone.state_dict(), "head": self.head.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "config": config_to_dict(self.config),
                "world_size": self.info.world_size, "num_classes": self.data.num_classes}

    def save_checkpoint(self) -> None:
        if not self.info.is_main:
            return
        save_state(self.out_dir / CHECKPOINT_NAME, self._checkpoint_state())

    def _load_checkpoint(self) -> None:
        path = self.out_dir / CHECKPOINT_NAME
        state = load_state(path)
        if state.get("num_classes") != self.data.num_classes:
            raise ConfigError(f"{path}: checkpoint has {state.get('num_classes')} classes, the "
                              f"data has {self.data.num_classes}; same data and config needed")
        self.backbone.load_state_dict(state["backbone"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.state = RunState(int(state["step"]), int(state["images"]))
        if self.info.is_main:
            log.info("resumed %s at step %d", path, self.state.step)

    def save_backbone(self) -> Path:
        path = self.out_dir / BACKBONE_NAME
        if self.info.is_main:
            save_state(path, backbone_record(self.config.backbone,
                                             self.config.backbone_kwargs, self.backbone))
        return path

    # ----- one step ----------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx, slots = self.sampler.indices(step)
        crops = self.data.crops[idx]
        pad_hw = (crops.shape[1] - self.data.crop_size[0], crops.shape[2] - self.data.crop_size[1])
        n_global = self.config.batch_size * self.info.world_size
        oy, ox, fl = augment_params(self.config.seed, step, n_global, pad_hw, self.config.flip)
        x = crop_batch(crops, self.data.crop_size, oy[slots], ox[slots], fl[slots])
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.from_numpy(self.data.labels[idx])

    def train_step(self, step: int) -> tuple[float, float]:
        """One optimizer step; returns (loss, train accuracy) of this rank's batch."""
        torch.manual_seed((self.config.seed * 7919 + step) * 1024 + self.info.rank)
        x, y = self._batch(step)
        out = self.ddp(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        acc = (out.logits.detach().argmax(1) == y).float().mean().item()
        return float(out.loss.detach()), acc

    # ----- the loop ----------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _evaluate(self, step: int) -> dict[str, float]:
        if not (self.info.is_main and self.evaluator):
            return {}
        res = self.evaluator(self.backbone)
        self._log({"step": step, **res})
        return res

    def fit(self) -> dict[str, Any]:
        """Run to ``total_steps``; returns a summary (last loss, images/s, paths)."""
        cfg = self.config
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.state.step, unit="step",
                   disable=not (self.progress and self.info.is_main), dynamic_ncols=True)
        window_loss, window_acc, window_n = 0.0, 0.0, 0
        t0, images0 = time.perf_counter(), self.state.images
        t_window, img_window = t0, self.state.images
        last: dict[str, Any] = {}
        while self.state.step < self.total_steps:
            step = self.state.step
            loss, acc = self.train_step(step)
            if not math.isfinite(loss):
                raise ConfigError(f"loss became {loss} at step {step}; lower lr "
                                  f"(now {self.scheduler.get_last_lr()[0]:.3g})")
            self.state.step += 1
            self.state.images += cfg.batch_size * self.info.world_size
            window_loss, window_acc, window_n = window_loss + loss, window_acc + acc, window_n + 1
            bar.update(1)
            if self.state.step % cfg.log_every == 0 or self.state.step == self.total_steps:
                now = time.perf_counter()
                ips = (self.state.images - img_window) / max(now - t_window, 1e-9)
                last = {"step": self.state.step,
                        "epoch": round(self.state.step / self.steps_per_epoch, 4),
                        "loss": all_reduce_mean(window_loss / window_n, self.info),
                        "train_acc": all_reduce_mean(window_acc / window_n, self.info),
                        "lr": self.scheduler.get_last_lr()[0], "images_per_s": round(ips, 2)}
                self._log(last)
                bar.set_postfix(loss=f"{last['loss']:.3f}", img_s=f"{ips:.1f}")
                window_loss, window_acc, window_n = 0.0, 0.0, 0
                t_window, img_window = now, self.state.images
            finished = self.state.step == self.total_steps
            eval_due = bool(cfg.eval_every) and self.state.step % cfg.eval_every == 0
            # Save before evaluating, so a failing or interrupted evaluation loses no training.
            if self.state.step % cfg.checkpoint_every == 0 or eval_due or finished:
                self.save_checkpoint()
            if finished:
                self.save_backbone()
            if eval_due:
                last.update(self._evaluate(self.state.step))
        bar.close()
        backbone_path = self.save_backbone()  # also when resuming an already finished run
        elapsed = time.perf_counter() - t0
        return {**last, "steps": self.state.step, "total_steps": self.total_steps,
                "seconds": round(elapsed, 2),
                "images_per_s": round((self.state.images - images0) / max(elapsed, 1e-9), 2),
                "out": str(self.out_dir), "backbone_file": str(backbone_path),
                "num_classes": self.data.num_classes, "num_images": len(self.data)}
