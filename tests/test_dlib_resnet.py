"""dlib teacher: our parser + module against dlib's own pipeline, and the module contract."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimface.errors import ModelError, ModelFileError
from slimface.models import BACKBONES, create_backbone
from slimface.models.dlib_resnet import (DlibBlock, DlibResNet, _Reader, add_zero_padded,
                                        default_model_path, read_dlib_net)
from slimface.models.layers import Affine, Normalize

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def teacher() -> DlibResNet:
    return create_backbone("dlib-resnet")


# ---------------------------------------------------------------- parser primitives

@pytest.mark.parametrize("raw, value", [
    (b"\x01\x00", 0), (b"\x01\x02", 2), (b"\x81\x05", -5), (b"\x02\x2c\x01", 300),
    (b"\x02\x80\x12", 4736)])
def test_reader_decodes_dlib_packed_integers(raw: bytes, value: int):
    assert _Reader(raw, "x").read_int() == value


def test_reader_decodes_float_as_mantissa_times_power_of_two():
    # 0.5 = 1 * 2**-1; then a string, a bool and a 1x1x1x2 float32 tensor
    raw = (b"\x01\x01\x81\x01" + b"\x01\x04con_" + b"1"
           + b"\x01\x02" + b"\x01\x01" * 3 + b"\x01\x02" + np.float32([1.5, -2]).tobytes())
    r = _Reader(raw, "x")
    assert r.read_float() == 0.5
    assert r.read_string() == "con_"
    assert r.read_bool() is True
    np.testing.assert_array_equal(r.read_tensor().reshape(-1), [1.5, -2.0])


def test_reader_names_file_when_data_ends_early():
    with pytest.raises(ModelFileError, match="net.dat: .*ends early"):
        _Reader(b"\x02\x01", "net.dat").read_int()


# ---------------------------------------------------------------- bad files

def test_truncated_model_file_is_a_model_file_error(tmp_path: Path):
    bad = tmp_path / "truncated.dat"
    bad.write_bytes(default_model_path().read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match="truncated.dat"):
        read_dlib_net(bad)


@pytest.mark.parametrize("content", [b"", b"not a dlib file at all", bytes(range(256)) * 4])
def test_garbage_file_is_a_model_file_error(tmp_path: Path, content: bytes):
    bad = tmp_path / "garbage.dat"
    bad.write_bytes(content)
    with pytest.raises(ModelFileError, match="garbage.dat"):
        create_backbone("dlib_resnet", path=bad)


def test_missing_file_is_a_model_file_error(tmp_path: Path):
    with pytest.raises(ModelFileError, match="nope.dat"):
        read_dlib_net(tmp_path / "nope.dat")


def test_other_dlib_model_is_rejected_by_name():
    other = default_model_path().with_name("shape_predictor_5_face_landmarks.dat")
    if not other.is_file():
        pytest.skip("5-point shape predictor not installed")
    with pytest.raises(ModelFileError, match="shape_predictor_5_face_landmarks.dat"):
        read_dlib_net(other)


def test_pretrained_rejects_architecture_arguments():
    with pytest.raises(ModelError, match="pretrained=False"):
        create_backbone("dlib_resnet", embedding_dim=64)


# ---------------------------------------------------------------- module contract

def test_registered_under_dash_and_underscore():
    assert "dlib-resnet" in BACKBONES and "dlib_resnet" in BACKBONES


def test_random_init_has_contract_attributes_and_output_shape():
    model = create_backbone("dlib-resnet", pretrained=False).eval()
    assert (model.template, model.input_size, model.embedding_dim) == ("dlib150", (150, 150), 128)
    assert (model.detector, model.fallback_detector) == ("dlib", "retinaface")
    with torch.no_grad():
        assert model(torch.rand(2, 3, 150, 150) * 255).shape == (2, 128)
    assert model.feature_layers == ["layer1", "layer2", "layer3", "layer4", "layer5"]
    assert [f["num_chs"] for f in model.feature_info] == [32, 64, 128, 256, 256]


def test_random_init_reads_no_file(monkeypatch: pytest.MonkeyPatch):
    import slimface.models.dlib_resnet as mod

    def no_file(*args, **kwargs):
        raise AssertionError("pretrained=False must not read the .dat file")

    monkeypatch.setattr(mod, "read_dlib_net", no_file)
    monkeypatch.setattr(mod, "default_model_path", no_file)
    assert isinstance(create_backbone("dlib_resnet", pretrained=False), DlibResNet)


def test_pretrained_matches_random_architecture_and_names(teacher: DlibResNet):
    fresh = DlibResNet()
    assert {k: v.shape for k, v in teacher.state_dict().items()} == \
        {k: v.shape for k, v in fresh.state_dict().items()}
    keys = teacher.state_dict()
    for name in ("stem.conv.weight", "layer1.0.conv1.weight", "layer2.0.affine2.bias",
                 "layer5.0.conv2.weight", "fc.weight"):
        assert name in keys
    assert "fc.bias" not in keys
    n_params = sum(p.numel() for p in teacher.parameters())
    assert 5.5e6 < n_params < 5.7e6  # dlib's ResNet: 5.61M
    convs = [m for m in teacher.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 29


def test_feature_layers_give_dlib_spatial_sizes(teacher: DlibResNet):
    sizes = {}
    hooks = [getattr(teacher, n).register_forward_hook(
        lambda m, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[1:])))
        for n in teacher.feature_layers]
    with torch.no_grad():
        teacher(torch.zeros(1, 3, 150, 150))
    for h in hooks:
        h.remove()
    assert sizes == {"layer1": (32, 35, 35), "layer2": (64, 17, 17), "layer3": (128, 8, 8),
                     "layer4": (256, 4, 4), "layer5": (256, 2, 2)}


def test_train_mode_computes_the_same_function_and_has_gradients(teacher: DlibResNet):
    x = torch.rand(1, 3, 150, 150) * 255
    with torch.no_grad():
        ref = teacher.eval()(x)
    teacher.train()
    try:
        out = teacher(x)
        torch.testing.assert_close(out, ref)
        out.square().sum().backward()
        grads = [p.grad for p in teacher.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert teacher.layer1[0].conv1.weight.grad.abs().sum() > 0
    finally:
        teacher.zero_grad(set_to_none=True)
        teacher.eval()


def test_add_zero_padded_places_smaller_tensor_top_left_and_first_channels():
    big = torch.ones(1, 4, 4, 4)
    small = torch.full((1, 2, 3, 3), 5.0)
    out = add_zero_padded(small, big)
    assert out.shape == (1, 4, 4, 4)
    assert torch.all(out[:, :2, :3, :3] == 6) and out.sum() == 64 + 5 * 18


def test_down_block_matches_dlib_zero_padded_add():
    torch.manual_seed(0)
    block = DlibBlock(32, 64, downsample=True).eval()
    x = torch.randn(1, 32, 8, 8)  # residual 3x3x64, skip 4x4x32
    with torch.no_grad():
        y = block.affine2(block.conv2(block.relu1(block.affine1(block.conv1(x)))))
        expected = torch.relu(add_zero_padded(y, nn.functional.avg_pool2d(x, 2, 2)))
        torch.testing.assert_close(block(x), expected)
    assert expected.shape == (1, 64, 4, 4)


def test_block_refuses_to_narrow_channels():
    with pytest.raises(ModelError, match="64 -> 32"):
        DlibBlock(64, 32, downsample=True)


# ---------------------------------------------------------------- shared layers

def test_affine_equals_eval_batchnorm():
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([0.25, 4.0, 1.0]))
        bn.weight.copy_(torch.tensor([1.0, 0.0, -2.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    x = torch.randn(2, 3, 4, 5)
    x[0, 0, 0, 0] = 0.0
    torch.testing.assert_close(Affine.from_batchnorm(bn)(x), bn(x))


def test_normalize_per_channel_and_rejects_zero_std():
    norm = Normalize(mean=(1.0, 2.0, 3.0), std=2.0)
    out = norm(torch.tensor([1.0, 2.0, 5.0]).view(1, 3, 1, 1))
    assert out.flatten().tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ModelError, match="non-zero"):
        Normalize(std=(1.0, 0.0, 1.0))


# ---------------------------------------------------------------- parity with dlib itself

N_PARITY_IMAGES = 4


def _lfw_sample(lfw_root: Path, n: int) -> list[Path]:
    people = sorted(p for p in (lfw_root / "lfw-deepfunneled").iterdir() if p.is_dir())
    step = max(1, len(people) // (4 * n))
    return [sorted(person.glob("*.jpg"))[0] for person in people[::step]][:4 * n]


@pytest.fixture(scope="module")
def dlib_chips(lfw_root: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(dlib chips, dlib descriptors of those chips, the RGB images) for a few LFW faces."""
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    recognizer = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    chips, images = [], []
    for path in _lfw_sample(lfw_root, N_PARITY_IMAGES):
        image = np.asarray(Image.open(path).convert("RGB"))
        dets = detector(image, 1)
        if dets:
            shape = predictor(image, max(dets, key=lambda d: d.area()))
            chips.append(dlib.get_face_chip(image, shape, 150, 0.25))
            images.append(image)
        if len(chips) == N_PARITY_IMAGES:
            break
    if len(chips) < N_PARITY_IMAGES:
        pytest.skip("dlib found too few faces in the LFW sample")
    chips_arr = np.stack(chips)
    ref = np.stack([np.asarray(recognizer.compute_face_descriptor(c)) for c in chips_arr])
    return chips_arr, ref.astype(np.float32), images


