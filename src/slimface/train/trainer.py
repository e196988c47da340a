"""The training loop: one code path for every objective, one process or ``torchrun`` (DDP).

An objective (:class:`Objective`) says what a step computes: :class:`~slimface.train.margin.
MarginObjective` (identity folders + a margin head) or :class:`~slimface.train.
function_matching.FunctionMatching` (distillation from a live teacher). The :class:`Trainer`
owns everything else: the backbone, sampling, the optimizer and learning-rate schedule,
checkpoints and ``--resume``, the JSONL log, the periodic view-1 check and the kept
``backbone.pt``.

Exactness rules that make ``--resume`` and DDP reproducible:

* which samples step ``s`` sees depends on ``(seed, s)`` alone: one permutation per data pass,
  the global batch a slice of it; rank ``r`` of ``W`` takes every ``W``-th row, so ``W``
  processes x batch ``b`` see the same samples per step as 1 process x batch ``W*b``;
* augmentation is a pure function of ``(seed, step)`` (and the rank or global batch slot);
* the learning rate is a pure function of the step;
* the global torch RNG (dropout) is re-seeded from ``(seed, step, rank)`` before every step;
* weights, optimizer state, step counter and the kept-best record are checkpointed atomically.

So a resumed run replays exactly the steps an uninterrupted run would have taken.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from slimface.errors import ConfigError
from slimface.train.checkpoint import (BACKBONE_NAME, CHECKPOINT_NAME, backbone_record,
                                       load_init_weights, load_state, save_state)
from slimface.train.config import TrainConfig, config_to_dict
from slimface.train.distributed import (DistInfo, all_reduce_mean, any_rank, barrier,
                                        init_distributed, resolve_device)

log = logging.getLogger("slimface.train")
Evaluator = Callable[[nn.Module], dict[str, float]]
#: ``(data_root, template, detector, batch_size) -> Evaluator``: how a caller injects a
#: periodic health check (``slimface train`` passes ``slimface.eval.view1.LfwView1Evaluator``).
EvaluatorFactory = Callable[[Path, str, str, int], Evaluator]

#: The view-1 figure that picks the kept step (what users see at low FAR).
SELECT_KEY = "lfw_view1_tar_at_far_1e-4"
LOG_NAME = "log.jsonl"


class Objective(Protocol):
    """What one training step computes; the :class:`Trainer` does the rest.

    ``bind`` receives the freshly built backbone and returns the module the optimizer trains
    and DDP wraps (backbone plus head or projection); ``loss`` gets that module (possibly
    DDP-wrapped) and this rank's sample indices and global batch slots.
    """

    name: str

    def bind(self, backbone: nn.Module) -> nn.Module: ...

    def __len__(self) -> int: ...

    def fresh_start(self) -> None: ...

    def loss(self, model: nn.Module, idx: np.ndarray, slots: np.ndarray, step: int,
             info: DistInfo) -> tuple[torch.Tensor, dict[str, float]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None: ...

    def summary(self) -> dict[str, Any]: ...


class StepSampler:
    """Maps a global step to this rank's sample indices and their global batch slots.

    Data pass ``p`` is ``default_rng([seed, 10_000_019, p]).permutation(n)``; step ``i`` of the
    pass takes the global batch ``perm[i*B:(i+1)*B]`` (``B = batch_size * world_size``), rank
    ``r`` its rows ``r, r+W, ...``.
    """

    def __init__(self, n: int, batch_size: int, info: DistInfo, seed: int):
        self.n, self.batch_size, self.info, self.seed = n, batch_size, info, seed
        self.global_batch = batch_size * info.world_size
        self.batches_per_pass = n // self.global_batch
        if self.batches_per_pass < 1:
            raise ConfigError(f"{n} samples cannot fill one batch of {batch_size} x "
                              f"{info.world_size} processes; lower batch_size")
        self._pass = -1
        self._order = np.empty(0, np.int64)

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        data_pass, i = divmod(step, self.batches_per_pass)
        if data_pass != self._pass:
            self._order = np.random.default_rng([self.seed, 10_000_019, data_pass]
                                                ).permutation(self.n)
            self._pass = data_pass
        rows = self._order[i * self.global_batch:(i + 1) * self.global_batch]
        slots = np.arange(self.batch_size) * self.info.world_size + self.info.rank
        return rows[slots], slots


def lr_factor(step: int, warmup_steps: int, milestone_steps: tuple[int, ...],
              gamma: float) -> float:
    """Linear warm-up, then multiply by ``gamma`` at every milestone passed."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    return warm * gamma ** sum(step >= m for m in milestone_steps)


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up to ``base``, then half a cosine to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _split_decay(module: nn.Module) -> list[dict[str, Any]]:
    """No weight decay on 1-d parameters (BN, PReLU, biases): standard for face nets."""
    decay = [p for p in module.parameters() if p.ndim > 1]
    no_decay = [p for p in module.parameters() if p.ndim <= 1]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the classic face-recognition recipe) or AdamW.

    ``"sgd"`` and ``"adam"`` keep weight decay off 1-d parameters. The BNN literature
    (XNOR-Net++, Bi-Real) trains binary networks with Adam: its per-parameter step does not
    shrink with the straight-through gradient's scale. ``"adamw"`` decays every parameter in
    one group, as the function-matching recipe was trained.
    """
    name = config.optimizer_name
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    groups = _split_decay(model)
    for group in groups:
        group.setdefault("weight_decay", config.weight_decay)
    if name == "adam":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


@dataclass
class RunState:
    step: int = 0
    images: int = 0
    seconds: float = 0.0                 # training time over every session (not evaluation)
    best: float = -1.0                   # best SELECT_KEY so far (the kept backbone.pt)
    history: list = field(default_factory=list)   # log records that carry a view-1 check


class Trainer:
    """Train ``config``'s backbone on ``objective``; rank 0 writes checkpoints, the log and the
    progress bar.

    The seed is set before the backbone is built, so every rank starts from the same weights
    (pass an already built ``backbone`` only after seeding the same way on every rank).
    ``resume`` continues ``out_dir/checkpoint.pt`` (a fresh start when there is none); without
    it an existing checkpoint is refused rather than overwritten.
    """

    def __init__(self, config: TrainConfig, objective: Objective, out_dir: str | Path,
                 resume: bool = False, evaluator: Evaluator | None = None,
                 progress: bool = True, info: DistInfo | None = None,
                 backbone: nn.Module | None = None):
        from slimface.models import create_backbone

        self.config = config
        self.objective = objective
        self.out_dir = Path(out_dir)
        self.info = info or init_distributed()
        self.evaluator = evaluator
        self.progress = progress
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        # ``backbone`` lets tests pass a module the registry does not know.
        self.backbone = backbone or create_backbone(config.backbone, **config.backbone_kwargs)
        self.device = resolve_device(config.device, self.info)
        self.model = objective.bind(self.backbone).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.sampler = StepSampler(len(objective), config.batch_size, self.info, config.seed)
        self.steps_per_epoch = config.steps_per_epoch or self.sampler.batches_per_pass
        self.schedule_steps = config.schedule_steps(self.steps_per_epoch)
        self.total_steps = (min(self.schedule_steps, config.max_steps) if config.max_steps
                            else self.schedule_steps)
        self.milestone_steps = tuple(m * self.steps_per_epoch for m in config.milestones)
        self.optimizer = make_optimizer(self.model, config)
        self.state = RunState()
        self._prefetched_until = 0   # steps below this were handed to the objective's workers
        path = self.out_dir / CHECKPOINT_NAME
        if resume and path.is_file():
            self._load_checkpoint()
        else:
            if path.is_file():
                raise ConfigError(f"{path} exists: pass --resume to continue it, or --out to "
                                  "start elsewhere")
            if resume and self.info.is_main:
                log.info("%s: no checkpoint yet, starting from step 0", self.out_dir)
            if config.init_from:
                fresh = load_init_weights(self.backbone, config.init_from)
                log.info("init_from %s: %d tensors keep their initialisation",
                         config.init_from, len(fresh))
            objective.fresh_start()
        self.ddp: nn.Module = (DistributedDataParallel(self.model) if self.info.enabled
                               else self.model)

    # ----- learning rate -----------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        cfg = self.config
        if cfg.schedule_name == "cosine":
            return cosine_lr(step, self.schedule_steps, cfg.warmup_steps, cfg.lr)
        return cfg.lr * lr_factor(step, cfg.warmup_steps, self.milestone_steps, cfg.gamma)

    # ----- checkpoints -------------------------------------------------------------------
    def _checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        return {"format": "slimface-train", "objective": self.objective.name,
                "step": s.step, "images": s.images, "seconds": s.seconds, "best": s.best,
                "history": s.history, "config": config_to_dict(self.config),
                "backbone": self.backbone.state_dict(),
                "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "world_size": self.info.world_size, **self.objective.state_dict()}

    def save_checkpoint(self) -> None:
        if self.info.is_main:
            save_state(self.out_dir / CHECKPOINT_NAME, self._checkpoint_state())

    def _load_checkpoint(self) -> None:
        """This loop's checkpoints, and the two layouts it replaced: the margin trainer's
        (``scheduler`` state, now recomputed from the step) and the function-matching
        trainer's (``student`` weights, no RNG state)."""
        path = self.out_dir / CHECKPOINT_NAME
        state = load_state(path)
        kind = state.get("objective") or ("distill" if "teacher" in state else "margin")
        if kind != self.objective.name:
            raise ConfigError(f"{path}: a {kind!r} run; the config asks for objective="
                              f"{self.objective.name!r}")
        self.objective.load_state_dict(state, path)
        self.backbone.load_state_dict(state["backbone"] if "backbone" in state
                                      else state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        step = int(state["step"])
        images = state.get("images", step * self.config.batch_size * self.info.world_size)
        self.state = RunState(step, int(images), float(state.get("seconds", 0.0)),
                              float(state.get("best", -1.0)), list(state.get("history", [])))
        if self.info.is_main:
            log.info("resumed %s at step %d (%.2f h trained)", path, step,
                     self.state.seconds / 3600)

    def save_backbone(self) -> Path:
        path = self.out_dir / BACKBONE_NAME
        if self.info.is_main:
            save_state(path, backbone_record(self.config.backbone,
                                             self.config.backbone_kwargs, self.backbone))
        return path

    # ----- one step ----------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step; returns the loss, the objective's figures for this rank and
        ``step_s``, the step's seconds."""
        t0 = time.perf_counter()
        torch.manual_seed((self.config.seed * 7919 + step) * 1024 + self.info.rank)
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx, slots = self.sampler.indices(step)
        self._prefetch_after(step)
        self.model.train()
        loss, parts = self.objective.loss(self.ddp, idx, slots, step, self.info)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()), **parts, "step_s": time.perf_counter() - t0}

    def _prefetch_after(self, step: int) -> None:
        """Hand the objective the steps after ``step`` it may prepare now (two per data
        worker, none past the end of the schedule), each once: the window moves by one step
        a step, so each step computes one new step's indices, not the whole window's."""
        prefetch = getattr(self.objective, "prefetch", None)
        if prefetch is None or not self.config.data_workers:
            return
        start = max(step + 1, self._prefetched_until)
        end = min(step + 1 + 2 * self.config.data_workers, self.total_steps)
        if start < end:
            prefetch([(s, self.sampler.indices(s)[0]) for s in range(start, end)], self.info)
            self._prefetched_until = end

    # ----- the loop ----------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / LOG_NAME, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _evaluate(self) -> dict[str, Any]:
        """The view-1 check (rank 0); ``backbone.pt`` keeps the best step by SELECT_KEY."""
        if not (self.info.is_main and self.evaluator):
            return {}
        # the check embeds on the CPU; a copy leaves the training weights where they are
        backbone = (self.backbone if self.device.type == "cpu"
                    else copy.deepcopy(self.backbone).cpu())
        result = dict(self.evaluator(backbone))
        score = result.get(SELECT_KEY)
        if score is not None and score > self.state.best:
            self.state.best = float(score)
            self.save_backbone()
            result["kept"] = True
        return result

    def fit(self, until_step: int = 0, max_minutes: float = 0.0) -> dict[str, Any]:
        """Train to ``total_steps`` (or ``until_step``, or for ``max_minutes`` of this run;
        the schedule is unchanged, ``--resume`` continues); returns a summary."""
        cfg = self.config
        stop = min(self.total_steps, until_step) if until_step else self.total_steps
        bar = tqdm(total=stop, initial=self.state.step, unit="step",
                   desc=self.objective.name, disable=not (self.progress and self.info.is_main),
                   dynamic_ncols=True)
        window: dict[str, float] = {}
        window_n, window_s = 0, 0.0
        session_start = last_ckpt = time.perf_counter()
        seconds0, images0 = self.state.seconds, self.state.images
        last: dict[str, Any] = {}
        try:
            while self.state.step < stop:
                step = self.state.step
                parts = self.train_step(step)
                if not math.isfinite(parts["loss"]):
                    raise ConfigError(f"loss became {parts['loss']} at step {step}; lower lr "
                                      f"(now {self.lr_at(step):.3g})")
                step_s = parts["step_s"]
                self.state.step += 1
                self.state.images += cfg.batch_size * self.info.world_size
                self.state.seconds += step_s
                for k, v in parts.items():
                    window[k] = window.get(k, 0.0) + v
                window_n, window_s = window_n + 1, window_s + step_s
                bar.update(1)
                done = self.state.step
                finished = done == stop
                eval_due = bool(cfg.eval_every) and (done % cfg.eval_every == 0 or finished)
                if done % cfg.log_every == 0 or finished or eval_due:
                    last = {"step": done, "epoch": round(done / self.steps_per_epoch, 4),
                            "lr": self.lr_at(step), "hours": self.state.seconds / 3600,
                            **{k: all_reduce_mean(v / window_n, self.info)
                               for k, v in window.items()},
                            "images_per_s": round(cfg.batch_size * self.info.world_size * window_n
                                                  / max(window_s, 1e-9), 2)}
                    bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{last['images_per_s']:.0f}")
                    window, window_n, window_s = {}, 0, 0.0
                out_of_time = bool(max_minutes) and any_rank(
                    time.perf_counter() - session_start >= 60 * max_minutes, self.info)
                # Save before evaluating, so a failing or interrupted evaluation loses no training.
                if (done % cfg.checkpoint_every == 0 or eval_due or finished or out_of_time
                        or (cfg.checkpoint_minutes
                            and time.perf_counter() - last_ckpt >= 60 * cfg.checkpoint_minutes)):
                    self.save_checkpoint()
                    last_ckpt = time.perf_counter()
                if eval_due:
                    last.update(self._evaluate())
                    self.state.history.append(last)
                    self.save_checkpoint()  # with the check's result and the kept-best record
                if last.get("step") == done:
                    self._log(last)
                if out_of_time and not finished:
                    bar.write(f"stopping after {max_minutes} min at step {done} (continue with "
                              "--resume)")
                    break
        finally:
            close = getattr(self.objective, "close", None)  # its data workers, if any
            if close is not None:
                close()
            self._prefetched_until = 0
        bar.close()
        if self.evaluator is None or not (self.out_dir / BACKBONE_NAME).is_file():
            self.save_backbone()
        barrier(self.info)  # no rank leaves (and tears down the group) while rank 0 writes
        elapsed = self.state.seconds - seconds0
        images = self.state.images - images0
        return {**last, "steps": self.state.step, "total_steps": self.total_steps,
                "seconds": round(self.state.seconds, 2), "hours": self.state.seconds / 3600,
                "images_per_s": round(images / max(elapsed, 1e-9), 2) if images else 0.0,
                "best_view1": self.state.best if self.state.best >= 0 else None,
                "out": str(self.out_dir),
                "backbone_file": str(self.out_dir / BACKBONE_NAME),
                **self.objective.summary()}
