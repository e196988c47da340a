"""Embed aligned crops of a PyTorch backbone with ONNX Runtime, when that is faster.

One photo gives one face and its mirror: a batch of two, where PyTorch's per-module Python
overhead costs as much as the arithmetic. ONNX Runtime runs the same graph without it
(the shipped ``slimface-mobile``, a dense residual net, about three times as fast at batch
2 on one thread). :func:`onnx_embedder` exports the backbone once (cached under
``cache_root()/"onnx"``, keyed by the weights' fingerprint), checks that ONNX Runtime gives
the same embeddings as PyTorch (:data:`~slimface.runtime.export.PARITY_MIN_COSINE`), times
both at batch 2 and returns an :class:`OrtEmbedder` only when ONNX Runtime is faster.
Anything that goes wrong (no onnxruntime, a layer the exporter cannot write, parity lost)
leaves the PyTorch path in place, with the reason logged.

``$SLIMFACE_EMBED_RUNTIME`` overrides the choice: ``torch`` never exports, ``onnx`` skips
the timing (parity is still checked), ``auto`` (the default) is as above.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimface.errors import ConfigError
from slimface.models.inference import FlipMode, embed_batches

log = logging.getLogger(__name__)

ENV_VAR = "SLIMFACE_EMBED_RUNTIME"
EMBED_RUNTIMES: tuple[str, ...] = ("auto", "onnx", "torch")
#: ONNX Runtime is taken when its median time at batch 2 is below this share of PyTorch's.
FASTER_SHARE = 0.9


class OrtEmbedder:
    """An ONNX Runtime session for a backbone, with :func:`~slimface.models.inference.
    embed_crops`'s flip handling and normalisation (crops and mirrors in one batch).

    ``session.run`` is thread-safe, so threads embedding different photos share one.
    """

    def __init__(self, session: Any, embedding_dim: int, batch_size: int = 64):
        self.session = session
        self.embedding_dim = int(embedding_dim)
        self.batch_size = batch_size

    def raw(self, crops: np.ndarray) -> np.ndarray:
        """Raw embeddings of uint8 NHWC crops (float32 NCHW 0..255 in, as the backbone)."""
        from slimface.runtime.export import run_onnx

        return run_onnx(self.session, crops, batch_size=max(1, len(crops)))

    def embed_crops(self, crops: np.ndarray, flip: FlipMode = "none",
                    normalize: bool = True) -> np.ndarray:
        """The embeddings ``embed_crops(model, crops, flip=flip)`` gives."""
        return embed_batches(self.raw, crops, self.embedding_dim, self.batch_size, flip,
                             normalize)


def requested_runtime() -> str:
    """``$SLIMFACE_EMBED_RUNTIME`` (``auto`` when unset); an unknown value is an error."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in EMBED_RUNTIMES:
        raise ConfigError(f"{ENV_VAR}={value!r} unknown (choose from "
                          f"{', '.join(EMBED_RUNTIMES)})")
    return value


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
    return OrtEmbedder(session(cached_export(model, fingerprint), threads=1, spin=False),
                       int(getattr(model, "embedding_dim", 0)))


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
