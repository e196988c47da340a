"""Imported networks: a small operator graph run as a plain ``torch.nn.Module``.

A face model a user brings (TFLite, ONNX) is parsed by :mod:`slimface.models.importers` into
a JSON-serialisable graph (a list of nodes in execution order) plus weights. ``GraphNet``
runs that list. Convolutions, fully-connected layers, PReLU and batch norm are real
``nn.Conv2d`` / ``nn.Linear`` / ``nn.PReLU`` / ``nn.BatchNorm*`` modules, so everything that
walks a model's modules (product quantization, binary quantization, int8 export, training,
parameter counting) works on an imported network as on a native one. Every other operand
(elementwise constants) is a buffer.

Conventions: 4-D tensors are NCHW inside ``GraphNet``, whatever the source layout; an
importer of an NHWC format (TFLite) maps axes at import time, and ``reshape`` of a 4-D tensor
goes through the source layout (``attrs["nhwc"]``) so flattening orders match the source.
The input is float32 NCHW RGB 0..255 like every slimface backbone; the source's pixel
normalisation (``(x - mean) / std``, channel order) is applied first.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimface.models._registry import register_backbone

#: Node ops GraphNet runs, and the module class each parameterised op owns.
MODULE_OPS: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "conv": lambda a: nn.Conv2d(a["in_channels"], a["out_channels"], tuple(a["kernel"]),
                                stride=tuple(a["stride"]), dilation=tuple(a["dilation"]),
                                groups=a["groups"], bias=a["bias"]),
    "linear": lambda a: nn.Linear(a["in_features"], a["out_features"], bias=a["bias"]),
    "prelu": lambda a: nn.PReLU(a["channels"]),
    "batchnorm": lambda a: (nn.BatchNorm2d if a.get("rank", 4) == 4 else nn.BatchNorm1d)(
        a["channels"], eps=a["eps"]),
}

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda x: x, "relu": F.relu, "relu6": lambda x: F.relu6(x),
    "relu_n1_to_1": lambda x: torch.clamp(x, -1.0, 1.0), "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}
_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
           "max": torch.maximum, "min": torch.minimum}
_UNARY = {"abs": torch.abs, "relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid,
          "tanh": torch.tanh, "identity": lambda x: x, "neg": torch.neg, "sqrt": torch.sqrt,
          "exp": torch.exp}
SUPPORTED_OPS: frozenset[str] = frozenset(
    set(MODULE_OPS) | set(_BINARY) | set(_UNARY)
    | {"pad", "reshape", "flatten", "mean", "concat", "l2norm", "avgpool", "maxpool",
       "global_avgpool", "clip", "transpose", "leaky_relu", "hardswish"})


def _to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def _from_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


class GraphNet(nn.Module):
    """Run an imported graph: ``forward`` takes NCHW RGB 0..255, returns the raw embedding.

    Args:
        graph: ``{"input": name, "output": name, "nodes": [{"op", "inputs", "output",
            "attrs"}]}``; an input named ``"const:<key>"`` is the buffer ``consts.<key>``.
        consts: shapes of the constant buffers (``{key: shape}``); values come from the
            state dict.
        pixel_mean, pixel_std: the source's input normalisation, per channel or scalar.
        bgr: the source expects BGR channel order.
        template, input_size, embedding_dim: the backbone contract.
        source: provenance kept with the model (file name, sha256, format, layout).
    """

    def __init__(self, graph: Mapping[str, Any], consts: Mapping[str, Sequence[int]],
                 pixel_mean: Sequence[float] = (0.0,), pixel_std: Sequence[float] = (1.0,),
                 bgr: bool = False, template: str = "arcface112",
                 input_size: Sequence[int] = (112, 112), embedding_dim: int = 0,
                 source: Mapping[str, Any] | None = None):
        super().__init__()
        self.graph = {"input": graph["input"], "output": graph["output"],
                      "nodes": [dict(n) for n in graph["nodes"]]}
        unknown = sorted({n["op"] for n in self.graph["nodes"]} - SUPPORTED_OPS)
        if unknown:
            raise ValueError(f"graph uses operators GraphNet cannot run: {', '.join(unknown)}")
        self.layers = nn.ModuleDict({
            n["module"]: MODULE_OPS[n["op"]](n["attrs"]) for n in self.graph["nodes"]
            if n["op"] in MODULE_OPS})
        self.consts = nn.Module()
        for key, shape in consts.items():
            self.consts.register_buffer(key, torch.zeros(tuple(shape)))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32)
                             .reshape(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32)
                             .reshape(1, -1, 1, 1))
        self.bgr = bool(bgr)
        self.template = template
        self.input_size = tuple(input_size)
        self.embedding_dim = int(embedding_dim)
        self.source = dict(source or {})
        self._consts_spec = {k: list(v) for k, v in consts.items()}
        self.backbone_name = "graph_net"

    @property
    def backbone_kwargs(self) -> dict[str, Any]:
        """Registry kwargs that rebuild this network (what compress tools record)."""
        return self.architecture_kwargs()

    def architecture_kwargs(self) -> dict[str, Any]:
        """What ``create_backbone("graph_net", **kwargs)`` needs to rebuild this network."""
        return {"graph": self.graph, "consts": self._consts_spec,
                "pixel_mean": self.pixel_mean.flatten().tolist(),
                "pixel_std": self.pixel_std.flatten().tolist(), "bgr": self.bgr,
                "template": self.template, "input_size": list(self.input_size),
                "embedding_dim": self.embedding_dim, "source": self.source}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        values: dict[str, torch.Tensor] = {self.graph["input"]: (x - self.pixel_mean)
                                           / self.pixel_std}
        for node in self.graph["nodes"]:
            args = [self._value(values, name) for name in node["inputs"]]
            values[node["output"]] = self._run(node, args)
        return values[self.graph["output"]]

    def _value(self, values: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name.startswith("const:"):
            return getattr(self.consts, name[len("const:"):])
        return values[name]

    def _run(self, node: Mapping[str, Any], args: list[torch.Tensor]) -> torch.Tensor:
        op, a = node["op"], node["attrs"]
        if op in MODULE_OPS:
            x = args[0]
            if op == "conv" and any(a.get("pad", ())):
                t, b, l, r = a["pad"]
                x = F.pad(x, (l, r, t, b))
            return _ACTIVATIONS[a.get("activation", "none")](self.layers[node["module"]](x))
        if op in _BINARY:
            return _ACTIVATIONS[a.get("activation", "none")](_BINARY[op](args[0], args[1]))
        if op in _UNARY:
            return _UNARY[op](args[0])
        return getattr(self, f"_op_{op}")(a, *args)

    # ------------------------------------------------------------------ shape and layout ops
    @staticmethod
    def _op_pad(a: Mapping[str, Any], x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        return F.pad(x, tuple(a["pad"]), value=float(a.get("value", 0.0)))

    @staticmethod
    def _op_reshape(a: Mapping[str, Any], x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        nhwc = a.get("nhwc", False)
        src = _to_nhwc(x) if nhwc else x
        shape = [x.shape[0] if i == 0 and a.get("keep_batch", True) else d
                 for i, d in enumerate(a["shape"])]
        out = src.reshape(shape)
        return _from_nhwc(out) if nhwc else out

    @staticmethod
    def _op_flatten(a: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, int(a.get("axis", 1)))

    @staticmethod
    def _op_mean(a: Mapping[str, Any], x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(a["dims"]), keepdim=bool(a.get("keepdim", False)))

    @staticmethod
    def _op_global_avgpool(a: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)

    @staticmethod
    def _op_concat(a: Mapping[str, Any], *xs: torch.Tensor) -> torch.Tensor:
        return _ACTIVATIONS[a.get("activation", "none")](torch.cat(xs, dim=int(a["dim"])))

    @staticmethod
    def _op_l2norm(a: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1 if x.dim() == 4 else -1, eps=float(a.get("eps", 1e-12)))

    @staticmethod
    def _pool_input(a: Mapping[str, Any], x: torch.Tensor, value: float) -> torch.Tensor:
        t, b, l, r = a.get("pad", (0, 0, 0, 0))
        return F.pad(x, (l, r, t, b), value=value) if (t or b or l or r) else x

    def _op_avgpool(self, a: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(self._pool_input(a, x, 0.0), tuple(a["kernel"]), tuple(a["stride"]),
                         count_include_pad=bool(a.get("count_include_pad", False)))
        return _ACTIVATIONS[a.get("activation", "none")](y)

    def _op_maxpool(self, a: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(self._pool_input(a, x, float("-inf")), tuple(a["kernel"]),
                         tuple(a["stride"]))
        return _ACTIVATIONS[a.get("activation", "none")](y)

    @staticmethod
    def _op_clip(a: Mapping[str, Any], x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, a.get("min"), a.get("max"))

    @staticmethod
    def _op_transpose(a: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        return x.permute(*a["perm"])

    @staticmethod
    def _op_leaky_relu(a: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, float(a.get("alpha", 0.01)))

    @staticmethod
    def _op_hardswish(a: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x)

    def extra_repr(self) -> str:
        name = self.source.get("file", "?")
        return (f"source={name!r}, nodes={len(self.graph['nodes'])}, "
                f"template={self.template!r}, dim={self.embedding_dim}")


@register_backbone
def graph_net(**kwargs: Any) -> GraphNet:
    """An imported network (see :class:`GraphNet`); weights come from its ``.slim`` file."""
    kwargs.pop("pretrained", None)
    return GraphNet(**kwargs)
