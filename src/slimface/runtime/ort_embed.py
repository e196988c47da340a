"""Embed aligned crops of a PyTorch backbone with ONNX Runtime, when that is faster.

One photo gives one face and its mirror: a batch of two, where PyTorch's per-module Python
overhead costs as much as the arithmetic. ONNX Runtime runs the same graph without it
(the shipped ``slimface-mobile``, a dense residual net, about three times as fast at batch
2 on one thread). :func:`onnx_embedder` exports the backbone once (cached under
``cache_root()/"onnx"``, keyed by the weights' fingerprint), checks that ONNX Runtime gives
the same embeddings as PyTorch (:data:`~slimface.runtime.export.PARITY_MIN_COSINE`), times
both at batch 2 and returns an :class:`OrtEmbedder` only when ONNX Runtime is faster. The
embedder then records the choice, so that the next process loads the export without
PyTorch (:mod:`slimface.runtime.ort_twin`).
Anything that goes wrong (no onnxruntime, a layer the exporter cannot write, parity lost)
leaves the PyTorch path in place, with the reason logged.

``$SLIMFACE_EMBED_RUNTIME`` overrides the choice: ``torch`` never exports, ``onnx`` skips
the timing (parity is still checked), ``auto`` (the default) is as above.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimface.runtime.ort_twin import (EMBED_RUNTIMES, ENV_VAR,  # noqa: F401 - re-exported
                                       OrtEmbedder, requested_runtime)

log = logging.getLogger(__name__)
#: ONNX Runtime is taken when its median time at batch 2 is below this share of PyTorch's.
FASTER_SHARE = 0.9


def onnx_embedder(model: Any, runtime: str | None = None,
                  fingerprint: str | None = None) -> OrtEmbedder | None:
    """An :class:`OrtEmbedder` for ``model`` when ``runtime`` (default: the environment's)
    and the checks in the module docstring allow it, else None (use PyTorch).
    ``fingerprint`` (the weights' hash, when the caller has it) names the cached export."""
    runtime = runtime or requested_runtime()
    if runtime not in EMBED_RUNTIMES:
        raise ValueError(f"runtime must be one of {EMBED_RUNTIMES}, got {runtime!r}")
    if runtime == "torch" or not _exportable(model):
        return None
    try:
        model.eval()  # once here, not inside the timed calls
        ort = _build(model, fingerprint)
        probe = _probe_crops(model)
        if not _agrees(model, ort, probe):
            return None
        if runtime == "auto" and not _faster(model, ort, probe):
            return None
    except Exception as exc:  # noqa: BLE001 - any export/runtime failure keeps PyTorch
        log.debug("embedding with PyTorch: ONNX Runtime path unavailable (%s)", exc)
        return None
    log.debug("embedding with ONNX Runtime (%s)", getattr(model, "name", type(model).__name__))
    return ort


def _exportable(model: Any) -> bool:
    """A PyTorch backbone (runtime backends bring their own ``embed_crops``)."""
    from slimface.runtime.loader import OnnxModel

    return (isinstance(model, nn.Module) and not isinstance(model, OnnxModel)
            and not callable(getattr(model, "embed_crops", None))
            and getattr(model, "input_size", None) is not None)


def cached_export(model: nn.Module, fingerprint: str | None = None) -> Path:
    """The model's ONNX file in the cache, exported now when absent (atomic write)."""
    from slimface.io.paths import cache_root
    from slimface.runtime.export import export_onnx
    from slimface.runtime.fingerprint import model_fingerprint

    path = cache_root() / "onnx" / f"{fingerprint or model_fingerprint(model)}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, path)
    return path


def _build(model: nn.Module, fingerprint: str | None) -> OrtEmbedder:
    from slimface.runtime.export import session

    # one intra-op thread: photos are parallel across threads, not inside one photo
    path = cached_export(model, fingerprint)
    return OrtEmbedder(session(path, threads=1, spin=False),
                       int(getattr(model, "embedding_dim", 0)), path=path)


def _probe_crops(model: Any) -> np.ndarray:
    """Two seeded crops of the model's input size (a face and its mirror, as in use)."""
    h, w = (int(v) for v in model.input_size)
    crop = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    return np.concatenate([crop, crop[:, :, ::-1]])


@torch.inference_mode()
def _torch_raw(model: nn.Module, crops: np.ndarray) -> np.ndarray:
    from slimface.runtime.export import torch_embeddings

    return torch_embeddings(model, crops, batch_size=max(1, len(crops)))


def _agrees(model: nn.Module, ort: OrtEmbedder, crops: np.ndarray) -> bool:
    from slimface.runtime.export import PARITY_MIN_COSINE, parity

    check = parity(_torch_raw(model, crops), ort.raw(crops))
    if check["min_cosine"] < PARITY_MIN_COSINE:
        log.warning("embedding with PyTorch: ONNX Runtime disagrees (cosine %.6f < %s)",
                    check["min_cosine"], PARITY_MIN_COSINE)
        return False
    return True


def _faster(model: nn.Module, ort: OrtEmbedder, crops: np.ndarray) -> bool:
    """ONNX Runtime under :data:`FASTER_SHARE` of PyTorch's time at batch 2 (depthwise
    nets such as MobileFaceNet can be slower in ONNX Runtime on x86), timed in alternating
    blocks as every benchmark here is."""
    from slimface.runtime.timing import time_in_blocks

    times = time_in_blocks({"ort": lambda: ort.raw(crops),
                            "torch": lambda: _torch_raw(model, crops)},
                           repeats=6, rounds=3, warmup=1)
    t_ort, t_torch = (float(np.median(times[k])) for k in ("ort", "torch"))
    log.debug("batch 2: ONNX Runtime %.2f ms, PyTorch %.2f ms", t_ort, t_torch)
    return t_ort < FASTER_SHARE * t_torch
