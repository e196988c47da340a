"""Make a quantized ONNX graph smaller without changing what ONNX Runtime computes.

ONNX Runtime's static quantizer writes a QDQ graph that is larger than its int8 weights need:
an all-zero zero-point tensor beside every symmetric weight and every int32 bias, a float
scale per output channel for each bias that is only the product of two scales already in the
file, long tensor names and shape annotations. On the imported MobileFaceNet these are 0.17 MB of a
1.6 MB file. :func:`compact_qdq` removes them and leaves every output bit-identical:

* zero points that are all zero are dropped (ONNX's default zero point is 0 of the input's
  type, so the dequantized values are unchanged);
* a conv's bias scale equal, bit for bit, to ``input scale x weight scale`` becomes a ``Mul`` of
  those two initializers, which ONNX Runtime's constant folding evaluates at load, before
  its QDQ fusion (the fused integer kernels are the same);
* every tensor gets a short name and the shape annotations are dropped (ONNX Runtime infers
  them again).

:func:`int4_weights` goes further and stores chosen layers' weights in 4 bits (``int4``,
ONNX opset 21): ONNX Runtime has no 4-bit convolution, so those layers dequantize their
weights on every call and run in float; for the fully connected layers of an embedding head
(once per face, a few hundred thousand weights) that is a few per cent of a MobileFaceNet's
time. It changes the numbers, so callers measure its accuracy.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

INT4_MIN_OPSET = 21
INT4_MIN_IR = 10


def compact_qdq(proto: Any) -> Any:
    """Shrink ``proto`` (an ``onnx.ModelProto`` from ORT's QDQ quantizer) in place."""
    _drop_zero_zero_points(proto.graph)
    _bias_scales_as_products(proto.graph)
    _short_names(proto.graph)
    del proto.graph.value_info[:]
    return proto


def _initializers(graph: Any) -> dict[str, Any]:
    return {t.name: t for t in graph.initializer}


def _array(tensor: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


def _used_names(graph: Any) -> set[str]:
    return {name for node in graph.node for name in node.input}


def _remove_unused_initializers(graph: Any) -> None:
    used = _used_names(graph) | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _drop_zero_zero_points(graph: Any) -> None:
    """DequantizeLinear of a constant whose zero point is all zeros: omit the zero point."""
    inits = _initializers(graph)
    for node in graph.node:
        if (node.op_type == "DequantizeLinear" and len(node.input) == 3
                and node.input[0] in inits and node.input[2] in inits
                and not _array(inits[node.input[2]]).any()):
            del node.input[2]
    _remove_unused_initializers(graph)


def _producer_of(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def _bias_scales_as_products(graph: Any) -> None:
    """Replace each conv's stored bias scale by ``Mul(input scale, weight scale)`` where the
    product reproduces it exactly (ORT's quantizer computes it the same way in float32)."""
    from onnx import helper

    inits, producer = _initializers(graph), _producer_of(graph)
    new_nodes, rewritten = [], set()
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        dqs = [producer.get(name) for name in node.input[:3]]
        if any(dq is None or dq.op_type != "DequantizeLinear" for dq in dqs) \
                or id(dqs[2]) in rewritten:
            continue
        scales = [dq.input[1] for dq in dqs]
        if any(name not in inits for name in scales):
            continue
        s_in, s_w, s_b = (_array(inits[name]) for name in scales)
        product = (s_in.astype(np.float32) * s_w.astype(np.float32)).astype(np.float32)
        if product.shape != s_b.shape or not np.array_equal(product.view(np.uint32),
                                                            s_b.view(np.uint32)):
            continue
        out = scales[2] + "_product"
        new_nodes.append(helper.make_node("Mul", [scales[0], scales[1]], [out]))
        dqs[2].input[1] = out
        rewritten.add(id(dqs[2]))
    graph.node.extend(new_nodes)
    _topological_sort(graph)
    _remove_unused_initializers(graph)


def _topological_sort(graph: Any) -> None:
    """Order nodes so each follows the producers of its inputs (ONNX requires it)."""
    available = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("ONNX graph has a cycle or an input no node produces")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _short_names(graph: Any) -> None:
    """Rename every internal tensor to a base-36 counter and clear node names."""
    keep = {i.name for i in graph.input} | {o.name for o in graph.output}
    names: dict[str, str] = {}  # counters skip the kept names, so no new name collides

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            counter = len(names)
            while (candidate := np.base_repr(counter, 36).lower()) in keep:
                counter += 1
            names[name] = candidate
        return names[name]

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.name = ""
        for i, name in enumerate(node.input):
            node.input[i] = short(name)
        for i, name in enumerate(node.output):
            node.output[i] = short(name)


def weighted_layers(proto: Any) -> list[tuple[Any, str]]:
    """(node, weight initializer name) of every Conv/Gemm/MatMul with a constant weight, in
    graph order; in a QDQ graph the name is the quantized weight behind its DequantizeLinear."""
    inits, producer = _initializers(proto.graph), _producer_of(proto.graph)
    layers = []
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        source = producer.get(node.input[1])
        name = source.input[0] if source is not None and source.op_type == "DequantizeLinear" \
            else node.input[1]
        if name in inits:
            layers.append((node, name))
    return layers


def head_weight_names(float_proto: Any, quantized_proto: Any) -> list[str]:
    """The quantized graph's weights of the embedding head: fully connected layers, i.e.
    MatMul/Gemm nodes and convolutions whose input is 1x1 in space (after global pooling).

    Shapes come from ``float_proto`` (the graph before quantization); a float layer finds its
    quantized weight by node name (ONNX Runtime's quantizer keeps them), or by position where
    the nodes have no unique names.
    """
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(float_proto)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    float_layers, quant_layers = weighted_layers(float_proto), weighted_layers(quantized_proto)
    if len(float_layers) != len(quant_layers):
        raise ValueError(f"the quantized graph has {len(quant_layers)} weighted layers, the "
                         f"float graph {len(float_layers)}")
    by_name = {node.name: node for node, _ in float_layers if node.name}
    if len(by_name) == len(float_layers) and all(n.name in by_name for n, _ in quant_layers):
        pairs = [(by_name[node.name], name) for node, name in quant_layers]  # the quantizer
    else:                                                                  # keeps node names
        pairs = [(node, name) for (node, _), (_, name) in zip(float_layers, quant_layers)]
    head = []
    for node, name in pairs:
        shape = dims.get(node.input[0], [])
        if node.op_type in ("Gemm", "MatMul") or (len(shape) == 4 and shape[2:] == [1, 1]):
            head.append(name)
    return head


def int4_weights(proto: Any, weight_names: Iterable[str]) -> Any:
    """Re-quantize the named int8 weights (QDQ, per output channel or per tensor) to int4,
    in place.

    Each channel's scale becomes max|w| / 7 of the dequantized int8 weights, and an int32
    bias quantized against the old weight scale is re-quantized against the new one (so a
    runtime that fuses 4-bit weights reads it right). The file's opset rises to 21, the first
    with int4 tensors. Names that are not int8 weights behind a DequantizeLinear, or no
    names at all, are refused: the file would say 4 bits and hold none.
    """
    wanted = set(weight_names)
    if not wanted:
        raise ValueError("no layer to store in 4 bits (no fully connected head found)")
    inits = _initializers(proto.graph)
    quantized = {n.input[0] for n in proto.graph.node
                 if n.op_type == "DequantizeLinear" and n.input[0] in inits
                 and _array(inits[n.input[0]]).dtype == np.int8}
    if wanted - quantized:
        raise ValueError(f"not int8 weights behind a DequantizeLinear: {sorted(wanted - quantized)}")
    _raise_opset(proto, INT4_MIN_OPSET)
    inits, producer = _initializers(proto.graph), _producer_of(proto.graph)
    layer_of_weight = {n.input[1]: n for n in proto.graph.node if len(n.input) > 1}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in wanted:
            _requantize_int4(node, inits)
            if node.output[0] in layer_of_weight:
                _requantize_bias(layer_of_weight[node.output[0]], inits, producer)
    _remove_unused_initializers(proto.graph)
    return proto


def _requantize_int4(dq: Any, inits: dict[str, Any]) -> None:
    from onnx import TensorProto, helper, numpy_helper

    q8 = _array(inits[dq.input[0]]).astype(np.float32)
    scale8 = _array(inits[dq.input[1]]).astype(np.float32)
    has_axis = any(a.name == "axis" for a in dq.attribute)
    per_axis = scale8.size > 1 or (scale8.ndim == 1 and has_axis)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % q8.ndim
    shape = [1] * q8.ndim
    shape[axis] = -1
    if per_axis:
        w = q8 * scale8.reshape(shape)
        peak = np.abs(w).max(axis=tuple(d for d in range(w.ndim) if d != axis))
    else:
        w = q8 * scale8.reshape(())
        peak = np.abs(w).max().reshape(scale8.shape)
    scale4 = np.where(peak > 0, peak / 7.0, 1.0).astype(np.float32)
    q4 = np.clip(np.rint(w / (scale4.reshape(shape) if per_axis else scale4.reshape(()))), -8, 7)
    inits[dq.input[0]].CopyFrom(helper.make_tensor(dq.input[0], TensorProto.INT4, q4.shape,
                                                   pack_int4(q4.astype(np.int8)), raw=True))
    inits[dq.input[1]].CopyFrom(numpy_helper.from_array(scale4, dq.input[1]))
    if len(dq.input) == 3:
        del dq.input[2]


def _requantize_bias(layer: Any, inits: dict[str, Any], producer: dict[str, Any]) -> None:
    """The layer's int32 bias re-quantized to ``input scale x new weight scale``."""
    from onnx import numpy_helper

    if len(layer.input) < 3:
        return
    act, bias = producer.get(layer.input[0]), producer.get(layer.input[2])
    if act is None or bias is None or act.op_type != "DequantizeLinear" \
            or bias.op_type != "DequantizeLinear" \
            or not all(n in inits for n in (act.input[1], bias.input[0], bias.input[1])):
        return
    values = _array(inits[bias.input[0]])
    if values.dtype != np.int32:
        return
    real = values.astype(np.float64) * _array(inits[bias.input[1]]).astype(np.float64)
    weight = producer.get(layer.input[1])
    new_scale = (_array(inits[act.input[1]]).astype(np.float32)
                 * _array(inits[weight.input[1]]).astype(np.float32)).astype(np.float32)
    new_scale = np.broadcast_to(new_scale, values.shape).astype(np.float32)
    requantized = np.clip(np.rint(real / new_scale), -2**31, 2**31 - 1).astype(np.int32)
    inits[bias.input[0]].CopyFrom(numpy_helper.from_array(requantized, bias.input[0]))
    inits[bias.input[1]].CopyFrom(numpy_helper.from_array(new_scale, bias.input[1]))


def _raise_opset(proto: Any, version: int) -> None:
    """Convert ``proto`` in place to at least ``version`` of the default operator set (ONNX's
    version converter rewrites operators whose signature changed, e.g. ReduceMean's axes)."""
    from onnx import version_converter

    current = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                  default=version)
    if current >= version:
        return
    converted = version_converter.convert_version(proto, version)
    converted.ir_version = max(converted.ir_version, INT4_MIN_IR)
    proto.CopyFrom(converted)


def pack_int4(values: np.ndarray) -> bytes:
    """ONNX's int4 layout: two's-complement nibbles, the first element in the low nibble."""
    flat = (values.ravel().astype(np.int16) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).tobytes()


def float16_weights(proto: Any) -> Any:
    """Store the float32 weights that convolutions read directly (layers left in float in an
    int8 graph) as float16, cast back to float32 at load; in place."""
    from onnx import TensorProto, helper, numpy_helper

    inits = _initializers(proto.graph)
    casts = []
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        tensor = inits.get(node.input[1])
        if tensor is None or tensor.data_type != TensorProto.FLOAT:
            continue
        name = node.input[1]
        tensor.CopyFrom(numpy_helper.from_array(_array(tensor).astype(np.float16),
                                                name + "_f16"))
        casts.append(helper.make_node("Cast", [name + "_f16"], [name], to=TensorProto.FLOAT))
    proto.graph.node.extend(casts)
    _topological_sort(proto.graph)
    return proto
