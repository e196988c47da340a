"""Bring your own model: TFLite and ONNX face-embedding networks as slimface backbones.

``import_model("m.tflite", template="arcface112")`` returns a
:class:`~slimface.models.graph.GraphNet` (a plain ``torch.nn.Module`` holding real
``nn.Conv2d``/``nn.Linear`` layers) that evaluation, embedding, verification, the gallery,
export and every compress command accept like a native backbone;
:func:`slimface.runtime.imported.save_imported` writes it
as a ``.slim`` file whose metadata records the source file's sha256, its input layout,
normalisation and the alignment template.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from slimface.errors import ModelFileError
from slimface.models.graph import GraphNet
from slimface.models.importers._builder import sha256_of

IMPORT_SUFFIXES: tuple[str, ...] = (".tflite", ".onnx")
#: The usual input normalisation of MobileFaceNet/ArcFace-style exports: (x - 127.5) / 128.
DEFAULT_PIXEL_MEAN = 127.5
DEFAULT_PIXEL_STD = 128.0
#: Fewer embedding dimensions than this draw a warning: face-embedding networks output
#: typically 128 to 512 (a few 64), while a 3-d output is what pooling an image's colours
#: gives.
MIN_FACE_EMBEDDING_DIM = 32

log = logging.getLogger(__name__)


def _read(path: Path) -> tuple[Any, dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from slimface.models.importers.tflite import read_tflite

        return read_tflite(path)
    if suffix == ".onnx":
        from slimface.models.importers.onnx import read_onnx

        return read_onnx(path)
    raise ModelFileError(f"{path}: cannot import {suffix or 'a file without suffix'!r} "
                         f"(known: {', '.join(IMPORT_SUFFIXES)})")


def _normalisation(info: dict[str, Any], pixel_mean: float | Sequence[float] | None,
                   pixel_std: float | Sequence[float] | None) -> tuple[list[float], list[float]]:
    """Explicit values win; an ONNX file slimface exported normalises inside (0 / 1)."""
    ours = info.get("metadata", {}).get("producer") == "slimface"
    mean = pixel_mean if pixel_mean is not None else (0.0 if ours else DEFAULT_PIXEL_MEAN)
    std = pixel_std if pixel_std is not None else (1.0 if ours else DEFAULT_PIXEL_STD)
    as_list = lambda v: [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]  # noqa: E731
    return as_list(mean), as_list(std)


def _warn_if_tiny(src: Path, dim: int) -> None:
    """Import what is asked, but say when the output is too small to be a face embedding:
    similarities of such vectors would look like answers and mean nothing. 0 means the
    file leaves the size open (a dynamic dimension): nothing to judge."""
    if 0 < dim < MIN_FACE_EMBEDDING_DIM:
        log.warning("%s: its output has only %d dimensions (face-embedding models typically have "
                    "128 to 512); it is unlikely to be a face-embedding model", src, dim)


def import_model(path: str | os.PathLike[str], template: str | None = None,
                 pixel_mean: float | Sequence[float] | None = None,
                 pixel_std: float | Sequence[float] | None = None,
                 bgr: bool = False) -> GraphNet:
    """Convert a float TFLite or ONNX face-embedding network into a GraphNet.

    Args:
        path: the ``.tflite`` or ``.onnx`` file.
        template: alignment template its input expects (default: the file's own metadata,
            else ``arcface112``, the 5-point ArcFace 112x112 crop most face models use).
        pixel_mean, pixel_std: input normalisation ``(x - mean) / std`` on 0..255 pixels,
            scalar or per channel (default 127.5 / 128; 0 / 1 for slimface's own exports).
        bgr: the network expects BGR channel order.

    Raises:
        ModelFileError: missing, corrupt or quantized file, unsupported operator, an input
            that is not an image or an output that is not an ``(N, D)`` embedding.
    """
    src = Path(path)
    if not src.is_file():
        raise ModelFileError(f"{src}: model file not found")
    builder, info = _read(src)
    _warn_if_tiny(src, int(info["embedding_dim"]))
    fused = builder.fuse_prelu()
    mean, std = _normalisation(info, pixel_mean, pixel_std)
    meta = info.get("metadata", {})
    chosen_template = template or meta.get("template") or "arcface112"
    source = {"file": src.name, "sha256": sha256_of(src), "format": info["format"],
              "layout": info["layout"], "pixel_mean": mean, "pixel_std": std,
              "channel_order": "BGR" if bgr else "RGB", "prelu_fused": fused}
    try:
        model = builder.build(info["input"], info["output"], pixel_mean=mean, pixel_std=std,
                              bgr=bgr, template=chosen_template,
                              input_size=info["input_size"],
                              embedding_dim=info["embedding_dim"], source=source)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ModelFileError(f"{src}: cannot build the imported graph ({exc})") from None
    model.name = src.stem
    return model
