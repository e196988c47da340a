"""Tiny backbone + synthetic identity crops shared by the trainer tests (and the DDP worker)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

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
