"""The ``.slim`` container: one file format for every model slimface writes.

A ``.slim`` file is a plain safetensors file (so ``safetensors`` tools can inspect it and it
loads without pickle). Tensors hold weights, packed bits (uint8), codebooks, indices and
scales; the safetensors metadata key ``"slimface"`` holds one JSON document describing the
architecture, the quantization scheme of each layer, the alignment template and the calibrated
threshold. ``format_version`` lets later readers refuse files they do not understand.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from slimface.errors import ModelFileError
from slimface.io.atomic import atomic_path

FORMAT_NAME = "slimface"
FORMAT_VERSION = 1
_META_KEY = "slimface"


def _as_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.ascontiguousarray(t)


def save_slim(path: str | os.PathLike[str], tensors: Mapping[str, Any],
              metadata: Mapping[str, Any]) -> Path:
    """Write tensors (numpy or torch) and JSON-serialisable metadata atomically."""
    from safetensors.numpy import save_file

    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **metadata}
    arrays = {k: _as_numpy(v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    return Path(path)


def read_slim_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the JSON header: cheap, for ``slimface info`` and model-compatibility checks."""
    from safetensors import safe_open

    _check_exists(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(f"{path}: not a slimface model file ({exc})") from None
    return _parse_meta(path, raw)


def load_slim(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read every tensor and the metadata; raises :class:`ModelFileError` naming the file."""
    from safetensors import safe_open

    _check_exists(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise ModelFileError(f"{path}: not a slimface model file or corrupt ({exc})") from None
    return tensors, _parse_meta(path, raw)


def _check_exists(path: str | os.PathLike[str]) -> None:
    if not Path(path).is_file():
        raise ModelFileError(f"{path}: model file not found")


def _parse_meta(path: str | os.PathLike[str], raw: str | None) -> dict[str, Any]:
    if raw is None:
        raise ModelFileError(f"{path}: safetensors file without slimface metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: corrupt slimface metadata ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a slimface model file")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: written by a newer slimface (format "
                             f"{meta['format_version']} > {FORMAT_VERSION}); upgrade slimface")
    return meta
