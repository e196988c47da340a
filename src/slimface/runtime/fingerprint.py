"""A short hash of a model's weights: what galleries, thresholds and cached exports compare.

Two models agree only if their weights agree; a registry name alone does not say which
weights (a retrained ``slimface-mobile`` keeps its name).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from slimface.errors import ModelError


def model_fingerprint(model: Any) -> str:
    """A short hash of the weights: two galleries agree only if their weights agree."""
    given = getattr(model, "fingerprint", None)
    if isinstance(given, str) and given:
        return given
    h = hashlib.sha256()
    path = getattr(model, "path", None)
    state = model.state_dict() if callable(getattr(model, "state_dict", None)) else {}
    if state:
        for key, value in sorted(state.items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:24]
    if path is not None and Path(path).is_file():  # runtime backends (ONNX): the file itself
        h.update(Path(path).read_bytes())
        return h.hexdigest()[:24]
    raise ModelError(f"cannot fingerprint model {type(model).__name__}: it has neither "
                     "state_dict() nor a file path")
