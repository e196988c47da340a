"""Bring your own model: TFLite and ONNX imports, parity with their runtimes, clear refusals."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from slimface.errors import ModelFileError
from slimface.models.importers import import_model
from slimface.models.importers.parity import cosines, source_embeddings, source_parity
from slimface.models.pretrained import MOBILEFACENET_TFLITE

# the user's cache as it was before the tests isolated theirs (fetched models live there)
_USER_CACHE = Path(os.environ.get("SLIMFACE_CACHE", Path.home() / ".cache" / "slimface"))


@pytest.fixture(scope="module")
def mobilefacenet_file() -> Path:
    path = (_USER_CACHE / "models" / MOBILEFACENET_TFLITE.package.replace("@", "-")
            / MOBILEFACENET_TFLITE.filename)
    if not path.is_file():
        pytest.skip("run `slimface models fetch --model mobilefacenet-tflite` for the TFLite tests")
    return path


@pytest.fixture(scope="module")
def mobilefacenet(mobilefacenet_file: Path):
    return import_model(mobilefacenet_file, pixel_mean=127.5, pixel_std=128.0)


def test_tflite_import_fuses_prelu_and_keeps_the_contract(mobilefacenet) -> None:
    ops = {n["op"] for n in mobilefacenet.graph["nodes"]}
    assert ops == {"conv", "prelu", "add", "reshape"}            # ABS/SUB/MUL/RELU fused
    assert mobilefacenet.source["prelu_fused"] == 33
    assert (mobilefacenet.embedding_dim, mobilefacenet.input_size) == (192, (112, 112))
    assert mobilefacenet.source["sha256"] == MOBILEFACENET_TFLITE.sha256
    assert mobilefacenet.source["layout"] == "NHWC" and mobilefacenet.template == "arcface112"


def test_tflite_parity_with_litert_on_real_lfw_crops(mobilefacenet, mobilefacenet_file,
                                                     lfw_root: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    from slimface.align.pipeline import align_paths

    people = sorted(p for p in (lfw_root / "lfw-deepfunneled").iterdir() if p.is_dir())[:12]
    paths = [sorted(p.glob("*.jpg"))[0] for p in people]
    crops = align_paths(paths, "arcface112", multi_face="central", no_face="centre",
                        progress=False).crops
    ref = source_embeddings(mobilefacenet_file, mobilefacenet, crops)
    with torch.inference_mode():
        ours = mobilefacenet(torch.from_numpy(crops).permute(0, 3, 1, 2).float()).numpy()
    assert cosines(ref, ours).min() >= 0.99999


def test_imported_model_round_trips_through_a_slim_file(mobilefacenet, tmp_path: Path) -> None:
    from slimface.runtime.imported import save_imported
    from slimface.runtime.loader import load_model

    out = save_imported(mobilefacenet, tmp_path / "mfn.slim")
    again = load_model(str(out))
    x = torch.rand(2, 3, 112, 112) * 255
    with torch.inference_mode():
        assert torch.allclose(again(x), mobilefacenet(x), atol=1e-5)
    assert again.source["sha256"] == MOBILEFACENET_TFLITE.sha256


def test_unsupported_tflite_operator_is_named(mobilefacenet_file: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from slimface.models.importers import tflite

    original = tflite._Converter.__init__

    def without_reshape(self, reader):  # a converter that does not know RESHAPE
        original(self, reader)
        del self.handlers["RESHAPE"]

    monkeypatch.setattr(tflite._Converter, "__init__", without_reshape)
    with pytest.raises(ModelFileError, match=r"MobileFaceNet\.tflite: unsupported TFLite "
                                             r"operator\(s\): RESHAPE"):
        import_model(mobilefacenet_file)


@pytest.mark.parametrize("content, problem", [
    (b"", "not a TFLite model"),
    (b"\x18\x00\x00\x00TFL3" + bytes(40), "TFLite file without a subgraph"),
    (b"GIF89a not a model at all", "not a TFLite model"),
])
def test_corrupt_tflite_is_refused_naming_the_file(tmp_path: Path, content: bytes,
                                                   problem: str) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    with pytest.raises(ModelFileError, match=rf"bad\.tflite: {problem}"):
        import_model(bad)


def test_truncated_tflite_is_refused(mobilefacenet_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(mobilefacenet_file.read_bytes()[:4000])
    with pytest.raises(ModelFileError, match=r"cut\.tflite: "):
        import_model(bad)


# ----------------------------------------------------------------------------- ONNX

def test_slimface_mobile_exported_to_onnx_imports_back_identically(tmp_path: Path) -> None:
    from slimface.runtime.export import export_onnx
    from slimface.runtime.loader import load_model

    model = load_model("slimface-mobile")
    path = export_onnx(model, tmp_path / "sm.onnx")
    imported = import_model(path)
    assert imported.template == model.template and imported.embedding_dim == model.embedding_dim
    x = torch.rand(4, 3, 112, 112) * 255
    with torch.inference_mode():
        a, b = model(x).numpy(), imported(x).numpy()
    assert cosines(a, b).min() >= 0.99999
    assert source_parity(path, imported) >= 0.99999          # and against ONNX Runtime


def _onnx_file(tmp_path: Path, nodes, out_shape, name: str = "m.onnx",
               inits=()) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *out_shape[1:]])],
        initializer=list(inits))
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnx_with_an_unsupported_operator_is_refused(tmp_path: Path) -> None:
    from onnx import helper

    path = _onnx_file(tmp_path, [helper.make_node("LRN", ["x"], ["z"], size=3),
                                 helper.make_node("Flatten", ["z"], ["y"])], [1, 192])
    with pytest.raises(ModelFileError, match=r"m\.onnx: unsupported ONNX operator\(s\): LRN"):
        import_model(path)


def test_non_face_network_with_a_feature_map_output_is_refused(tmp_path: Path) -> None:
    from onnx import helper

    path = _onnx_file(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [1, 3, 8, 8])
    with pytest.raises(ModelFileError, match=r"m\.onnx: not a face-embedding network: its "
                                             r"output has shape \['N', 3, 8, 8\]"):
        import_model(path)


def test_corrupt_onnx_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelFileError, match=r"bad\.onnx: "):
        import_model(bad)


def test_small_onnx_graph_matches_onnxruntime(tmp_path: Path) -> None:
    """Conv with asymmetric pads, PRelu, BatchNorm, GlobalAveragePool, Gemm."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    t = lambda name, shape: numpy_helper.from_array(  # noqa: E731
        rng.normal(size=shape).astype(np.float32), name)
    inits = [t("w", (4, 3, 3, 3)), t("b", (4,)), t("slope", (4, 1, 1)),
             numpy_helper.from_array(np.abs(rng.normal(size=4)).astype(np.float32) + 0.5, "g"),
             t("beta", (4,)), t("mu", (4,)),
             numpy_helper.from_array(np.abs(rng.normal(size=4)).astype(np.float32) + 0.5, "v"),
             t("fc", (6, 4)), t("fcb", (6,))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[0, 1, 1, 0], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "g", "beta", "mu", "v"], ["n"]),
             helper.make_node("PRelu", ["n", "slope"], ["p"]),
             helper.make_node("GlobalAveragePool", ["p"], ["q"]),
             helper.make_node("Flatten", ["q"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1)]
    path = _onnx_file(tmp_path, nodes, [1, 6], inits=inits)
    model = import_model(path, pixel_mean=0.0, pixel_std=1.0)
    images = rng.integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    ref = source_embeddings(path, model, images)
    with torch.inference_mode():
        ours = model(torch.from_numpy(images).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def _pooled_onnx(tmp_path: Path, dim: int) -> Path:
    """Pooled colours, then a dense layer to ``dim`` outputs (3 = the colours themselves)."""
    from onnx import helper, numpy_helper

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["q"]),
             helper.make_node("Flatten", ["q"], ["f" if dim != 3 else "y"])]
    inits = []
    if dim != 3:
        inits = [numpy_helper.from_array(np.ones((dim, 3), np.float32), "fc")]
        nodes.append(helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1))
    return _onnx_file(tmp_path, nodes, [1, dim], name=f"pool{dim}.onnx", inits=inits)


@pytest.mark.parametrize("dim, warned", [(3, True), (31, True), (32, False), (128, False)])
def test_a_tiny_embedding_imports_with_a_warning(tmp_path: Path, caplog, dim: int,
                                                 warned: bool) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="slimface.models.importers"):
        model = import_model(_pooled_onnx(tmp_path, dim))
    assert model.embedding_dim == dim
    message = f"pool{dim}.onnx: its output has only {dim} dimensions"
    assert (message in caplog.text) is warned
    if warned:
        assert "unlikely to be a face-embedding model" in caplog.text


def test_info_on_an_onnx_file_says_what_it_reads_and_how_to_import(tmp_path: Path,
                                                                   capsys) -> None:
    from slimface.cli.main import main

    path = _pooled_onnx(tmp_path, 32)
    assert main(["info", "--model", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: an ONNX model; slimface info describes .slim files only" in err
    assert "header claims" not in err and "Traceback" not in err
    slim = tmp_path / "M.slim"
    assert f"slimface import --model {path} --out M.slim" in err
    assert main(["import", "--model", str(path), "--out", str(slim)]) == 0
    assert main(["info", "--model", str(slim)]) == 0
