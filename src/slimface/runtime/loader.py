"""One entry point from "what the user typed after --model" to a runnable embedding model.

``load_model(spec)`` accepts:

* a **pretrained model name** from the table in :mod:`slimface.models.pretrained`
  (``slimface-mobile``, ``dlib-resnet``, ``dlib-resnet-pq15``, ``mobilefacenet-tflite``...;
  ``slimface models`` lists them): its card's factory with ``pretrained=True``, or its file;
* an **architecture name** (``mobilefacenet``, ``slimnet_s``...): ``create_backbone(name,
  pretrained=True)`` when the factory takes ``pretrained`` (random weights otherwise);
* a **.slim** file: ``runtime.slimfile.load_slim`` + ``runtime.deploy.build_from_slim``;
* a student **.safetensors** file whose ``slimface`` metadata names its architecture;
* a **.pt / .pth** checkpoint, read with ``torch.load(weights_only=True)`` (never unpickled
  code). It must be a dict ``{"architecture": {"backbone": NAME, "kwargs": {...}},
  "state_dict": {...}}``, optionally with ``template``, ``input_size``, ``embedding_dim`` and
  ``threshold`` entries, which become attributes of the model;
* an **.onnx** file: one written by ``slimface export`` (its metadata carries the backbone
  contract) is wrapped in :class:`OnnxModel`; any other, and a **.tflite** file, is imported
  on the fly (``models.importers.import_model``: default normalisation ``(x - 127.5) / 128``
  and template ``arcface112``, input and output checked), since its input scaling is its own.

Whatever the source, the result follows the backbone contract (float32 NCHW RGB 0..255 in,
raw embedding out; attributes ``template``, ``input_size``, ``embedding_dim``) and carries
``name`` = the spec it was loaded from, so evaluation reports can say what they measured.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimface.conventions import DEFAULT_MODEL, default_model_name  # noqa: F401 - re-exported
from slimface.errors import ModelError, ModelFileError, UnknownNameError

MODEL_FILE_SUFFIXES: tuple[str, ...] = (".slim", ".pt", ".pth", ".onnx", ".tflite",
                                        ".safetensors")
log = logging.getLogger(__name__)
#: How ``load_model`` hands back product-quantized layers (see its ``pq_layers``).
PQ_LAYER_CHOICES = ("plain", "pq")
_CONTRACT_ATTRS = ("template", "input_size", "embedding_dim", "threshold")


def _looks_like_file(spec: str) -> bool:
    return Path(spec).suffix.lower() in MODEL_FILE_SUFFIXES or os.sep in spec or Path(spec).exists()


def load_model(spec: str | os.PathLike[str], *, pq_layers: str = "plain",
               **kwargs: Any) -> nn.Module:
    """Load a model by registry name or file (see the module docstring), in eval mode.

    Args:
        spec: pretrained model or architecture name, or path to a ``.slim``, ``.pt``/``.pth``,
            ``.onnx``, ``.tflite`` or student ``.safetensors`` file.
        pq_layers: product-quantized layers of a ``.slim`` file that run the reconstructed
            float kernel become plain torch layers (``"plain"``, for inference: the float
            twin's speed), or stay PQ modules that ``set_pq_mode`` can switch (``"pq"``).
        **kwargs: passed to ``create_backbone`` for registry names (``None`` values dropped);
            for ``.onnx``, ``threads`` sets ONNX Runtime's intra-op threads.

    Raises:
        UnknownNameError: not a file and not a known name (close matches and every
            pretrained model and architecture listed).
        ModelFileError: the file is missing, corrupt, or not in an expected layout.
        ModelError: a named model whose file is not on this machine (says how to get it).
    """
    text = str(spec)
    if not text.strip():
        raise ModelError("empty model name; pass a registry name or a .slim/.pt/.onnx file")
    if pq_layers not in PQ_LAYER_CHOICES:
        raise ValueError(f"pq_layers must be one of {PQ_LAYER_CHOICES}, got {pq_layers!r}")
    if _looks_like_file(text):
        model = _load_file(Path(text), pq_layers=pq_layers, **kwargs)
    else:
        model = _load_registered(text, pq_layers=pq_layers, **kwargs)
    model.name = text
    return model.eval()


def _load_registered(name: str, pq_layers: str = "plain", **kwargs: Any) -> nn.Module:
    from slimface.models import BACKBONES, create_backbone
    from slimface.models.pretrained import find_card

    card = find_card(name)
    if card is not None:
        if card.factory is None:
            return _load_file(card.require_path(), pq_layers=pq_layers, **kwargs)
        kwargs.setdefault("pretrained", True)
        return create_backbone(card.factory, **kwargs)
    if name not in BACKBONES:
        raise unknown_model_error(name)
    factory = BACKBONES.get(name)
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "pretrained" in params or accepts_any:
        kwargs.setdefault("pretrained", True)
    model = create_backbone(name, **kwargs)
    if "random_weights" not in vars(type(model)):
        # every trained model has a card (checked above): this is an architecture's
        # initialisation, for training and timing, not for matching faces
        model.random_weights = True
    return model


def unknown_model_error(name: str) -> UnknownNameError:
    """``name`` is neither a pretrained model nor an architecture: close matches, then both
    lists (pretrained models first)."""
    import difflib

    from slimface.models import BACKBONES
    from slimface.models.pretrained import list_cards

    cards = [c.name for c in list_cards()]
    archs = [n for n in BACKBONES.names()
             if n.replace("_", "-") not in {c.replace("_", "-") for c in cards}]
    close = difflib.get_close_matches(name.strip().lower(), cards + archs, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown model {name!r}{hint} (pretrained models: "
                            f"{', '.join(cards)}; architectures: {', '.join(archs)}; or a "
                            f"{'/'.join(MODEL_FILE_SUFFIXES)} file)")


def _shipped_weights(path: Path) -> Path | None:
    """A bare file name of a model shipped in ``slimface/models/weights`` (e.g.
    ``q_face_resnet_small.slim``), so users need not know where pip put the package."""
    if path.parent != Path(".") or path.is_file():
        return None
    from slimface.models.weights import shipped_file

    return shipped_file(path.name)


def _load_file(path: Path, pq_layers: str = "plain", **kwargs: Any) -> nn.Module:
    path = _shipped_weights(path) or path
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found (expected a registry name or a "
                             f"{'/'.join(MODEL_FILE_SUFFIXES)} file)")
    suffix = path.suffix.lower()
    if suffix == ".slim":
        return _load_slim(path, pq_layers)
    if suffix in (".pt", ".pth"):
        return _load_checkpoint(path)
    if suffix == ".onnx":
        model = OnnxModel(path, threads=kwargs.get("threads"))
        if model.has_contract:
            return model
        # a third-party file takes its own input scaling (often a fixed batch of one): the
        # importer checks its input and output and records the normalisation, rather than
        # scoring slimface's 0..255 pixels silently
        from slimface.models.importers import import_model

        return import_model(path)
    if suffix == ".safetensors":
        from slimface.models.students import load_student_file

        return load_student_file(path)
    if suffix == ".tflite":  # imported on the fly with the default normalisation/template
        from slimface.models.importers import import_model

        return import_model(path)
    raise ModelFileError(f"{path}: unknown model file type {suffix!r} "
                         f"(known: {', '.join(MODEL_FILE_SUFFIXES)})")


def _load_slim(path: Path, pq_layers: str = "plain") -> nn.Module:
    from slimface.runtime.deploy import build_from_slim
    from slimface.runtime.slimfile import load_slim

    tensors, meta = load_slim(path)
    try:
        return build_from_slim(str(path), tensors, meta, plain_pq=pq_layers == "plain")
    except UnknownNameError as exc:
        raise ModelFileError(f"{path}: needs an architecture this slimface does not have "
                             f"({exc})") from None


def _load_checkpoint(path: Path) -> nn.Module:
    """A ``{"architecture": ..., "state_dict": ...}`` dict saved with ``torch.save``."""
    from slimface.models import create_backbone

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise ModelFileError(f"{path}: not a readable weights-only torch checkpoint ({exc})"
                             ) from None
    if not isinstance(ckpt, dict) or "architecture" not in ckpt or "state_dict" not in ckpt:
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelFileError(f"{path}: expected a dict with 'architecture' and 'state_dict' "
                             f"entries, found {found}")
    arch = ckpt["architecture"]
    if not isinstance(arch, dict) or "backbone" not in arch:
        raise ModelFileError(f"{path}: 'architecture' must be {{'backbone': NAME, 'kwargs': "
                             f"{{...}}}}, got {arch!r}")
    try:
        model = create_backbone(arch["backbone"], **dict(arch.get("kwargs") or {}))
    except UnknownNameError as exc:
        raise ModelFileError(f"{path}: unknown architecture ({exc})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: weights do not fit architecture {arch['backbone']!r} "
                             f"({str(exc).splitlines()[0]})") from None
    for key in _CONTRACT_ATTRS:
        if key in ckpt:
            setattr(model, key, tuple(ckpt[key]) if key == "input_size" else ckpt[key])
    return model


class OnnxModel(nn.Module):
    """An ONNX Runtime session behind the backbone contract, so ``embed_crops`` can use it.

    Reads ``template``, ``input_size``, ``embedding_dim`` and ``threshold`` from the model's
    ``metadata_props`` when present (JSON values or plain strings); otherwise ``input_size``
    and ``embedding_dim`` come from static input/output shapes.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 spin: bool = True):
        """``spin=False`` for timing it against another model in alternating blocks (see
        :mod:`slimface.runtime.timing`): spinning threads steal the other model's cores."""
        super().__init__()
        from slimface.runtime.export import session

        self.path = Path(path)
        self.threads = int(threads or min(2, os.cpu_count() or 1))
        self.session = session(self.path, threads=self.threads, spin=spin)
        self.input_name = self.session.get_inputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        self._set_contract_attrs(meta)
        self._warn_if_saturating(meta)

    def _warn_if_saturating(self, meta: dict[str, str]) -> None:
        """An 8-bit-weight int8 file on a CPU without VNNI gives wrong embeddings: say so."""
        from slimface.errors import SaturatingInt8Warning
        from slimface.runtime.export import saturation_note

        note = saturation_note(meta)
        if note:
            warnings.warn(SaturatingInt8Warning(f"{self.path}: {note}"), stacklevel=3)

    def _set_contract_attrs(self, meta: dict[str, str]) -> None:
        values = {k: _parse_meta_value(v) for k, v in meta.items()}
        #: written by ``slimface export``: takes 0..255 pixels as slimface feeds them
        self.has_contract = "template" in values
        in_shape = self.session.get_inputs()[0].shape
        out_shape = self.session.get_outputs()[0].shape
        static_hw = tuple(in_shape[2:4]) if all(isinstance(d, int) for d in in_shape[2:4]) else None
        self.input_size = tuple(values.get("input_size") or static_hw or (112, 112))
        out_dim = out_shape[-1] if isinstance(out_shape[-1], int) else 0
        self.embedding_dim = int(values.get("embedding_dim") or out_dim)
        self.template = values.get("template", "arcface112")
        for optional in ("threshold", "detector", "fallback_detector"):
            if optional in values:
                setattr(self, optional, values[optional])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 NCHW RGB 0..255 -> raw embedding, computed by ONNX Runtime."""
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, template={self.template!r}, dim={self.embedding_dim}"


def _parse_meta_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return raw
