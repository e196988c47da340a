"""ONNX graphs -> :class:`~slimface.models.graph.GraphNet`.

Read with the ``onnx`` package (no runtime). ``onnx2torch`` would do this job, but it imports
torchvision unconditionally, and PyPI's torchvision does not import beside the CPU torch
slimface pins; the operator set of face-embedding networks is small, so it is mapped here.
Refused with a message naming the file: a file ``onnx`` cannot parse, an operator outside
:data:`OPS`, dynamic shape arithmetic (Shape/Gather chains), a non-image input, or an output
that is not ``(N, D)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from slimface.errors import ModelFileError
from slimface.models.importers._builder import GraphBuilder, unsupported


class _Converter:
    def __init__(self, path: Path, model: Any):
        from onnx import numpy_helper

        self.path = path
        self.graph = model.graph
        self.b = GraphBuilder()
        self.values: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.ranks = _ranks(model)
        self.handlers: dict[str, Callable[[Any], None]] = {
            "Conv": self._conv, "Gemm": self._gemm, "MatMul": self._matmul,
            "BatchNormalization": self._batchnorm, "PRelu": self._prelu,
            "Add": self._binary, "Sub": self._binary, "Mul": self._binary, "Div": self._binary,
            "Max": self._binary, "Min": self._binary,
            "Relu": self._unary, "Sigmoid": self._unary, "Tanh": self._unary,
            "Abs": self._unary, "Neg": self._unary, "Sqrt": self._unary, "Exp": self._unary,
            "Identity": self._unary, "Dropout": self._unary, "HardSwish": self._unary,
            "LeakyRelu": self._leaky_relu, "Clip": self._clip, "Flatten": self._flatten,
            "Reshape": self._reshape, "GlobalAveragePool": self._global_avgpool,
            "AveragePool": self._pool, "MaxPool": self._pool, "Concat": self._concat,
            "Pad": self._pad, "ReduceMean": self._reduce_mean, "Transpose": self._transpose,
            "Constant": self._constant,
        }

    # -------------------------------------------------------------- helpers
    @staticmethod
    def attrs(node: Any) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name: str) -> np.ndarray | None:
        return self.values.get(name)

    def operand(self, name: str) -> str:
        value = self.const(name)
        return name if value is None else self.b.const(value.astype(np.float32))

    def need_const(self, node: Any, index: int, what: str) -> np.ndarray:
        value = self.const(node.input[index]) if len(node.input) > index else None
        if value is None:
            raise ModelFileError(f"{self.path}: {node.op_type} node {node.name!r} needs a "
                                 f"constant {what} (dynamic shapes are not supported)")
        return value

    # -------------------------------------------------------------- operators
    def _conv(self, node: Any) -> None:
        a = self.attrs(node)
        weight = self.need_const(node, 1, "weight")
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            raise ModelFileError(f"{self.path}: Conv auto_pad={a['auto_pad']!r} is not "
                                 "supported (export with explicit pads)")
        kh, kw = weight.shape[2:]
        pads = list(a.get("pads", [0, 0, 0, 0]))                  # [top, left, bottom, right]
        groups = int(a.get("group", 1))
        attrs = {"in_channels": int(weight.shape[1] * groups), "out_channels": int(weight.shape[0]),
                 "kernel": [int(kh), int(kw)], "stride": list(a.get("strides", [1, 1])),
                 "dilation": list(a.get("dilations", [1, 1])), "groups": groups,
                 "bias": bias is not None, "pad": [pads[0], pads[2], pads[1], pads[3]]}
        weights = {"weight": weight} | ({"bias": bias} if bias is not None else {})
        self.b.module_node("conv", [node.input[0]], node.output[0], attrs, weights)

    def _linear(self, node: Any, weight: np.ndarray, bias: np.ndarray | None) -> None:
        attrs = {"in_features": int(weight.shape[1]), "out_features": int(weight.shape[0]),
                 "bias": bias is not None}
        weights = {"weight": weight} | ({"bias": bias} if bias is not None else {})
        self.b.module_node("linear", [node.input[0]], node.output[0], attrs, weights)

    def _gemm(self, node: Any) -> None:
        a = self.attrs(node)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise ModelFileError(f"{self.path}: Gemm node {node.name!r} with transA/alpha/beta "
                                 "is not supported")
        weight = self.need_const(node, 1, "weight")
        weight = weight if a.get("transB", 0) else weight.T
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        self._linear(node, weight, None if bias is None else bias.reshape(-1))

    def _matmul(self, node: Any) -> None:
        weight = self.need_const(node, 1, "weight")
        if weight.ndim != 2:
            raise ModelFileError(f"{self.path}: MatMul node {node.name!r} with a "
                                 f"{weight.ndim}-D weight is not supported")
        self._linear(node, weight.T, None)

    def _batchnorm(self, node: Any) -> None:
        scale, shift, mean, var = (self.need_const(node, i, "parameter") for i in range(1, 5))
        eps = float(self.attrs(node).get("epsilon", 1e-5))
        rank = self.ranks.get(node.input[0], 4)
        self.b.module_node("batchnorm", [node.input[0]], node.output[0],
                           {"channels": int(scale.size), "eps": eps, "rank": 4 if rank == 4 else 2},
                           {"weight": scale, "bias": shift, "running_mean": mean,
                            "running_var": var})
        self.b.state[f"layers.{self.b.nodes[-1]['module']}.num_batches_tracked"] = np.zeros(())

    def _prelu(self, node: Any) -> None:
        slope = self.need_const(node, 1, "slope").reshape(-1)
        self.b.module_node("prelu", [node.input[0]], node.output[0],
                           {"channels": int(slope.size)}, {"weight": slope})

    def _binary(self, node: Any) -> None:
        op = {"Max": "max", "Min": "min"}.get(node.op_type, node.op_type.lower())
        self.b.node(op, [self.operand(i) for i in node.input], node.output[0])

    def _unary(self, node: Any) -> None:
        op = {"Dropout": "identity", "HardSwish": "hardswish"}.get(node.op_type,
                                                                    node.op_type.lower())
        self.b.node(op, [node.input[0]], node.output[0])

    def _leaky_relu(self, node: Any) -> None:
        self.b.node("leaky_relu", [node.input[0]], node.output[0],
                    {"alpha": float(self.attrs(node).get("alpha", 0.01))})

    def _clip(self, node: Any) -> None:
        a = self.attrs(node)
        lo = a.get("min")
        hi = a.get("max")
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.need_const(node, 1, "min"))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.need_const(node, 2, "max"))
        self.b.node("clip", [node.input[0]], node.output[0], {"min": lo, "max": hi})

    def _flatten(self, node: Any) -> None:
        self.b.node("flatten", [node.input[0]], node.output[0],
                    {"axis": int(self.attrs(node).get("axis", 1))})

    def _reshape(self, node: Any) -> None:
        shape = [int(d) for d in self.need_const(node, 1, "shape").reshape(-1)]
        keep = shape[0] != -1
        self.b.node("reshape", [node.input[0]], node.output[0],
                    {"shape": shape if keep else shape, "keep_batch": keep, "nhwc": False})

    def _global_avgpool(self, node: Any) -> None:
        self.b.node("global_avgpool", [node.input[0]], node.output[0])

    def _pool(self, node: Any) -> None:
        a = self.attrs(node)
        pads = list(a.get("pads", [0, 0, 0, 0]))
        self.b.node("avgpool" if node.op_type == "AveragePool" else "maxpool", [node.input[0]],
                    node.output[0], {"kernel": list(a["kernel_shape"]),
                                     "stride": list(a.get("strides", a["kernel_shape"])),
                                     "pad": [pads[0], pads[2], pads[1], pads[3]],
                                     "count_include_pad": bool(a.get("count_include_pad", 0))})

    def _concat(self, node: Any) -> None:
        self.b.node("concat", [self.operand(i) for i in node.input], node.output[0],
                    {"dim": int(self.attrs(node)["axis"])})

    def _pad(self, node: Any) -> None:
        a = self.attrs(node)
        mode = a.get("mode", b"constant")
        if mode not in (b"constant", "constant"):
            raise ModelFileError(f"{self.path}: Pad mode {mode!r} is not supported")
        pads = [int(p) for p in (self.need_const(node, 1, "pads").reshape(-1)
                                 if len(node.input) > 1 else a["pads"])]
        rank = len(pads) // 2
        order = [v for d in reversed(range(rank)) for v in (pads[d], pads[d + rank])]
        value = float(self.const(node.input[2]).reshape(-1)[0]) \
            if len(node.input) > 2 and node.input[2] else 0.0
        self.b.node("pad", [node.input[0]], node.output[0], {"pad": order, "value": value})

    def _reduce_mean(self, node: Any) -> None:
        a = self.attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = self.need_const(node, 1, "axes").reshape(-1).tolist()
        self.b.node("mean", [node.input[0]], node.output[0],
                    {"dims": [int(x) for x in axes], "keepdim": bool(a.get("keepdims", 1))})

    def _transpose(self, node: Any) -> None:
        self.b.node("transpose", [node.input[0]], node.output[0],
                    {"perm": [int(p) for p in self.attrs(node)["perm"]]})

    def _constant(self, node: Any) -> None:
        from onnx import numpy_helper

        a = node.attribute[0]
        self.values[node.output[0]] = numpy_helper.to_array(a.t) if a.name == "value" \
            else np.asarray(self.attrs(node)[a.name])

    def run(self) -> None:
        missing = [n.op_type for n in self.graph.node if n.op_type not in self.handlers]
        if missing:
            raise unsupported(self.path, missing, "ONNX")
        for node in self.graph.node:
            self.handlers[node.op_type](node)


def _ranks(model: Any) -> dict[str, int]:
    """Tensor ranks from ONNX shape inference (BatchNorm needs 2-D vs 4-D)."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is a convenience here
        return {}
    ranks = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    return ranks


