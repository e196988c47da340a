"""Checkpoints: atomic writes, pickle-free reads, and the trained-backbone file.

``checkpoint.pt`` holds everything ``--resume`` needs (weights, optimizer, step, RNG state,
the kept-best record, config, the objective's own state) and is replaced atomically, so a run
killed mid-write resumes from the previous checkpoint. ``backbone.pt`` is the deliverable:
backbone weights plus the registry name and kwargs that rebuild it, in the layout
``slimface.runtime.loader.load_model`` reads (``slimface eval --model
work_dirs/NAME/backbone.pt``); :func:`load_trained_backbone` also accepts a full
``checkpoint.pt``. :func:`export_safetensors` turns ``backbone.pt`` into the shipped form.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimface.errors import ModelFileError
from slimface.io.atomic import atomic_save

log = logging.getLogger("slimface.train")

CHECKPOINT_NAME = "checkpoint.pt"
BACKBONE_NAME = "backbone.pt"
#: The size limit of a shipped fp32 student file.
MAX_SHIPPED_BYTES = 4_000_000


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
    elif ("backbone" in state or "student" in state) and "config" in state:
        cfg = state["config"]
        name, kwargs = cfg["backbone"], cfg["backbone_kwargs"]
        weights = state["backbone"] if "backbone" in state else state["student"]
    else:
        raise ModelFileError(f"{path}: neither a backbone.pt nor a training checkpoint")
    model = create_backbone(name, **kwargs)
    model.load_state_dict(weights)
    return model.eval()


def _weights_of(spec: str) -> dict[str, torch.Tensor]:
    from slimface.models import create_backbone

    path = Path(spec)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own types for corrupt files
            raise ModelFileError(f"{path}: cannot read weights ({exc})") from None
    if path.is_file():
        return load_trained_backbone(path).state_dict()
    if path.suffix in (".pt", ".pth") or "/" in spec:
        raise ModelFileError(f"init_from: {path} not found")
    return create_backbone(spec, pretrained=True).state_dict()  # e.g. "slimface-mobile"


def load_init_weights(model: nn.Module, spec: str) -> list[str]:
    """Start ``model`` from trained weights; returns the names of its tensors left fresh.

    ``spec`` is a ``backbone.pt`` / ``checkpoint.pt`` / ``.safetensors`` file or a registry
    name with shipped weights (``"slimface-mobile"``). Every tensor whose name and shape fit is
    copied: a deeper ``slimnet`` grows from a trained shallower one (its extra blocks start as
    identity), a binarized student starts from its float twin (quantized layers keep the float
    tensor names), a wider embedding keeps the trunk. Nothing fitting is an error.
    """
    state = _weights_of(spec)
    own = model.state_dict()
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fit:
        raise ModelFileError(f"init_from {spec}: no tensor fits {type(model).__name__} by name "
                             f"and shape (e.g. {list(state)[:3]})")
    skipped = [k for k in state if k not in fit]
    if skipped:
        log.warning("init_from %s: %d tensors do not fit and were skipped (e.g. %s)", spec,
                    len(skipped), skipped[:3])
    model.load_state_dict(fit, strict=False)
    return [k for k in own if k not in fit]


def export_safetensors(backbone_file: str | Path, out: str | Path, metadata: dict[str, Any],
                       max_bytes: int = MAX_SHIPPED_BYTES) -> Path:
    """Write a trained backbone as fp32 safetensors + ``slimface`` JSON metadata (no pickle).

    The file holds the full state dict (a student's folded teacher-space map included), so
    loading needs only the architecture name; files over ``max_bytes`` are refused.
    """
    from safetensors.torch import save_file

    try:
        model = load_trained_backbone(backbone_file)
    except (KeyError, TypeError) as exc:
        raise ModelFileError(f"{backbone_file}: not a trained backbone ({exc})") from None
    record = load_state(backbone_file)
    arch = (record["architecture"] if "architecture" in record else
            {"backbone": record["config"]["backbone"],
             "kwargs": record["config"]["backbone_kwargs"]})
    tensors = {k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in model.state_dict().items()}
    meta = {"format": "slimface-student", "architecture": arch,
            "template": model.template, "input_size": list(model.input_size),
            "embedding_dim": model.embedding_dim, **metadata}
    atomic_save(out, lambda tmp: save_file(tensors, str(tmp),
                                           metadata={"slimface": json.dumps(meta)}))
    size = Path(out).stat().st_size
    if size > max_bytes:
        Path(out).unlink()
        raise ModelFileError(f"{out}: {size} bytes exceeds the {max_bytes}-byte limit")
    return Path(out)
