"""TFLite flatbuffers -> :class:`~slimface.models.graph.GraphNet`.

The file is read with the PyPI package ``tflite`` (the flatbuffer schema, no runtime). Only
float models are imported (float16 weights behind DEQUANTIZE are widened); a quantized
model, an operator outside :data:`OPS` or a graph that does not map an NHWC image to an
``(N, D)`` embedding is refused with a message naming the file. TFLite is NHWC: weights and
constants are transposed to NCHW here, axis attributes are mapped, and a reshape of a 4-D
tensor keeps TFLite's element order (see :mod:`slimface.models.graph`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from slimface.errors import ModelFileError
from slimface.models.importers._builder import GraphBuilder, unsupported

#: TFLite activation codes -> GraphNet activation names.
_ACT = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}
#: NHWC axis -> NCHW axis for 4-D tensors.
_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8,
           7: np.int16}


class _Reader:
    """Typed access to one subgraph's tensors, buffers and operator options."""

    def __init__(self, path: Path, buf: bytes):
        import tflite

        self.tflite = tflite
        self.path = path
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() < 1:
            raise ModelFileError(f"{path}: TFLite file without a subgraph")
        self.graph = self.model.Subgraphs(0)
        self.op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items()
                         if not k.startswith("_")}

    def op_name(self, op: Any) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == self.tflite.BuiltinOperator.CUSTOM:
            return f"CUSTOM:{(code.CustomCode() or b'?').decode(errors='replace')}"
        return self.op_names.get(builtin, f"BUILTIN_{builtin}")

    def shape(self, index: int) -> list[int]:
        t = self.graph.Tensors(index)
        return [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def name(self, index: int) -> str:
        return f"t{index}"

    def dtype_code(self, index: int) -> int:
        return self.graph.Tensors(index).Type()

    def is_quantized(self, index: int) -> bool:
        q = self.graph.Tensors(index).Quantization()
        return q is not None and q.ScaleLength() > 0 and self.dtype_code(index) in (3, 9, 7)

    def constant(self, index: int) -> np.ndarray | None:
        t = self.graph.Tensors(index)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data is None or len(data) == 0:
            return None
        dtype = _DTYPES.get(t.Type())
        if dtype is None:
            raise ModelFileError(f"{self.path}: tensor {t.Name().decode(errors='replace')!r} "
                                 f"has an unsupported type code {t.Type()}")
        return np.frombuffer(data.tobytes(), dtype=dtype).reshape(self.shape(index))

    def options(self, op: Any, cls_name: str) -> Any:
        table = op.BuiltinOptions()
        opts = getattr(self.tflite, cls_name)()
        if table is not None:
            opts.Init(table.Bytes, table.Pos)
        return opts


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (the extra pixel goes after, not before)."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class _Converter:
    """Walks the operators once, emitting GraphNet nodes through a GraphBuilder."""

    def __init__(self, reader: _Reader):
        self.r = reader
        self.b = GraphBuilder()
        self.const_values: dict[int, np.ndarray] = {}
        self.handlers: dict[str, Callable[[Any, list[int], int], None]] = {
            "CONV_2D": self._conv, "DEPTHWISE_CONV_2D": self._conv,
            "FULLY_CONNECTED": self._fully_connected, "ADD": self._binary, "SUB": self._binary,
            "MUL": self._binary, "DIV": self._binary, "MAXIMUM": self._binary,
            "MINIMUM": self._binary, "ABS": self._unary, "RELU": self._unary,
            "RELU6": self._unary, "LOGISTIC": self._unary, "TANH": self._unary,
            "HARD_SWISH": self._unary, "NEG": self._unary, "SQRT": self._unary,
            "EXP": self._unary, "PRELU": self._prelu, "LEAKY_RELU": self._leaky_relu,
            "PAD": self._pad, "PADV2": self._pad, "RESHAPE": self._reshape,
            "SQUEEZE": self._reshape, "MEAN": self._mean, "CONCATENATION": self._concat,
            "L2_NORMALIZATION": self._l2norm, "AVERAGE_POOL_2D": self._pool,
            "MAX_POOL_2D": self._pool, "DEQUANTIZE": self._dequantize,
        }

    # -------------------------------------------------------------- helpers
    def value(self, index: int) -> np.ndarray | None:
        if index in self.const_values:
            return self.const_values[index]
        return self.r.constant(index)

    def operand(self, index: int, like_rank: int) -> str:
        """A tensor's node-input name; constants become NCHW-broadcastable buffers."""
        value = self.value(index)
        if value is None:
            return self.r.name(index)
        array = value.astype(np.float32)
        if like_rank == 4 and array.ndim >= 1:
            array = array.reshape((1,) * (4 - array.ndim) + array.shape).transpose(0, 3, 1, 2)
        return self.b.const(array)

    # -------------------------------------------------------------- operators
    def _conv(self, op: Any, ins: list[int], out: int) -> None:
        depthwise = self.r.op_name(op) == "DEPTHWISE_CONV_2D"
        o = self.r.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
        weight = self.value(ins[1])
        bias = self.value(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        if weight is None:
            raise ModelFileError(f"{self.r.path}: convolution with non-constant weights")
        n, h, w, c = self.r.shape(ins[0])
        if depthwise:                                      # [1, kh, kw, C*m] -> [C*m, 1, kh, kw]
            weight = weight.transpose(3, 0, 1, 2)
            groups, out_ch = c, weight.shape[0]
        else:                                              # [O, kh, kw, I] -> [O, I, kh, kw]
            weight = weight.transpose(0, 3, 1, 2)
            groups, out_ch = 1, weight.shape[0]
        kh, kw = weight.shape[2:]
        stride = (o.StrideH(), o.StrideW())
        dilation = (o.DilationHFactor() or 1, o.DilationWFactor() or 1)
        pad = [0, 0, 0, 0]
        if o.Padding() == self.r.tflite.Padding.SAME:
            pad = [*_same_pad(h, kh, stride[0], dilation[0]), *_same_pad(w, kw, stride[1],
                                                                         dilation[1])]
        attrs = {"in_channels": c, "out_channels": int(out_ch), "kernel": [int(kh), int(kw)],
                 "stride": list(stride), "dilation": list(dilation), "groups": groups,
                 "bias": bias is not None, "pad": pad,
                 "activation": _ACT.get(o.FusedActivationFunction(), "?")}
        weights = {"weight": weight} | ({"bias": bias} if bias is not None else {})
        self.b.module_node("conv", [self.r.name(ins[0])], self.r.name(out), attrs, weights)

    def _fully_connected(self, op: Any, ins: list[int], out: int) -> None:
        o = self.r.options(op, "FullyConnectedOptions")
        weight = self.value(ins[1])
        if weight is None:
            raise ModelFileError(f"{self.r.path}: fully-connected layer with non-constant "
                                 "weights")
        bias = self.value(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        x = self.r.name(ins[0])
        if len(self.r.shape(ins[0])) != 2:                # flatten in TFLite's (NHWC) order
            flat = f"{x}/flat"
            self.b.node("reshape", [x], flat, {"shape": [0, weight.shape[1]], "nhwc": True})
            x = flat
        attrs = {"in_features": int(weight.shape[1]), "out_features": int(weight.shape[0]),
                 "bias": bias is not None, "activation": _ACT.get(o.FusedActivationFunction(),
                                                                  "?")}
        weights = {"weight": weight} | ({"bias": bias} if bias is not None else {})
        self.b.module_node("linear", [x], self.r.name(out), attrs, weights)

    def _binary(self, op: Any, ins: list[int], out: int) -> None:
        name = self.r.op_name(op)
        opts_cls = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions",
                    "DIV": "DivOptions"}.get(name)
        act = "none"
        if opts_cls is not None:
            act = _ACT.get(self.r.options(op, opts_cls).FusedActivationFunction(), "?")
        rank = len(self.r.shape(out))
        self.b.node({"MAXIMUM": "max", "MINIMUM": "min"}.get(name, name.lower()),
                    [self.operand(i, rank) for i in ins], self.r.name(out), {"activation": act})

    def _unary(self, op: Any, ins: list[int], out: int) -> None:
        name = self.r.op_name(op)
        op_name = {"LOGISTIC": "sigmoid", "HARD_SWISH": "hardswish"}.get(name, name.lower())
        self.b.node(op_name, [self.r.name(ins[0])], self.r.name(out))

    def _prelu(self, op: Any, ins: list[int], out: int) -> None:
        alpha = self.value(ins[1])
        if alpha is None:
            raise ModelFileError(f"{self.r.path}: PRELU with a non-constant slope")
        slope = alpha.reshape(-1) if alpha.size > 1 else alpha.reshape(1)
        self.b.module_node("prelu", [self.r.name(ins[0])], self.r.name(out),
                           {"channels": int(slope.size)}, {"weight": slope})

    def _leaky_relu(self, op: Any, ins: list[int], out: int) -> None:
        alpha = self.r.options(op, "LeakyReluOptions").Alpha()
        self.b.node("leaky_relu", [self.r.name(ins[0])], self.r.name(out), {"alpha": alpha})

    def _pad(self, op: Any, ins: list[int], out: int) -> None:
        pads = self.value(ins[1])
        if pads is None:
            raise ModelFileError(f"{self.r.path}: PAD with non-constant paddings")
        value = 0.0
        if len(ins) > 2 and ins[2] >= 0 and self.value(ins[2]) is not None:
            value = float(self.value(ins[2]).reshape(-1)[0])
        pads = pads.astype(int).tolist()
        if len(pads) == 4:                          # NHWC -> F.pad order for NCHW: W, H, C, N
            order = [pads[2], pads[1], pads[3], pads[0]]
        else:
            order = list(reversed(pads))
        flat = [int(v) for pair in order for v in pair]
        self.b.node("pad", [self.r.name(ins[0])], self.r.name(out), {"pad": flat,
                                                                      "value": value})

    def _reshape(self, op: Any, ins: list[int], out: int) -> None:
        shape = self.r.shape(out)
        in_rank = len(self.r.shape(ins[0]))
        self.b.node("reshape", [self.r.name(ins[0])], self.r.name(out),
                    {"shape": [0] + [int(d) for d in shape[1:]],
                     "nhwc": in_rank == 4 or len(shape) == 4})

    def _mean(self, op: Any, ins: list[int], out: int) -> None:
        axes = self.value(ins[1])
        if axes is None:
            raise ModelFileError(f"{self.r.path}: MEAN with non-constant axes")
        rank = len(self.r.shape(ins[0]))
        dims = [(_AXIS[int(a) % 4] if rank == 4 else int(a)) for a in axes.reshape(-1)]
        keep = bool(self.r.options(op, "ReducerOptions").KeepDims())
        if rank == 4 and not keep:                  # result leaves NCHW: keep TFLite's order
            mean = f"{self.r.name(out)}/keep"
            self.b.node("mean", [self.r.name(ins[0])], mean, {"dims": dims, "keepdim": True})
            self.b.node("reshape", [mean], self.r.name(out),
                        {"shape": [0] + self.r.shape(out)[1:], "nhwc": True})
            return
        self.b.node("mean", [self.r.name(ins[0])], self.r.name(out),
                    {"dims": dims, "keepdim": keep})

    def _concat(self, op: Any, ins: list[int], out: int) -> None:
        o = self.r.options(op, "ConcatenationOptions")
        rank = len(self.r.shape(out))
        axis = o.Axis() % rank
        self.b.node("concat", [self.operand(i, rank) for i in ins], self.r.name(out),
                    {"dim": _AXIS[axis] if rank == 4 else axis,
                     "activation": _ACT.get(o.FusedActivationFunction(), "?")})

    def _l2norm(self, op: Any, ins: list[int], out: int) -> None:
        self.b.node("l2norm", [self.r.name(ins[0])], self.r.name(out), {"eps": 1e-6})

    def _pool(self, op: Any, ins: list[int], out: int) -> None:
        o = self.r.options(op, "Pool2DOptions")
        _, h, w, _ = self.r.shape(ins[0])
        k, s = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
        pad = [0, 0, 0, 0]
        if o.Padding() == self.r.tflite.Padding.SAME:
            pad = [*_same_pad(h, k[0], s[0], 1), *_same_pad(w, k[1], s[1], 1)]
        op_name = "avgpool" if self.r.op_name(op) == "AVERAGE_POOL_2D" else "maxpool"
        self.b.node(op_name, [self.r.name(ins[0])], self.r.name(out),
                    {"kernel": list(k), "stride": list(s), "pad": pad,
                     "activation": _ACT.get(o.FusedActivationFunction(), "?")})

    def _dequantize(self, op: Any, ins: list[int], out: int) -> None:
        value = self.r.constant(ins[0])
        if value is None or self.r.is_quantized(ins[0]):
            raise ModelFileError(f"{self.r.path}: quantized model (DEQUANTIZE of an integer "
                                 "tensor); import the float model")
        self.const_values[out] = value.astype(np.float32)

    # -------------------------------------------------------------- driver
    def run(self) -> None:
        g = self.r.graph
        ops = [g.Operators(i) for i in range(g.OperatorsLength())]
        missing = [self.r.op_name(op) for op in ops if self.r.op_name(op) not in self.handlers]
        if missing:
            raise unsupported(self.r.path, missing, "TFLite")
        for op in ops:
            ins = [int(i) for i in op.InputsAsNumpy()]
            out = int(op.OutputsAsNumpy()[0])
            if any(self.r.is_quantized(i) for i in ins if i >= 0):
                raise ModelFileError(f"{self.r.path}: quantized model (integer tensors in "
                                     f"{self.r.op_name(op)}); import the float model")
            self.handlers[self.r.op_name(op)](op, ins, out)
        if any(n["attrs"].get("activation") == "?" for n in self.b.nodes):
            raise ModelFileError(f"{self.r.path}: unsupported fused activation function")


def read_tflite(path: Path) -> tuple[GraphBuilder, dict[str, Any]]:
    """Parse ``path``; returns the graph builder and what the importer needs to know
    (``input``/``output`` names, ``input_shape`` NCHW-free as in the file, ``output_shape``)."""
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelFileError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        reader = _Reader(path, buf)
        g = reader.graph
        if g.InputsLength() != 1 or g.OutputsLength() < 1:
            raise ModelFileError(f"{path}: expected one image input, found "
                                 f"{g.InputsLength()} inputs")
        inp, outp = int(g.Inputs(0)), int(g.Outputs(0))
        in_shape, out_shape = reader.shape(inp), reader.shape(outp)
        conv = _Converter(reader)
        conv.run()
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer raises anything
        raise ModelFileError(f"{path}: corrupt or unreadable TFLite file "
                             f"({type(exc).__name__}: {exc})") from None
    if len(in_shape) != 4 or in_shape[-1] != 3:
        raise ModelFileError(f"{path}: expected an NHWC RGB image input (N, H, W, 3), "
                             f"found shape {in_shape}")
    if len(out_shape) != 2:
        raise ModelFileError(f"{path}: not a face-embedding network: its output has shape "
                             f"{out_shape}, expected (N, D)")
    info = {"input": reader.name(inp), "output": reader.name(outp),
            "input_size": [in_shape[1], in_shape[2]], "embedding_dim": out_shape[1],
            "layout": "NHWC", "format": "tflite"}
    return conv.b, info
