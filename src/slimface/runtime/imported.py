"""Writing an imported network (:mod:`slimface.models.importers`) as a float ``.slim``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from slimface.models.graph import GraphNet
from slimface.runtime.deploy import export_state
from slimface.runtime.slimfile import save_slim


def save_imported(model: GraphNet, out: str | os.PathLike[str],
                  extra_meta: dict[str, Any] | None = None) -> Path:
    """Write an imported (or fine-tuned) GraphNet as a float ``.slim`` file, atomically.

    The metadata records the architecture (the operator graph), the alignment template and
    the source file's provenance (name, sha256, format, layout, normalisation).
    """
    tensors, layers = export_state(model)
    meta: dict[str, Any] = {"architecture": {"backbone": "graph_net",
                                             "kwargs": model.architecture_kwargs()},
                            "layers": layers, "template": model.template,
                            "embedding_dim": model.embedding_dim,
                            "input_size": list(model.input_size), "source": model.source}
    meta.update(extra_meta or {})
    return save_slim(out, tensors, meta)
