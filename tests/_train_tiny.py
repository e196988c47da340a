"""Tiny backbone + synthetic identity crops shared by the trainer tests (and the DDP worker)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from slimface.train.config import TrainConfig
from slimface.train.data import CropSet


class TinyNet(nn.Module):
    """No BatchNorm, so batch splitting across processes cannot change the maths."""

    template = "arcface112"
    input_size = (16, 16)
    embedding_dim = 8

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.act = nn.PReLU(4)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * 4 * 4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv((x - 127.5) / 128.0))
        return self.fc(self.drop(torch.flatten(x, 1)))


def synthetic_crops(n: int = 48, classes: int = 6, pad: int = 2, seed: int = 0) -> CropSet:
    """Class-dependent colour blobs on noise, 20x20 padded crops of a 16x16 face."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    base = rng.integers(0, 255, (classes, 1, 1, 3))
    crops = (rng.integers(0, 60, (n, 16 + 2 * pad, 16 + 2 * pad, 3)) + base[labels] * 0.7)
    return CropSet(crops.clip(0, 255).astype(np.uint8), labels.astype(np.int64),
                   [f"id{i}" for i in range(classes)], (16, 16))


class TinyStudent(nn.Module):
    """A distillation student in the ``slimnet`` contract (``forward_raw`` + ``output_map``),
    small enough that its checkpoints can live in ``tests/data``."""

    template = "arcface112"
    input_size = (112, 112)

    def __init__(self, embedding_dim: int = 16):
        super().__init__()
        from slimface.models.students import TeacherSpaceMap

        self.embedding_dim = embedding_dim
        self.conv = nn.Conv2d(3, 4, 16, stride=16)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 7 * 7, embedding_dim)
        self.output_map = TeacherSpaceMap(embedding_dim)

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv((x - 127.5) / 128.0)))
        return self.fc(torch.flatten(x, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_map(self.forward_raw(x))


def _register_tiny_student() -> None:
    from slimface.models import BACKBONES, register_backbone

    if "tiny_student" not in BACKBONES.names():
        @register_backbone(name="tiny_student")
        def tiny_student(embedding_dim: int = 16, **_: object) -> TinyStudent:
            return TinyStudent(embedding_dim)


_register_tiny_student()


class PixelTeacher:
    """A fixed random projection of 8x8-pooled pixels: deterministic and cheap.

    ``template`` and ``size`` say which crop it expects; it records every batch it sees."""

    name = "pixel-teacher"

    def __init__(self, dim: int = 16, template: str = "arcface112",
                 size: tuple[int, int] = (112, 112)):
        self.embedding_dim = dim
        self.template = template
        self.size = size
        self.seen: list[np.ndarray] = []
        cells = (size[0] // 8) * (size[1] // 8) * 3
        self.w = np.random.default_rng(0).normal(size=(cells, dim)).astype(np.float32)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.seen.append(crops.copy())
        assert crops.shape[1:3] == tuple(self.size), crops.shape
        h, w = crops.shape[1] // 8, crops.shape[2] // 8
        crops = crops[:, :h * 8, :w * 8]
        x = crops.reshape(len(crops), h, 8, w, 8, 3).mean(axis=(2, 4)).reshape(len(crops), -1)
        e = (x / 255.0 - 0.5) @ self.w
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def canvases(n: int = 24, size: int = 128, seed: int = 1) -> np.ndarray:
    """Random uint8 face canvases (N, size, size, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def distill_config(**kw) -> TrainConfig:
    """A six-step distillation of ``tiny_student`` from ``PixelTeacher`` on one thread."""
    base = TrainConfig(objective="distill", teacher="pixel-teacher", backbone="tiny_student",
                       backbone_kwargs={"embedding_dim": 16}, batch_size=4, epochs=1,
                       steps_per_epoch=6, warmup_steps=2, lr=1e-3, threads=1, log_every=2,
                       eval_every=0, checkpoint_minutes=0.0, channels_last=False)
    return replace(base, **kw)


class UnloadableTeacher(PixelTeacher):
    """A teacher whose copy cannot be made in a data worker (as when its model file moved)."""

    def __setstate__(self, state: dict) -> None:
        raise RuntimeError("teacher weights not found")
