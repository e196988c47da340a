"""Smaller int8 ONNX files: bit-identical compaction, float16 float layers, a 4-bit head."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from slimface.errors import ModelError
from slimface.runtime import export as ex
from slimface.runtime import onnx_compact as oc

onnx = pytest.importorskip("onnx")


class HeadNet(nn.Module):
    """Spatial convs (one depthwise), global pooling, then a 1x1-conv and a linear head."""

    template, input_size, embedding_dim = "arcface112", (16, 16), 8

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 32, 1)
        self.fc1 = nn.Conv2d(32, 32, 1)
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.pw(torch.relu(self.dw(torch.relu(self.stem(x / 255.0))))))
        x = self.fc1(x.mean(dim=(2, 3), keepdim=True))
        return self.fc2(torch.flatten(x, 1))


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def float_file(tmp_path_factory):
    torch.manual_seed(0)
    model = HeadNet().eval()
    return model, ex.export_onnx(model, tmp_path_factory.mktemp("head") / "head.onnx")


def _outputs(path) -> np.ndarray:
    return ex.run_onnx(ex.session(path, threads=1), _crops(6, seed=3))


def test_compaction_leaves_outputs_bit_identical_and_the_file_smaller(float_file, tmp_path,
                                                                       monkeypatch):
    _, path = float_file
    compact = ex.quantize_int8(path, tmp_path / "compact.onnx", _crops(16))
    monkeypatch.setattr(oc, "compact_qdq", lambda proto: proto)
    plain = ex.quantize_int8(path, tmp_path / "plain.onnx", _crops(16))
    np.testing.assert_array_equal(_outputs(compact), _outputs(plain))
    assert compact.stat().st_size < plain.stat().st_size
    graph = onnx.load(str(compact)).graph
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    assert not any(not a.any() and a.dtype in (np.int8, np.int32) for a in inits.values())
    assert max(len(name) for name in inits) <= 3 and not graph.value_info
    assert [n for n in graph.node if n.op_type == "Mul"]  # bias scales rebuilt at load


def test_head_weights_are_the_layers_after_global_pooling(float_file, tmp_path):
    _, path = float_file
    quantized = onnx.load(str(ex.quantize_int8(path, tmp_path / "q.onnx", _crops(8))))
    head = oc.head_weight_names(onnx.load(str(path)), quantized)
    layers = oc.weighted_layers(quantized)
    assert len(layers) == 5 and head == [name for _, name in layers[3:]]


def test_int4_head_stores_four_bit_weights_and_stays_close(float_file, tmp_path):
    model, path = float_file
    out = ex.quantize_int8(path, tmp_path / "int4.onnx", _crops(16),
                           ex.Int8Options(int4_head=True))
    proto = onnx.load(str(out))
    four_bit = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT4]
    assert len(four_bit) == 2
    for tensor in four_bit:
        values = onnx.numpy_helper.to_array(tensor).astype(np.int8)
        assert values.min() >= -8 and values.max() <= 7 and len(np.unique(values)) > 4
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 21
    ref = ex.torch_embeddings(model, _crops(6, seed=3))
    assert ex.parity(ref, _outputs(out))["mean_cosine"] > 0.95


def test_int4_rebias_keeps_the_head_bias_at_the_new_scale(float_file, tmp_path):
    """The 1x1-conv head's int32 bias is stored against input scale x the 4-bit scale."""
    _, path = float_file
    out = ex.quantize_int8(path, tmp_path / "int4.onnx", _crops(16),
                           ex.Int8Options(int4_head=True))
    graph = onnx.load(str(out)).graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    conv = next(n for n in graph.node if n.op_type == "Conv"
                and inits[producer[n.input[1]].input[0]].data_type == onnx.TensorProto.INT4)
    scale = lambda name: onnx.numpy_helper.to_array(inits[name])  # noqa: E731
    mul = producer[producer[conv.input[2]].input[1]]  # compaction rebuilt it as a product
    assert mul.op_type == "Mul"
    np.testing.assert_array_equal(
        scale(mul.input[0]) * scale(mul.input[1]),
        scale(producer[conv.input[0]].input[1]) * scale(producer[conv.input[1]].input[1]))


def test_nothing_to_store_in_four_bits_is_refused(tmp_path):
    class NoHead(nn.Module):
        template, input_size, embedding_dim = "arcface112", (16, 16), 8

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x / 255.0).mean(dim=(2, 3))

    path = ex.export_onnx(NoHead().eval(), tmp_path / "nohead.onnx")
    with pytest.raises(ModelError, match="nohead.onnx: .*no layer to store in 4 bits"):
        ex.quantize_int8(path, tmp_path / "x.onnx", _crops(4), ex.Int8Options(int4_head=True))
    assert not (tmp_path / "x.onnx").exists()


def test_short_names_never_take_a_kept_graph_name():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Neg", ["t"], ["0"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("0", TensorProto.FLOAT, [2])])
    oc._short_names(graph)
    assert graph.node[0].output[0] not in ("0", "x") and graph.node[1].output[0] == "0"


def test_int4_packing_is_what_onnx_reads_back():
    values = np.array([[-8, -1, 0, 7, 3], [1, -5, 6, -2, 2], [4, 5, -6, -7, 1]], dtype=np.int8)
    tensor = onnx.helper.make_tensor("w", onnx.TensorProto.INT4, values.shape,
                                     oc.pack_int4(values), raw=True)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(tensor).astype(np.int8), values)


def test_float16_float_weights_halve_the_float_layers(float_file, tmp_path):
    model, path = float_file
    out = ex.quantize_int8(path, tmp_path / "f16.onnx", _crops(16),
                           ex.Int8Options(float_depthwise=True, half_float_weights=True))
    graph = onnx.load(str(out)).graph
    halves = [t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) == 1 and tuple(halves[0].dims) == (8, 1, 3, 3)
    assert [n for n in graph.node if n.op_type == "Cast"]
    ref = ex.torch_embeddings(model, _crops(6, seed=3))
    assert ex.parity(ref, _outputs(out))["mean_cosine"] > 0.97


def test_int4_head_in_the_integer_operator_format_is_refused(float_file, tmp_path):
    _, path = float_file
    with pytest.raises(ModelError, match=r"int4_head \(--int4-head\) needs the qdq format"):
        ex.quantize_int8(path, tmp_path / "x.onnx", _crops(2),
                         ex.Int8Options(quant_format="qoperator", int4_head=True))
    assert not (tmp_path / "x.onnx").exists()


def test_int8_files_say_which_writer_made_them(float_file, tmp_path):
    """Caches (the report's int8 rows) remake files an earlier writer left."""
    _, path = float_file
    out = ex.quantize_int8(path, tmp_path / "new.onnx", _crops(4))
    assert ex.written_by_this_version(out)
    proto = onnx.load(str(out))
    ex.set_metadata(proto, {"quantization": '{"scheme": "int8 static PTQ (onnxruntime)"}'})
    onnx.save(proto, str(tmp_path / "old.onnx"))
    assert not ex.written_by_this_version(tmp_path / "old.onnx")
    assert not ex.written_by_this_version(path)  # a float file has no recipe
