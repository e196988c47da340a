"""The margin objective: identity-labelled crops through a margin head (ArcFace, CosFace,
SphereFace, softmax; :mod:`slimface.models.heads`).

Each step takes random template-sized crops (+ horizontal flip) of the padded aligned faces,
the crop offsets and flips drawn from ``(seed, step, global batch slot)``
(:func:`slimface.train.data.augment_params`), so a rank draws the augmentations an
uninterrupted single-process run would give the same slots.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimface.errors import ConfigError
from slimface.models.heads import HeadOutput
from slimface.train.config import TrainConfig
from slimface.train.data import CropSet, augment_params, crop_batch
from slimface.train.distributed import DistInfo, model_device


class FaceTrainModel(nn.Module):
    """Backbone + head as one module, so DDP synchronises both with one wrapper."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        return self.head(self.backbone(x), labels)


class MarginObjective:
    """Identity folders (:class:`CropSet`) + ``config.head``; reports train accuracy."""

    name = "margin"

    def __init__(self, config: TrainConfig, data: CropSet):
        self.config = config
        self.data = data
        self.head: nn.Module | None = None

    def __len__(self) -> int:
        return len(self.data)

    def bind(self, backbone: nn.Module) -> nn.Module:
        from slimface.models import create_head

        head_kwargs = dict(self.config.head_kwargs)
        try:
            self.head = create_head(self.config.head, embedding_dim=backbone.embedding_dim,
                                    num_classes=self.data.num_classes, **head_kwargs)
        except TypeError as exc:
            raise ConfigError(f"head {self.config.head!r} rejects head_kwargs {head_kwargs}: "
                              f"{exc}") from None
        return FaceTrainModel(backbone, self.head)

    def fresh_start(self) -> None:
        pass

    def batch(self, idx: np.ndarray, slots: np.ndarray, step: int,
              info: DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        crops = self.data.crops[idx]
        size = self.data.crop_size
        pad_hw = (crops.shape[1] - size[0], crops.shape[2] - size[1])
        oy, ox, fl = augment_params(cfg.seed, step, cfg.batch_size * info.world_size, pad_hw,
                                    cfg.flip)
        x = crop_batch(crops, size, oy[slots], ox[slots], fl[slots])
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.from_numpy(self.data.labels[idx])

    def loss(self, model: nn.Module, idx: np.ndarray, slots: np.ndarray, step: int,
             info: DistInfo) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = self.batch(idx, slots, step, info)
        device = model_device(model)
        out = model(x.to(device), y.to(device))
        acc = (out.logits.detach().argmax(1) == y).float().mean().item()
        return out.loss, {"train_acc": acc}

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict(), "num_classes": self.data.num_classes}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        if state.get("num_classes") != self.data.num_classes:
            raise ConfigError(f"{path}: checkpoint has {state.get('num_classes')} classes, the "
                              f"data has {self.data.num_classes}; same data and config needed")
        self.head.load_state_dict(state["head"])

    def summary(self) -> dict[str, Any]:
        return {"num_classes": self.data.num_classes, "num_images": len(self.data)}
