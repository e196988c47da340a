"""Checkpoints: atomic writes, pickle-free reads, and the trained-backbone file.

``checkpoint.pt`` holds everything ``--resume`` needs (weights, optimizer, scheduler, step,
RNG state, config) and is replaced atomically, so a run killed mid-write resumes from the
previous checkpoint. ``backbone.pt`` is the deliverable: backbone weights plus the registry
name and kwargs that rebuild it, in the layout ``slimface.runtime.loader.load_model`` reads
(``slimface eval --model work_dirs/NAME/backbone.pt``); :func:`load_trained_backbone` also
accepts a full ``checkpoint.pt``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimface.errors import ModelFileError
from slimface.io.atomic import atomic_save

CHECKPOINT_NAME = "checkpoint.pt"
BACKBONE_NAME = "backbone.pt"


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: never unpickle arbitrary objects."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: checkpoint not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / not a torch file
        raise ModelFileError(f"{p}: not a readable slimface checkpoint ({exc})") from exc


def backbone_record(name: str, kwargs: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """The layout ``runtime.loader.load_model`` reads from a ``.pt`` file."""
    return {"format": "slimface-backbone",
            "architecture": {"backbone": name, "kwargs": dict(kwargs)},
            "template": getattr(model, "template", ""),
            "embedding_dim": int(getattr(model, "embedding_dim", 0)),
            "input_size": list(getattr(model, "input_size", ())),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def load_trained_backbone(path: str | Path) -> nn.Module:
    """Rebuild a backbone from ``backbone.pt`` or a full ``checkpoint.pt`` (eval mode)."""
    from slimface.models import create_backbone

    state = load_state(path)
    if "architecture" in state and "state_dict" in state:
        arch = state["architecture"]
        name, kwargs, weights = arch["backbone"], arch.get("kwargs") or {}, state["state_dict"]
    elif "backbone" in state and "config" in state:
        cfg = state["config"]
        name, kwargs, weights = cfg["backbone"], cfg["backbone_kwargs"], state["backbone"]
    else:
        raise ModelFileError(f"{path}: neither a backbone.pt nor a training checkpoint")
    model = create_backbone(name, **kwargs)
    model.load_state_dict(weights)
    return model.eval()
