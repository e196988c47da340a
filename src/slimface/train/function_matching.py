"""Function-matching distillation: a live teacher embeds the very batch the student sees.

Beyer et al. 2022 ("Knowledge distillation: A good teacher is patient and consistent")
measured that distillation from little data works when teacher and student see exactly the
same augmented view, inputs are mixed aggressively, and the schedule is long; cached teacher
outputs of un-augmented crops overfit. Each step here:

1. draws a batch of aligned face canvases and augments it from ``(seed, step)`` alone
   (:mod:`slimface.train.augment`: jitter, photo effects, mixup), so a resumed run replays
   the same stream;
2. runs the teacher (:mod:`slimface.train.teacher`, LiteRT for the imported MobileFaceNet) on
   those pixels;
3. trains the student on two losses: the embedding regressed onto the teacher's, centred
   and rescaled per dimension (``(t - mu) / sigma``, mapped back inside the student by its
   ``TeacherSpaceMap``), and a relational term matching the batch's cosine-similarity matrix
   to the teacher's (what verification and search compare).

Checkpoints are atomic and hold everything a resume needs; the log is JSONL; LFW view 1 (its
pairs, all-pairs and 1:N read-outs) is the health check, and ``backbone.pt`` keeps the best
step by view-1 all-pairs TAR at FAR 1e-4.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimface.errors import ConfigError, DataError, ModelFileError
from slimface.train.augment import AugmentConfig, augment_batch
from slimface.train.checkpoint import (BACKBONE_NAME, CHECKPOINT_NAME, backbone_record,
                                       load_state, save_state)
from slimface.train.config import TrainConfig, config_to_dict

log = logging.getLogger("slimface.train")

#: The view-1 figure that picks the kept step (what users see at low FAR).
SELECT_KEY = "lfw_view1_tar_at_far_1e-4"


def training_canvases(data_root: Path, sources: tuple, template: str, pad: int,
                      detector: str, progress: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Aligned face canvases (template padded by ``pad``) of every training image.

    The image list excludes every LFW pair image (view 1 and view 2); images where no face
    is found are dropped (a centre crop would teach a misaligned view).
    """
    from slimface.align.pipeline import align_paths
    from slimface.align.templates import get_template
    from slimface.data.training import list_training_images, padded_copies

    images = list_training_images(data_root, sources)
    det_paths = padded_copies(images, 0.25, 2, progress)
    batch = align_paths(det_paths, get_template(template).padded(pad), detector=detector,
                        multi_face="largest", no_face="centre", workers=2, progress=progress)
    keep = np.array([s != "centre" for s in batch.status])
    if not keep.any():
        raise DataError(f"{data_root}: no face found in any training image")
    info = {"images": int(keep.sum()), "dropped_no_face": int((~keep).sum()),
            "per_source": images.subset(np.flatnonzero(keep).tolist()).counts(),
            "lfw_pair_images": 0}
    return np.ascontiguousarray(batch.crops[keep]), info


