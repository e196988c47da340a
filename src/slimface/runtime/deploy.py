"""Turning a ``.slim`` file back into a runnable model, whatever compressed each layer.

File layout (metadata JSON, see ``slimfile``)::

    {"architecture": {"backbone": "face_resnet_c", "kwargs": {...}},
     "template": "sphereface112x96", "embedding_dim": 1024, "threshold": {...},
     "layers": {"<module path>": {"kind": "binary" | "kbit" | "pq" | ..., ...}}}

Tensors named ``float/<state-dict key>`` are the float parameters and buffers of every
module that is not listed in ``layers``; tensors named ``<module path>/<name>`` belong to the
compressed layer at that path. Each compression scheme registers an encoder and a decoder
for its ``kind`` with :data:`LAYER_CODECS`, so adding a scheme never touches this file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from slimface._registry import Registry
from slimface.errors import ModelFileError


@dataclass(frozen=True)
class LayerCodec:
    """How one compression scheme stores a layer and rebuilds an inference module from it.

    ``encode(module) -> (tensors, layer_meta)`` and ``decode(tensors, layer_meta) -> module``;
    ``matches(module)`` tells :func:`export_state` which modules this codec owns.
    """

    kind: str
    matches: Callable[[nn.Module], bool]
    encode: Callable[[nn.Module], tuple[dict[str, np.ndarray], dict[str, Any]]]
    decode: Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], nn.Module]


LAYER_CODECS: Registry[LayerCodec] = Registry("layer codec")

def _import_codec_modules() -> None:
    """Load the modules that register codecs, so that saving or loading a file never depends
    on the caller having imported the scheme's module (they import this one: no top-level
    import here)."""
    from slimface.runtime import binary, pq  # noqa: F401


def register_codec(codec: LayerCodec) -> LayerCodec:
    LAYER_CODECS.register(lambda: codec, name=codec.kind)
    return codec


def _codec(kind: str) -> LayerCodec:
    _import_codec_modules()
    return LAYER_CODECS.create(kind)


def export_state(model: nn.Module) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split ``model`` into compressed layers (by registered codecs) and float leftovers."""
    _import_codec_modules()
    codecs = [LAYER_CODECS.create(k) for k in LAYER_CODECS.names()]
    tensors: dict[str, np.ndarray] = {}
    layers: dict[str, Any] = {}
    owned: list[str] = []
    for path, module in model.named_modules():
        if any(path == o or path.startswith(o + ".") for o in owned):
            continue
        codec = next((c for c in codecs if c.matches(module)), None)
        if codec is None or path == "":
            continue
        layer_tensors, layer_meta = codec.encode(module)
        layers[path] = {"kind": codec.kind, **layer_meta}
        tensors.update({f"{path}/{k}": v for k, v in layer_tensors.items()})
        owned.append(path)
    for key, value in model.state_dict().items():
        if not any(key.startswith(o + ".") for o in owned):
            tensors[f"float/{key}"] = value.detach().cpu().numpy()
    return tensors, layers


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


def build_from_slim(path: str, tensors: Mapping[str, np.ndarray],
                    meta: Mapping[str, Any], plain_pq: bool = True) -> nn.Module:
    """Rebuild the architecture, swap in decoded layers, load the float state, and make it
    fast for inference: binary convs feeding binary convs pass sign words, and (with
    ``plain_pq``) PQ layers that run their reconstructed float kernel become plain torch
    layers (:func:`slimface.runtime.pq.plain_layers`), and so do lookup-mode FC layers
    whose float product measures faster here (:func:`slimface.runtime.pq.faster_fc_layers`)."""
    from slimface.models import create_backbone

    arch = meta.get("architecture")
    if not isinstance(arch, dict) or "backbone" not in arch:
        raise ModelFileError(f"{path}: slimface file has no architecture entry")
    model = create_backbone(arch["backbone"], **arch.get("kwargs", {}))
    for layer_path, layer_meta in meta.get("layers", {}).items():
        prefix = f"{layer_path}/"
        layer_tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            _set_submodule(model, layer_path, _codec(layer_meta["kind"]).decode(layer_tensors,
                                                                                layer_meta))
        except (KeyError, AttributeError, ValueError) as exc:
            raise ModelFileError(f"{path}: cannot rebuild layer {layer_path!r} ({exc})") from None
    state = {k[len("float/"):]: torch.from_numpy(np.array(v)) for k, v in tensors.items()
             if k.startswith("float/")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    owned = tuple(f"{p}." for p in meta.get("layers", {}))
    missing = [k for k in missing if not k.startswith(owned)]
    if missing or unexpected:
        raise ModelFileError(f"{path}: weights do not fit architecture {arch['backbone']!r} "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key in ("template", "embedding_dim", "input_size", "threshold"):
        if key in meta:
            setattr(model, key, tuple(meta[key]) if key == "input_size" else meta[key])
    from slimface.runtime.binary import fuse_sign_outputs
    from slimface.runtime.pq import faster_fc_layers, plain_layers

    fuse_sign_outputs(model.eval())  # binary convs feeding binary convs pass sign words
    if plain_pq:
        plain_layers(model)
        model.pq_fc_paths = faster_fc_layers(model)  # shown by `slimface info --paths`
    return model
