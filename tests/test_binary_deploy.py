"""quantize_model, deploy layers, BN folding, the binary/kbit codecs, and the CLI round trip."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from slimface.errors import ConfigError, ModelFileError
from slimface.models.quantized import create_quantized_backbone
from slimface.quant.qat import default_keep_float, quantize_model, quantized_layers
from slimface.quant.quantizers import (DorefaActivation, DorefaWeight, QuantConv2d, QuantLinear,
                                       SteSign, XnorWeight)
from slimface.runtime.binary import (BinaryConv2d, FoldedBatchNorm, KbitConv2d, deploy_layer,
                                     load_deploy, pack_codes, save_deploy, to_inference,
                                     unpack_codes, unpack_signs_bytes, pack_signs_bytes)

TINY = {"width": 0.125, "act_order": "conv_bn_pool_act"}


def _tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.PReLU(12),
                         nn.Flatten(), nn.Linear(12 * 4 * 4, 10), nn.Linear(10, 5))


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


def test_default_keeps_first_conv_and_classifier_float():
    net = quantize_model(_tiny_net(), "xnor")
    assert set(quantized_layers(net)) == {"3", "7"}
    assert isinstance(net[0], nn.Conv2d) and type(net[8]) is nn.Linear


def test_backbone_keeps_its_own_float_layers_and_binarizes_fc5():
    from slimface.models import create_backbone

    m = quantize_model(create_backbone("face_resnet_a", **TINY), "xnor")
    assert default_keep_float(create_backbone("face_resnet_a", **TINY)) == ("conv1a.conv",)
    layers = quantized_layers(m)
    assert "conv1a.conv" not in layers and "fc5" in layers and "conv1b.conv" in layers


def test_binary_activations_replace_relu_like_activations_by_identity():
    net = quantize_model(_tiny_net(), "bnn")
    assert type(net[2]) is nn.Identity and type(net[5]) is nn.Identity
    kept = quantize_model(_tiny_net(), "xnor", a_bits=32)
    assert isinstance(kept[2], nn.ReLU) and kept[3].input_quantizer is None


@pytest.mark.parametrize("kwargs,match", [
    ({"scheme": "ternary"}, "bnn"), ({"scheme": "xnor", "w_bits": 2}, "dorefa"),
    ({"scheme": "dorefa", "w_bits": 9}, "1..8"), ({"scheme": "xnor", "a_bits": 4}, "dorefa"),
    ({"scheme": "xnor", "keep_float": ["nope"]}, "nope")])
def test_bad_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        quantize_model(_tiny_net(), **kwargs)


def test_quantizing_twice_is_refused():
    net = quantize_model(_tiny_net(), "xnor")
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_model(net, "xnor", keep_float=["0", "8"])


def test_qat_step_updates_latent_weights():
    net = quantize_model(_tiny_net(), "xnor")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net[3].weight.detach().clone()
    loss = net(torch.randn(4, 3, 6, 6)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    assert not torch.equal(before, net[3].weight)


def test_quantized_backbone_is_registered_for_configs():
    from slimface.models import create_backbone

    m = create_backbone("quantized", base="face_resnet_a", base_kwargs=TINY, scheme="bnn")
    assert m.backbone_name == "face_resnet_a" and quantized_layers(m)
    assert create_quantized_backbone("face_resnet_a", TINY).backbone_kwargs == TINY


def test_sign_packing_round_trip_with_zeros():
    w = np.array([[0.0, -0.0, -1.0], [2.0, -1e-9, 0.1]], np.float32)
    packed = pack_signs_bytes(w)
    assert packed.nbytes == 1
    assert np.array_equal(unpack_signs_bytes(packed, w.shape), w >= 0)


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_kbit_code_packing_round_trip(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, 37).astype(np.uint8)
    packed = pack_codes(codes, bits)
    assert packed.nbytes == (37 * bits + 7) // 8
    assert np.array_equal(unpack_codes(packed, bits, 37), codes)


LAYERS = {
    "xnor_sign_in": lambda: QuantConv2d(5, 7, 3, stride=2, padding=1, bias=False,
                                        input_quantizer=SteSign(), weight_quantizer=XnorWeight()),
    "bnn_sign_in": lambda: QuantConv2d(3, 4, 3, padding=1, input_quantizer=SteSign(),
                                       weight_quantizer=SteSign()),
    "xnor_float_in": lambda: QuantConv2d(6, 5, 3, padding=1, weight_quantizer=XnorWeight("layer")),
    "xnor_beta": lambda: QuantConv2d(4, 6, 3, padding=1, input_quantizer=SteSign(beta="spatial"),
                                     weight_quantizer=XnorWeight()),
    "dorefa_w2a2": lambda: QuantConv2d(4, 6, 3, padding=1, input_quantizer=DorefaActivation(2),
                                       weight_quantizer=DorefaWeight(2)),
    "dorefa_w1a3": lambda: QuantConv2d(4, 6, 3, padding=1,
                                       input_quantizer=DorefaActivation(3, "tanh"),
                                       weight_quantizer=DorefaWeight(1)),
    "grouped": lambda: QuantConv2d(4, 8, 3, padding=1, groups=2, input_quantizer=SteSign(),
                                   weight_quantizer=XnorWeight()),
}


@pytest.fixture
def layer_path():
    """Set deployed layers' path rule for one test; the rule and measured choices reset."""
    from slimface.runtime import kernel
    from slimface.runtime.binary import clear_path_choices

    before = kernel.layer_path()
    clear_path_choices()
    yield kernel.set_layer_path
    kernel.set_layer_path(before)
    clear_path_choices()