def centre_views(canvas: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The un-augmented crop at the centre of each canvas."""
    top = (canvas.shape[1] - out_hw[0]) // 2
    left = (canvas.shape[2] - out_hw[1]) // 2
    return np.ascontiguousarray(canvas[:, top:top + out_hw[0], left:left + out_hw[1]])


def relational_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the off-diagonal cosine similarities within the batch."""
    s = F.normalize(student, dim=1)
    t = F.normalize(teacher, dim=1)
    diff = s @ s.T - t @ t.T
    n = len(s)
    return (diff.pow(2).sum() - diff.diagonal().pow(2).sum()) / max(n * (n - 1), 1)


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def init_partial(student: nn.Module, path: str) -> list[str]:
    """Copy every tensor of a trained student whose name and shape fit; returns the rest."""
    from slimface.train.checkpoint import load_trained_backbone

    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    elif p.is_file():
        state = load_trained_backbone(p).state_dict()
    else:  # a registry name with shipped weights, e.g. "slimface-mobile"
        from slimface.models import create_backbone

        state = create_backbone(path, pretrained=True).state_dict()
    own = student.state_dict()
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    student.load_state_dict(fit, strict=False)
    return [k for k in own if k not in fit]


class FunctionMatchingTrainer:
    """Owns student, optimizer, teacher statistics and the loop; teacher and data injected."""

    def __init__(self, config: TrainConfig, canvas: np.ndarray, teacher: Any, out_dir: Path,
                 resume: bool = False, evaluator: Callable[[nn.Module], dict] | None = None,
                 progress: bool = True):
        from slimface.models import create_backbone

        self.config = config
        self.canvas = canvas
        self.teacher = teacher
        self.out_dir = Path(out_dir)
        self.evaluator = evaluator
        self.progress = progress
        self.augment = AugmentConfig(**config.augment)
        torch.manual_seed(config.seed)
        self.student = create_backbone(config.backbone, **config.backbone_kwargs)
        from slimface.align.templates import canonical_template_name

        if canonical_template_name(getattr(self.student, "template", "")) != \
                canonical_template_name(teacher.template):
            raise ConfigError(f"student template {self.student.template!r} differs from the "
                              f"teacher's {teacher.template!r}: function matching feeds both "
                              "the same pixels")
        if self.student.embedding_dim != teacher.embedding_dim:
            raise ConfigError(f"student embedding_dim {self.student.embedding_dim} != teacher "
                              f"{teacher.embedding_dim}: set backbone_kwargs embedding_dim")
        self.out_hw = tuple(self.student.input_size)
        if config.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.total_steps = config.epochs * max(1, config.steps_per_epoch)
        self.step, self.seconds, self.best = 0, 0.0, -1.0
        self.history: list[dict[str, Any]] = []
        if resume and (self.out_dir / CHECKPOINT_NAME).is_file():
            self._load()
        else:
            if config.init_from:
                fresh = init_partial(self.student, config.init_from)
                log.info("init_from %s: %d tensors keep their initialisation", config.init_from,
                         len(fresh))
            self._set_target_stats()

    # ------------------------------------------------------------------ state
    def _set_target_stats(self) -> None:
        """Per-dimension mean and spread of the teacher's embeddings of centre crops."""
        n = min(len(self.canvas), 2048)
        idx = np.random.default_rng([self.config.seed, 7]).choice(len(self.canvas), n,
                                                                   replace=False)
        views = centre_views(self.canvas[np.sort(idx)], self.out_hw)
        emb = np.concatenate([self.teacher.embed(views[i:i + 64]) for i in range(0, n, 64)])
        mean = torch.from_numpy(emb.mean(0))
        std = torch.from_numpy(emb.std(0)).clamp_min(1e-4)
        self.student.output_map.set_target_stats(mean, std)
        log.info("teacher target stats from %d crops: |mean| %.3f, mean std %.4f", n,
                 float(mean.norm()), float(std.mean()))

    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": self.seconds, "best": self.best,
                "history": self.history, "config": config_to_dict(self.config),
                "student": self.student.state_dict(),
                "optimizer": self.optimizer.state_dict(), "teacher": self.teacher.name}

    def save_checkpoint(self) -> None:
        save_state(self.out_dir / CHECKPOINT_NAME, self._state())

    def _load(self) -> None:
        state = load_state(self.out_dir / CHECKPOINT_NAME)
        if state.get("teacher") != self.teacher.name:
            raise ModelFileError(f"{self.out_dir / CHECKPOINT_NAME}: trained against teacher "
                                 f"{state.get('teacher')!r}, not {self.teacher.name!r}")
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.best, self.history = float(state.get("best", -1.0)), list(state.get("history", []))
        log.info("resumed %s at step %d (%.1f h trained)", self.out_dir, self.step,
                 self.seconds / 3600)

    def save_backbone(self) -> Path:
        path = self.out_dir / BACKBONE_NAME
        save_state(path, backbone_record(self.config.backbone, self.config.backbone_kwargs,
                                         self.student))
        return path

    # ------------------------------------------------------------------ one step
    def _batch(self, step: int) -> np.ndarray:
        n, b = len(self.canvas), self.config.batch_size
        per_epoch = max(1, n // b)
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([self.config.seed, 10_000_019, epoch]).permutation(n)
        rng = np.random.default_rng([self.config.seed, step])
        return augment_batch(self.canvas[perm[k * b:(k + 1) * b]], self.out_hw, rng,
                             self.augment)

    def train_step(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        views = self._batch(step)
        t1 = time.perf_counter()
        target = torch.from_numpy(self.teacher.embed(views))
        t2 = time.perf_counter()
        x = torch.from_numpy(views).permute(0, 3, 1, 2).float()
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_lr(step, self.total_steps, self.config.warmup_steps,
                                    self.config.lr)
        self.student.train()
        raw = self.student.forward_raw(x)
        out_map = self.student.output_map
        centred = (target - out_map.target_mean) / out_map.target_std
        weights = self.config.loss_weights
        embed = F.mse_loss(raw, centred)
        rel = relational_loss(out_map(raw), target)
        loss = weights.get("embed", 1.0) * embed + weights.get("relational", 0.0) * rel
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        t3 = time.perf_counter()
        cos = F.cosine_similarity(out_map(raw.detach()), target, dim=1).mean()
        return {"loss": float(loss.detach()), "embed": float(embed.detach()),
                "relational": float(rel.detach()), "cos_to_teacher": float(cos),
                "augment_s": t1 - t0, "teacher_s": t2 - t1, "student_s": t3 - t2}

    # ------------------------------------------------------------------ loop
    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _evaluate(self) -> dict[str, Any]:
        if self.evaluator is None:
            return {}
        self.student.eval()
        result = self.evaluator(self.student)
        score = result.get(SELECT_KEY)
        if score is not None and score > self.best:
            self.best = float(score)
            self.save_backbone()
            result["kept"] = True
        return result

    def fit(self, until_step: int = 0) -> dict[str, Any]:
        """Train to the schedule's end (or ``until_step``); returns a summary."""
        from tqdm import tqdm

        self.out_dir.mkdir(parents=True, exist_ok=True)
        stop = min(self.total_steps, until_step or self.total_steps)
        cfg = self.config
        window: dict[str, float] = {}
        last_ckpt = time.perf_counter()
        with tqdm(total=stop, initial=self.step, desc="distill", unit="step",
                  disable=not self.progress, dynamic_ncols=True) as bar:
            while self.step < stop:
                start = time.perf_counter()
                parts = self.train_step(self.step)
                if not math.isfinite(parts["loss"]):
                    raise ConfigError(f"loss became {parts['loss']} at step {self.step}; "
                                      "lower lr")
                self.step += 1
                self.seconds += time.perf_counter() - start
                for k, v in parts.items():
                    window[k] = window.get(k, 0.0) + v
                window["n"] = window.get("n", 0) + 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == stop:
                    record = self._window_record(window)
                    bar.set_postfix(loss=f"{record['loss']:.4f}",
                                    cos=f"{record['cos_to_teacher']:.3f}",
                                    img_s=f"{record['images_per_s']:.0f}")
                    if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == stop):
                        record.update(self._evaluate())
                        self.history.append(record)
                    self._log(record)
                    window = {}
                if (time.perf_counter() - last_ckpt > 60 * cfg.checkpoint_minutes
                        or self.step == stop):
                    self.save_checkpoint()
                    last_ckpt = time.perf_counter()
        if self.evaluator is None or not (self.out_dir / BACKBONE_NAME).is_file():
            self.save_backbone()
        return {"steps": self.step, "hours": self.seconds / 3600, "best_view1": self.best,
                "backbone": str(self.out_dir / BACKBONE_NAME)}

    def _window_record(self, window: dict[str, float]) -> dict[str, Any]:
        n = window.pop("n")
        mean = {k: v / n for k, v in window.items()}
        step_s = mean["augment_s"] + mean["teacher_s"] + mean["student_s"]
        return {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
                "hours": self.seconds / 3600, **mean,
                "images_per_s": self.config.batch_size / max(step_s, 1e-9)}
