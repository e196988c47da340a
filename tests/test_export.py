"""ONNX export (parity, metadata, dynamic batch) and int8 static quantization on a tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _gallery_fakes import TinyBackbone

from slimface.errors import ModelError, ModelFileError
from slimface.runtime import export as ex


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[TinyBackbone, Path]:
    model = TinyBackbone().eval()
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    ex.export_onnx(model, out, metadata={"threshold": {"value": 0.42, "far": 1e-3}})
    return model, out


def _crops(n: int, seed: int = 0, size: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_export_matches_pytorch_at_any_batch_size(exported):
    model, path = exported
    sess = ex.session(path)
    ref = ex.torch_embeddings(model, _crops(5))
    for batch in (1, 5):
        stats = ex.parity(ref, ex.run_onnx(sess, _crops(5), batch_size=batch))
        assert stats["min_cosine"] >= ex.PARITY_MIN_COSINE and stats["n_crops"] == 5


def test_export_metadata_round_trips_through_the_loader(exported):
    from slimface.runtime.loader import OnnxModel

    _, path = exported
    meta = ex.read_metadata(path)
    assert json.loads(meta["threshold"])["value"] == 0.42
    loaded = OnnxModel(path)
    assert loaded.template == "arcface112" and loaded.embedding_dim == 16
    assert tuple(loaded.input_size) == (112, 112) and loaded.threshold["value"] == 0.42


def test_parity_below_minimum_is_refused():
    a = np.eye(3, dtype=np.float32)
    b = a.copy()
    b[0] = [1, 1, 0]
    with pytest.raises(ModelError, match="out.onnx: ONNX export disagrees"):
        ex.check_parity(ex.parity(a, b), "out.onnx")


@pytest.mark.parametrize("options", [ex.Int8Options(),
                                     ex.Int8Options(quant_format="qoperator", per_channel=False)])
def test_int8_quantization_keeps_embeddings_close_and_metadata(exported, tmp_path, options):
    model, path = exported
    out = ex.quantize_int8(path, tmp_path / "tiny.int8.onnx", _crops(16, seed=1), options)
    meta = ex.read_metadata(out)
    assert meta["template"] == "arcface112"
    assert json.loads(meta["quantization"])["n_calibration_crops"] == 16
    ref = ex.torch_embeddings(model, _crops(6, seed=2))
    stats = ex.parity(ref, ex.run_onnx(ex.session(out), _crops(6, seed=2)))
    assert stats["mean_cosine"] > 0.97  # int8 is close, not exact
    ops = {n.op_type for n in __import__("onnx").load(str(out)).graph.node}
    assert ops & {"QuantizeLinear", "QLinearConv"}


def test_int8_weights_are_7_bit_unless_asked_and_full_range_warns_without_vnni(
        exported, tmp_path, monkeypatch):
    import slimface._provenance as provenance
    from slimface.errors import SaturatingInt8Warning
    from slimface.runtime.loader import OnnxModel

    _, path = exported
    seven = ex.quantize_int8(path, tmp_path / "seven.onnx", _crops(8, seed=1))
    eight = ex.quantize_int8(path, tmp_path / "eight.onnx", _crops(8, seed=1),
                             ex.Int8Options(reduce_range=False))
    assert (ex.weight_bits(ex.read_metadata(seven)), ex.weight_bits(ex.read_metadata(eight)),
            ex.weight_bits(ex.read_metadata(path))) == (7, 8, None)
    older = {"options": "qdq,per-channel,act=uint8,minmax", "writer": 2}  # no weight_bits
    assert ex.weight_bits({"quantization": json.dumps(older)}) == 8
    older["options"] = "qdq,per-channel,act=uint8,reduce_range,minmax"
    assert ex.weight_bits({"quantization": json.dumps(older)}) == 7
    no_vnni = {"cpu": "Some AVX2 CPU", "avx2": True}
    assert ex.saturation_note(ex.read_metadata(seven), no_vnni) is None
    assert "VNNI" in ex.saturation_note(ex.read_metadata(eight), no_vnni)
    assert ex.saturation_note(ex.read_metadata(eight), {**no_vnni, "avx512_vnni": True}) is None
    assert ex.saturation_note(ex.read_metadata(path), no_vnni) is None  # float file
    monkeypatch.setattr(provenance, "describe_cpu", lambda: no_vnni)
    with pytest.warns(SaturatingInt8Warning, match="eight.onnx: its int8 weights"):
        OnnxModel(eight)


def test_int8_cli_flags_choose_the_weight_range():
    import argparse

    from slimface.cli.export import add_int8_args, int8_options

    p = argparse.ArgumentParser()
    add_int8_args(p)
    assert int8_options(p.parse_args([])).reduce_range
    assert not int8_options(p.parse_args(["--full-range"])).reduce_range
    with pytest.raises(SystemExit):
        p.parse_args(["--full-range", "--reduce-range"])


def test_bad_int8_option_and_unreadable_file_are_named(exported, tmp_path):
    _, path = exported
    with pytest.raises(ModelError, match="activation_type 'int4' unknown"):
        ex.quantize_int8(path, tmp_path / "x.onnx", _crops(2),
                         ex.Int8Options(activation_type="int4"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"nope")
    with pytest.raises(ModelFileError, match="broken.onnx"):
        ex.session(broken)
    assert not (tmp_path / "x.onnx").exists()


def test_latency_reports_median_and_per_face(exported, fake_clock):
    _, path = exported
    stats = ex.latency_ms(ex.session(path), (112, 112), batch=2, repeats=3, warmup=1)
    assert stats["batch"] == 2 and stats["repeats"] == 3
    assert stats["median_ms"] == pytest.approx(1.0) and stats["ms_per_face"] == pytest.approx(0.5)


def _fake_aligned_crops(model, paths):
    from PIL import Image

    return np.stack([np.array(Image.open(p).convert("RGB").resize((112, 112))) for p in paths])


def test_export_cli_writes_checked_fp32_and_int8(tmp_path, monkeypatch, capsys):
    from _gallery_fakes import register_tiny, write_faces

    import slimface.cli.export as cli_export
    from slimface.cli.main import main

    register_tiny(monkeypatch)
    monkeypatch.setattr(cli_export, "aligned_crops", _fake_aligned_crops)
    write_faces(tmp_path / "celeb", 4, 4)
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--model", "tiny-test", "--out", str(out), "--int8", "--calib",
                 str(tmp_path / "celeb"), "--calib-n", "8", "--parity-n", "4", "--json",
                 "--float16-float-weights", "--int4-head"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity_fp32"]["min_cosine"] >= ex.PARITY_MIN_COSINE
    assert Path(report["int8"]).is_file() and report["n_calibration_crops"] == 8
    recipe = json.loads(ex.read_metadata(report["int8"])["quantization"])["options"]
    assert recipe.endswith("float16-float-weights,int4-head")
    assert json.loads(ex.read_metadata(out)["input_size"]) == [112, 112]
    assert not list(tmp_path.glob(".*unchecked*"))


def test_export_cli_refuses_lfw_as_calibration_data(tmp_path, monkeypatch, capsys):
    from _gallery_fakes import register_tiny, write_faces

    from slimface.cli.main import main

    register_tiny(monkeypatch)
    write_faces(tmp_path / "lfw" / "x", 1, 2)
    assert main(["export", "--model", "tiny-test", "--out", str(tmp_path / "m.onnx"),
                 "--calib", str(tmp_path / "lfw")]) == 1
    assert "refusing to calibrate on LFW" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_dlib_zero_padded_adds_export_with_constant_pads(tmp_path):
    # dlib's shape-reconciling residual adds must not leave Shape/Gather arithmetic in the
    # graph: int8 quantization cannot fuse it and it runs in float on every call
    import collections

    import onnx
    import torch

    from slimface.models import create_backbone

    model = create_backbone("dlib_resnet", pretrained=False).eval()
    path = ex.export_onnx(model, tmp_path / "dlib.onnx")
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["Shape"] == 0 and ops["Gather"] == 0 and ops["Pad"] > 0
    x = np.random.default_rng(0).uniform(0, 255, (3, 3, 150, 150)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = ex.session(path).run(None, {ex.INPUT_NAME: x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_float_depthwise_keeps_grouped_convs_unquantized(tmp_path):
    """Depthwise convs stay float (no QuantizeLinear feeds them); dense convs are int8."""
    import onnx
    import torch
    from torch import nn

    class DepthwiseNet(nn.Module):
        template, input_size, embedding_dim = "arcface112", (16, 16), 8

        def __init__(self) -> None:
            super().__init__()
            self.dw = nn.Conv2d(3, 3, 3, padding=1, groups=3)
            self.pw = nn.Conv2d(3, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pw(torch.relu(self.dw(x / 255.0))).mean(dim=(2, 3))

    path = ex.export_onnx(DepthwiseNet().eval(), tmp_path / "dw.onnx")
    out = ex.quantize_int8(path, tmp_path / "dw.int8.onnx",
                           _crops(8, size=16), ex.Int8Options(float_depthwise=True))
    graph = onnx.load(str(out)).graph
    producers = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    grouped = [n for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    dense = [n for n in convs if n not in grouped]
    weight_is_dequantized = lambda n: producers.get(n.input[1]) is not None and \
        producers[n.input[1]].op_type == "DequantizeLinear"  # noqa: E731
    assert grouped and not any(weight_is_dequantized(n) for n in grouped)
    assert dense and all(weight_is_dequantized(n) for n in dense)


def test_cli_prints_slimface_warnings_as_one_line(capsys):
    import warnings

    from slimface.cli.main import _plain_warnings
    from slimface.errors import SaturatingInt8Warning

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with _plain_warnings():
            warnings.warn(SaturatingInt8Warning("m.int8.onnx: its int8 weights ..."))
            warnings.warn("a library's own", DeprecationWarning)
    err = capsys.readouterr().err
    assert "slimface: warning: m.int8.onnx: its int8 weights ...\n" in err
    assert "a library's own" not in err  # other warnings go to the handler there was before