@pytest.mark.parametrize("path", ["kernel", "torch", "auto"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_deploy_layer_matches_qat_layer(name, path, layer_path):
    layer_path(path)
    torch.manual_seed(0)
    layer = LAYERS[name]().eval()
    x = torch.randn(3, layer.in_channels, 7, 6)
    x[0, 0, :2] = 0.0
    with torch.no_grad():
        ref = layer(x)
        deployed = deploy_layer(layer)
        out = deployed(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    if isinstance(deployed, BinaryConv2d):  # k-bit layers always run torch
        want = "torch" if name == "grouped" else path
        assert want == "auto" or deployed.path_choice.path == want


def test_each_input_shape_is_measured_once_per_process_and_shared(layer_path, monkeypatch):
    """The first call of a shape times both paths; later calls of that shape, by this layer
    or another of the same geometry, reuse the choice; a new shape is measured again."""
    from slimface.runtime import binary

    layer_path("auto")
    measured = []
    real = binary.measure_paths
    monkeypatch.setattr(binary, "measure_paths",
                        lambda k, t: measured.append(1) or real(k, t))
    torch.manual_seed(0)
    a = deploy_layer(LAYERS["xnor_sign_in"]().eval())
    b = deploy_layer(LAYERS["xnor_sign_in"]().eval())
    x = torch.randn(2, 5, 9, 8)
    with torch.no_grad():
        a(x), a(x), b(x)
        assert len(measured) == 1 and a.path_choice is b.path_choice
        choice = a.path_choice
        assert choice.path in ("kernel", "torch") and choice.reason.startswith("measured")
        assert (choice.path == "kernel") == (choice.kernel_ms <= choice.torch_ms)
        a(torch.randn(1, 5, 9, 8))
    assert len(measured) == 2


def test_a_first_measurement_is_taken_again_once_warm_and_merged(layer_path, monkeypatch):
    """The first choice of a shape is provisional: RECHECK_CALLS calls later it is measured
    again and each path keeps its best time, for every layer of that shape."""
    from slimface.runtime import binary

    layer_path("auto")
    scripted = iter([binary.PathChoice("torch", "measured", 3.0, 2.0, final=False),
                     binary.PathChoice("kernel", "measured", 1.0, 2.5, final=False)])
    monkeypatch.setattr(binary, "measure_paths", lambda k, t: next(scripted))
    torch.manual_seed(0)
    a = deploy_layer(LAYERS["xnor_sign_in"]().eval())
    b = deploy_layer(LAYERS["xnor_sign_in"]().eval())
    x = torch.randn(2, 5, 9, 8)
    with torch.no_grad():
        a(x)
        assert a.path_choice.path == "torch" and not a.path_choice.final
        for _ in range(binary.RECHECK_CALLS):
            a(x)
        choice = a.path_choice
        assert choice.final and choice.path == "kernel" and "twice" in choice.reason
        assert (choice.kernel_ms, choice.torch_ms) == (1.0, 2.0)
        for _ in range(binary.RECHECK_CALLS + 1):
            b(x)  # adopts the merged choice without a third measurement
        assert b.path_choice is choice


def test_forced_paths_say_so_and_sign_words_always_take_the_kernel(layer_path):
    from slimface.runtime.binary import SignWords
    from slimface.runtime import kernel

    layer_path("torch")
    torch.manual_seed(0)
    layer = deploy_layer(LAYERS["xnor_sign_in"]().eval())
    x = torch.randn(1, 5, 6, 6)
    with torch.no_grad():
        layer(x)
        assert layer.path_choice.path == "torch" and "forced" in layer.path_choice.reason
        layer(SignWords(kernel.pack_signs(x.permute(0, 2, 3, 1).contiguous().numpy())))
    assert layer.path_choice.path == "kernel" and "sign words" in layer.path_choice.reason


def test_torch_path_of_a_fused_producer_writes_the_same_sign_words(layer_path):
    """A producer fused to write sign words writes them on either path."""
    torch.manual_seed(0)
    m = deploy_layer(LAYERS["xnor_sign_in"]().eval())
    m.emit_signs = True
    x = torch.randn(2, 5, 8, 7)
    words = {}
    with torch.no_grad():
        for path in ("kernel", "torch"):
            layer_path(path)
            words[path] = m(x).words
    assert words["kernel"].dtype == np.uint32
    assert np.array_equal(words["kernel"], words["torch"])


@pytest.mark.parametrize("iq", [SteSign(), None, DorefaActivation(2)])
def test_deploy_linear_matches_qat_linear(iq):
    torch.manual_seed(0)
    wq = XnorWeight() if not isinstance(iq, DorefaActivation) else DorefaWeight(3)
    layer = QuantLinear(37, 9, input_quantizer=iq, weight_quantizer=wq)
    x = torch.randn(4, 37)
    with torch.no_grad():
        torch.testing.assert_close(deploy_layer(layer)(x), layer(x), rtol=1e-5, atol=1e-5)


def test_batchnorm_folds_into_binary_layer_scale():
    net = quantize_model(_tiny_net(), "xnor").eval()
    _randomize_bn(net)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        ref = net(x)
        folded = to_inference(copy.deepcopy(net))
        out = folded(x)
    assert isinstance(folded[4], FoldedBatchNorm) and isinstance(folded[1], nn.BatchNorm2d)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _tiny_backbone(scheme: str = "xnor", **kw) -> nn.Module:
    from slimface.models import create_backbone

    torch.manual_seed(0)
    m = quantize_model(create_backbone("face_resnet_a", **TINY), scheme, **kw).eval()
    _randomize_bn(m)
    return m


@pytest.mark.parametrize("scheme,kw", [("xnor", {}), ("dorefa", {"w_bits": 2, "a_bits": 2}),
                                       ("xnor", {"a_bits": 32}), ("bnn", {})])
def test_deploy_file_round_trip_reproduces_embeddings(tmp_path, scheme, kw):
    m = _tiny_backbone(scheme, **kw)
    x = torch.rand(3, 3, 112, 96) * 255
    with torch.no_grad():
        ref = m(x)
    meta = save_deploy(copy.deepcopy(m), tmp_path / "q.slim", backbone="face_resnet_a",
                       backbone_kwargs=TINY)
    kinds = {v["kind"] for v in meta["layers"].values()}
    assert ("kbit" if scheme == "dorefa" else "binary") in kinds and "folded_bn" in kinds
    loaded = load_deploy(tmp_path / "q.slim")
    with torch.no_grad():
        out = loaded(x)
    cos = torch.nn.functional.cosine_similarity(out, ref)
    assert cos.min() >= 0.9999
    assert not any(isinstance(mod, (QuantConv2d, QuantLinear)) for mod in loaded.modules())


def test_loaded_xnor_model_fuses_sign_outputs_without_changing_results(tmp_path, layer_path):
    """Inside each residual unit the first conv feeds only the second: it writes sign words,
    and the model's output is identical to the unfused one."""
    from slimface.runtime.binary import BinaryConv2d

    layer_path("kernel")  # the same path for both runs: torch's rounds differently
    m = _tiny_backbone()
    save_deploy(m, tmp_path / "q.slim", backbone="face_resnet_a", backbone_kwargs=TINY)
    loaded = load_deploy(tmp_path / "q.slim")
    fused = [p for p, mod in loaded.named_modules() if getattr(mod, "emit_signs", False)]
    # face_resnet_a has 1 + 2 + 5 + 3 residual units of two convs: one fusion each
    assert len(fused) == 11 and all(p.endswith("body.0") for p in fused)
    x = torch.rand(2, 3, 112, 96) * 255
    with torch.no_grad():
        out = loaded(x)
        for mod in loaded.modules():
            if isinstance(mod, BinaryConv2d):
                mod.emit_signs = False
        plain = loaded(x)
    assert torch.equal(out, plain)


def test_binary_weights_take_one_bit_each_in_the_file(tmp_path):
    from safetensors.numpy import load_file

    m = _tiny_backbone()
    save_deploy(m, tmp_path / "q.slim", backbone="face_resnet_a", backbone_kwargs=TINY)
    tensors = load_file(str(tmp_path / "q.slim"))
    fc5 = m.fc5
    assert tensors["fc5/bits"].nbytes == (fc5.out_features * fc5.in_features + 7) // 8
    assert tensors["fc5/bits"].dtype == np.uint8


def test_half_float_weights_halve_the_float_layers_and_keep_the_embedding(tmp_path):
    """Kept-float conv/FC weights go to float16 (the binary layers and everything else stay
    as they were); the reloaded model computes in float32 and its embedding barely moves."""
    from safetensors.numpy import load_file

    m = _tiny_backbone(a_bits=32)
    x = torch.rand(3, 3, 112, 96) * 255
    with torch.no_grad():
        ref = m(x)
    save_deploy(copy.deepcopy(m), tmp_path / "f32.slim", backbone="face_resnet_a",
                backbone_kwargs=TINY)
    save_deploy(copy.deepcopy(m), tmp_path / "f16.slim", backbone="face_resnet_a",
                backbone_kwargs=TINY, half_float_weights=True)
    full, half = load_file(str(tmp_path / "f32.slim")), load_file(str(tmp_path / "f16.slim"))
    assert full.keys() == half.keys()
    changed = {k for k in full if full[k].dtype != half[k].dtype}
    key = "float/conv1a.conv.weight"  # face_resnet_a's one float conv
    assert changed == {key} and half[key].dtype == np.float16
    assert half[key].nbytes * 2 == full[key].nbytes
    loaded = load_deploy(tmp_path / "f16.slim")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        out = loaded(x)
    assert torch.nn.functional.cosine_similarity(out, ref).min() >= 0.9999


def test_corrupt_layer_metadata_is_a_model_file_error(tmp_path):
    from slimface.runtime.slimfile import load_slim, save_slim

    m = _tiny_backbone()
    save_deploy(m, tmp_path / "q.slim", backbone="face_resnet_a", backbone_kwargs=TINY)
    tensors, meta = load_slim(tmp_path / "q.slim")
    meta["layers"]["fc5"]["shape"] = [7, 7]
    save_slim(tmp_path / "bad.slim", tensors, meta)
    with pytest.raises(ModelFileError, match="fc5"):
        load_deploy(tmp_path / "bad.slim")


def test_cli_quantize_and_info_round_trip(tmp_path):
    from slimface.cli.main import main
    from slimface.models import create_backbone

    torch.manual_seed(0)
    float_model = create_backbone("face_resnet_a", **TINY)
    ckpt = tmp_path / "float.pt"
    torch.save({"architecture": {"backbone": "face_resnet_a", "kwargs": TINY},
                "state_dict": float_model.state_dict()}, ckpt)
    out, info_json = tmp_path / "q.slim", tmp_path / "info.json"
    assert main(["compress", "quantize", "--model", str(ckpt), "--scheme", "xnor",
                 "--out", str(out)]) == 0
    assert main(["info", "--model", str(out), "--json", str(info_json)]) == 0
    info = json.loads(info_json.read_text())
    assert info["quantized_bytes"] == sum(r["bytes"] for r in info["rows"])
    assert info["quantized_ratio"] > 20 and info["overall_ratio"] > 1
    assert {r["kind"] for r in info["rows"]} == {"binary"}
    half_out, half_json = tmp_path / "q16.slim", tmp_path / "info16.json"
    assert main(["compress", "quantize", "--model", str(ckpt), "--scheme", "xnor",
                 "--float16-float-weights", "--out", str(half_out),
                 "--json", str(half_json)]) == 0
    half = json.loads(half_json.read_text())
    conv = next(r for r in half["float_modules"] if r["layer"] == "conv1a.conv")
    assert conv["bits"] == 16 and conv["ratio"] == pytest.approx(2.0)
    assert half["float_bytes"] < info["float_bytes"]
    assert main(["info", "--model", str(out), "--paths", "--threads", "1", "--json", str(info_json)]) == 0
    info = json.loads(info_json.read_text())
    assert info["cpu_info"]["isa"] and info["cpu_info"]["cpu"]
    assert {r["layer"] for r in info["paths"]} == {r["layer"] for r in info["rows"]}
    for r in info["paths"]:  # fused consumers read sign words: the kernel, by necessity
        assert r["path"] in ("kernel", "torch") and r["reason"].split()[0] in (
            "measured:", "sign", "forced")


def test_cli_reports_user_errors_without_traceback(tmp_path, capsys):
    from slimface.cli.main import main

    assert main(["info", "--model", str(tmp_path / "missing.slim")]) == 1
    assert "missing.slim" in capsys.readouterr().err


@pytest.mark.parametrize("choice,want", [("py", "py:numpy kernel"), ("torch", "torch"),
                                         ("auto", "auto")])
def test_kernel_choice_env_var_is_honoured(choice, want):
    code = ("from slimface.runtime import kernel; impl = kernel.implementation(); "
            "print((impl + ' ') * impl.startswith('py') + kernel.layer_path())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SLIMFACE_KERNEL": choice}, timeout=60)
    assert out.stdout.strip() == want


def test_shipped_weights_load_by_bare_file_name():
    from slimface.runtime.loader import load_model

    model = load_model("slimface_mobile_binary.slim")  # in slimface/models/weights
    assert model.name == "slimface_mobile_binary.slim"


def test_cli_parity_compares_the_reloaded_file_on_real_lfw_crops(tmp_path, lfw_root):
    """`compress quantize --parity N`: the written file, reloaded (sign fusion included),
    embeds N aligned LFW crops as the in-memory model does."""
    from slimface.cli.main import main
    from slimface.models import create_backbone

    torch.manual_seed(0)
    kw = {"width": 0.125, "act_order": "conv_pool_bn_act", "dropout": 0.0}
    qat = quantize_model(create_backbone("face_resnet_a", **kw), "xnor").eval()
    _randomize_bn(qat)
    ckpt = tmp_path / "qat.pt"
    torch.save({"backbone": "quantized", "backbone_kwargs": {
        "base": "face_resnet_a", "base_kwargs": kw, "scheme": "xnor"},
        "state_dict": qat.state_dict()}, ckpt)
    summary = tmp_path / "q.json"
    assert main(["compress", "quantize", "--model", str(ckpt), "--scheme", "xnor",
                 "--out", str(tmp_path / "q.slim"), "--parity", "4",
                 "--data", str(lfw_root.parent), "--json", str(summary)]) == 0
    parity = json.loads(summary.read_text())["parity"]
    assert parity["n_crops"] == 4 and parity["min_cosine"] >= 0.9999