def _dims(value_info: Any) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def read_onnx(path: Path) -> tuple[GraphBuilder, dict[str, Any]]:
    """Parse ``path`` into a graph builder plus the file's contract (see ``read_tflite``)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ModelFileError(f"{path}: not a readable ONNX model ({type(exc).__name__}: "
                             f"{exc})") from None
    g = model.graph
    initializers = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelFileError(f"{path}: expected one image input, found {len(inputs)}")
    in_dims, out_dims = _dims(inputs[0]), _dims(g.output[0])
    if len(in_dims) != 4 or in_dims[1] != 3:
        raise ModelFileError(f"{path}: expected an NCHW RGB image input (N, 3, H, W), found "
                             f"shape {in_dims}")
    if len(out_dims) != 2:
        raise ModelFileError(f"{path}: not a face-embedding network: its output has shape "
                             f"{out_dims}, expected (N, D)")
    conv = _Converter(path, model)
    conv.run()
    meta = {p.key: p.value for p in model.metadata_props}
    info = {"input": inputs[0].name, "output": g.output[0].name,
            "input_size": [int(in_dims[2]) if isinstance(in_dims[2], int) else 112,
                           int(in_dims[3]) if isinstance(in_dims[3], int) else 112],
            "embedding_dim": int(out_dims[1]) if isinstance(out_dims[1], int) else 0,
            "layout": "NCHW", "format": "onnx", "metadata": meta}
    return conv.b, info
