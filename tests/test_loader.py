"""load_model: registry names, .pt / .slim / .onnx files, and clear errors for bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from slimface.errors import ModelFileError, UnknownNameError
from slimface.runtime.loader import OnnxModel, default_model_name, load_model

ARCH = {"backbone": "mobilefacenet_050", "kwargs": {"embedding_dim": 32}}


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    from slimface.models import create_backbone

    torch.manual_seed(0)
    return create_backbone(ARCH["backbone"], **ARCH["kwargs"]).eval()


def _x() -> torch.Tensor:
    return torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(1)) * 255


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean.*mobilefacenet"):
        load_model("mobilefacenett")


def test_registry_name_gets_spec_as_name():
    model = load_model("mobilefacenet_050")
    assert model.name == "mobilefacenet_050" and not model.training


def test_default_model_name_is_registered():
    from slimface.models import BACKBONES

    assert default_model_name() in ("slimface-mobile", "dlib-resnet")
    assert default_model_name() in BACKBONES


@pytest.mark.parametrize("name", ["missing.pt", "missing.slim", "missing.onnx"])
def test_missing_file_names_it(tmp_path: Path, name: str):
    with pytest.raises(ModelFileError, match=f"{name}: model file not found"):
        load_model(tmp_path / name)


@pytest.mark.parametrize("name", ["bad.pt", "bad.slim", "bad.onnx"])
def test_corrupt_file_names_it(tmp_path: Path, name: str):
    (tmp_path / name).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelFileError, match=name):
        load_model(tmp_path / name)


def test_unknown_file_type(tmp_path: Path):
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model file type '.h5'"):
        load_model(tmp_path / "model.h5")


def test_checkpoint_without_architecture_says_what_it_found(tmp_path: Path, tiny_model):
    torch.save({"model": tiny_model.state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(ModelFileError, match=r"'architecture' and 'state_dict'.*\['model'\]"):
        load_model(tmp_path / "ckpt.pt")


def test_checkpoint_round_trip(tmp_path: Path, tiny_model):
    torch.save({"architecture": ARCH, "state_dict": tiny_model.state_dict(),
                "threshold": {"far_1e-3": 0.42}}, tmp_path / "ckpt.pt")
    model = load_model(tmp_path / "ckpt.pt")
    assert model.threshold == {"far_1e-3": 0.42} and model.template == "arcface112"
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), tiny_model(_x()))


def test_checkpoint_with_wrong_weights(tmp_path: Path, tiny_model):
    state = dict(tiny_model.state_dict())
    state.pop(next(iter(state)))
    torch.save({"architecture": ARCH, "state_dict": state}, tmp_path / "ckpt.pt")
    with pytest.raises(ModelFileError, match="weights do not fit architecture"):
        load_model(tmp_path / "ckpt.pt")


def test_slim_round_trip(tmp_path: Path, tiny_model):
    from slimface.runtime.deploy import export_state
    from slimface.runtime.slimfile import save_slim

    tensors, layers = export_state(tiny_model)
    save_slim(tmp_path / "m.slim", tensors, {"architecture": ARCH, "layers": layers,
                                              "template": "arcface112", "embedding_dim": 32})
    model = load_model(tmp_path / "m.slim")
    assert model.name.endswith("m.slim")
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), tiny_model(_x()))


def _tiny_slim(path: Path, model: torch.nn.Module) -> bytes:
    from slimface.runtime.deploy import export_state
    from slimface.runtime.slimfile import save_slim

    tensors, layers = export_state(model)
    save_slim(path, tensors, {"architecture": ARCH, "layers": layers, "template": "arcface112",
                              "embedding_dim": 32})
    return path.read_bytes()


@pytest.mark.parametrize("where", ["weights", "metadata"])
def test_slim_with_a_changed_byte_is_refused_as_damaged(tmp_path: Path, tiny_model, where):
    data = bytearray(_tiny_slim(tmp_path / "m.slim", tiny_model))
    if where == "weights":  # a flipped low mantissa bit: loads as a plausible weight
        data[len(data) - 4096] ^= 0x01
    else:  # still valid JSON, still the same length
        start = data.index(b'embedding_dim\\": 32')
        data[start:start + 19] = b'embedding_dim\\": 33'
    (tmp_path / "m.slim").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"m\.slim: damaged model file: its contents do "
                                             r"not match the checksum"):
        load_model(tmp_path / "m.slim")


def test_slim_written_before_checksums_loads_unchecked(tmp_path: Path, tiny_model):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from slimface.models.weights import shipped_file
    from slimface.runtime.slimfile import load_slim

    _tiny_slim(tmp_path / "new.slim", tiny_model)
    tensors, meta = load_slim(tmp_path / "new.slim")
    save_file(tensors, str(tmp_path / "old.slim"), metadata={"slimface": json.dumps(meta)})
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "old.slim")(_x()), tiny_model(_x()))
    for name, checked in (("q_face_resnet_small.slim", False),
                          ("slimface_mobile_binary.slim", True)):
        path = shipped_file(name)  # older files are pinned by their cards' sha256 alone
        with safe_open(str(path), framework="numpy") as f:
            assert ("slimface_crc32" in (f.metadata() or {})) is checked
        load_slim(path)


def _mean_colour_onnx(path: Path, metadata: dict[str, str]) -> None:
    """An ONNX 'embedding' = per-channel mean of the image: (N,3,8,8) -> (N,3)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("ReduceMean", ["x"], ["emb"], axes=[2, 3], keepdims=0)
    graph = helper.make_graph([node], "mean", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 3, 8, 8])], [helper.make_tensor_value_info(
            "emb", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def test_onnx_keeps_backbone_contract(tmp_path: Path):
    from slimface.models.inference import embed_crops

    _mean_colour_onnx(tmp_path / "m.onnx", {"template": "sphereface112x96",
                                            "threshold": json.dumps(0.5)})
    model = load_model(tmp_path / "m.onnx")
    assert isinstance(model, OnnxModel)
    assert (model.template, model.input_size, model.embedding_dim) == ("sphereface112x96", (8, 8), 3)
    assert model.threshold == 0.5
    crops = np.zeros((3, 8, 8, 3), np.uint8)
    crops[..., 0] = 255
    emb = embed_crops(model, crops)
    np.testing.assert_allclose(emb, np.tile([1.0, 0.0, 0.0], (3, 1)), atol=1e-6)


def test_onnx_without_slimface_contract_is_imported_not_fed_raw_pixels(tmp_path: Path):
    """A third-party face model expects its own input scaling: load_model imports it (the
    default (x - 127.5) / 128), instead of silently scoring raw 0..255 pixels."""
    from slimface.models.inference import embed_crops

    _mean_colour_onnx(tmp_path / "theirs.onnx", {})
    model = load_model(tmp_path / "theirs.onnx")
    assert not isinstance(model, OnnxModel)
    assert (model.pixel_mean, model.pixel_std) == (127.5, 128.0)
    crops = np.zeros((2, 8, 8, 3), np.uint8)
    crops[..., 0] = 255                       # scaled: (127.5/128, -127.5/128, -127.5/128)
    emb = embed_crops(model, crops)
    np.testing.assert_allclose(emb, np.tile([1.0, -1.0, -1.0], (2, 1)) / np.sqrt(3), atol=1e-4)