@pytest.mark.data
def test_embeddings_equal_dlib_on_the_same_chip(teacher: DlibResNet, dlib_chips):
    chips, ref, _ = dlib_chips
    with torch.no_grad():
        out = teacher(torch.from_numpy(chips).permute(0, 3, 1, 2).float()).numpy()
    assert np.abs(out - ref).max() < 1e-4



@pytest.mark.data
@pytest.mark.parametrize("detector", ["dlib", "retinaface"])
def test_our_dlib150_chip_embeds_like_dlibs_own_chip(teacher: DlibResNet, dlib_chips,
                                                     detector: str):
    """The parity bar: mean cosine >= 0.99 between the teacher on our aligned chip and dlib's
    descriptor of dlib's chip, with the model's detector (dlib) and its fallback (RetinaFace)."""
    pipeline = pytest.importorskip("slimface.align.pipeline")
    from slimface.models.inference import embed_crops, l2_normalize

    _, ref, images = dlib_chips
    crops = np.stack([pipeline.align_image(image, template="dlib150", detector=detector,
                                           multi_face="central").crop for image in images])
    cos = (embed_crops(teacher, crops) * l2_normalize(ref)).sum(axis=1)
    assert cos.mean() >= 0.99, f"cosines {np.round(cos, 4).tolist()}"
