"""Quantizer functions, modules and quantized layers (larq-style tests)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimface.quant.quantizers import (QUANTIZERS, DorefaActivation, DorefaWeight, QuantConv2d,
                                       QuantLinear, SteSign, XnorWeight, create_quantizer,
                                       dorefa_activation, dorefa_weight, quantize_k, ste_sign,
                                       xnor_weight)
from slimface.errors import ConfigError, UnknownNameError

# Exact zeros and values on the STE window's edges are where conventions break.
EDGE = torch.tensor([-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5])


def test_ste_sign_maps_zero_to_plus_one_and_never_returns_zero():
    out = ste_sign(EDGE)
    assert out.tolist() == [-1, -1, -1, 1, 1, 1, 1, 1]


def test_ste_sign_gradient_matches_reference_mask():
    x = EDGE.clone().requires_grad_(True)
    g = torch.arange(1.0, 9.0)
    ste_sign(x, clip_value=1.0).backward(g)
    assert torch.equal(x.grad, g * (EDGE.abs() <= 1.0))


def test_ste_sign_clip_value_widens_the_gradient_window():
    x = EDGE.clone().requires_grad_(True)
    ste_sign(x, clip_value=1.5).sum().backward()
    assert torch.equal(x.grad, (EDGE.abs() <= 1.5).float())


@pytest.mark.parametrize("name,cls", [("ste_sign", SteSign), ("sign", SteSign),
                                      ("xnor_weight", XnorWeight),
                                      ("dorefa_weight", DorefaWeight),
                                      ("dorefa_act", DorefaActivation)])
def test_registry_builds_quantizers_by_alias(name, cls):
    q = create_quantizer(name)
    assert isinstance(q, cls) and f"precision={q.precision}" in repr(q)


def test_registry_suggests_close_names():
    with pytest.raises(UnknownNameError, match="ste_sign"):
        QUANTIZERS.get("ste_sing")


@pytest.mark.parametrize("scale", ["channel", "layer"])
def test_xnor_weight_is_l1_scale_times_sign(scale):
    w = torch.randn(4, 3, 3, 3)
    q = XnorWeight(scale)(w)
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True) if scale == "channel" else w.abs().mean()
    torch.testing.assert_close(q, alpha * torch.where(w >= 0, 1.0, -1.0))
    signs, a = XnorWeight(scale).split(w)
    torch.testing.assert_close(signs * a.view(-1, 1, 1, 1), q)


def test_xnor_weight_gradient_has_ste_and_scale_terms():
    w = torch.tensor([[0.5, -2.0, 0.0, 0.25]], requires_grad=True)
    xnor_weight(w, per_channel=True).sum().backward()
    alpha, n = w.detach().abs().mean(), 4
    sign = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    # d alpha / dw = sign(w) / n with torch's sign(0) = 0 (the abs subgradient at 0)
    expected = alpha * (w.detach().abs() <= 1) + torch.sign(w.detach()) * sign.sum() / n
    torch.testing.assert_close(w.grad, expected)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_dorefa_weight_values_lie_on_the_k_bit_grid(bits):
    w = torch.randn(64, 9)
    q = dorefa_weight(w, bits)
    levels = (1 << bits) - 1
    codes = (q + 1) / 2 * levels
    torch.testing.assert_close(codes, codes.round(), atol=1e-5, rtol=0)
    assert q.min() >= -1 and q.max() <= 1


def test_dorefa_weight_one_bit_falls_back_to_xnor_rule():
    w = torch.randn(8, 5)
    torch.testing.assert_close(dorefa_weight(w, 1), w.abs().mean() * torch.where(w >= 0, 1., -1.))


def test_dorefa_weight_gradient_is_straight_through_the_rounding():
    w = torch.randn(6, 4, requires_grad=True)
    dorefa_weight(w, 3).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    t = torch.tanh(w2)
    (2 * (t / (2 * t.abs().max()) + 0.5) - 1).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad)


@pytest.mark.parametrize("h", ["tanh", "abs", "clip"])
def test_dorefa_activation_formula_and_range(h):
    x = torch.cat([EDGE, torch.randn(50)])
    q = dorefa_activation(x, 2, h)
    ref = {"tanh": 0.5 * (torch.tanh(x) + 1), "abs": x.abs().clamp(max=1),
           "clip": x.clamp(0, 1)}[h]
    torch.testing.assert_close(q, torch.round(ref * 3) / 3)


def test_quantize_k_has_identity_gradient():
    x = torch.rand(10, requires_grad=True)
    quantize_k(x, 2).sum().backward()
    assert torch.equal(x.grad, torch.ones(10))


@pytest.mark.parametrize("kwargs", [{"bits": 0}, {"bits": 9}, {"bits": 2, "h": "relu"}])
def test_bad_quantizer_settings_name_the_valid_choices(kwargs):
    with pytest.raises(ConfigError):
        DorefaActivation(**kwargs)


def test_bad_xnor_scale_and_beta_are_config_errors():
    with pytest.raises(ConfigError, match="channel"):
        XnorWeight("row")
    with pytest.raises(ConfigError, match="spatial"):
        SteSign(beta="pixel")


def _conv_pair(**kw):
    torch.manual_seed(0)
    ref = nn.Conv2d(3, 5, 3, stride=2, padding=1, **kw)
    q = QuantConv2d(3, 5, 3, stride=2, padding=1, **kw)
    q.load_state_dict(ref.state_dict())
    return ref, q


def test_quant_conv_without_quantizers_is_exactly_conv2d():
    ref, q = _conv_pair()
    x = torch.randn(2, 3, 9, 7, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, y = ref(x), q(x2)
    assert torch.equal(y_ref, y)
    y_ref.sum().backward()
    y.sum().backward()
    assert torch.equal(x.grad, x2.grad) and torch.equal(ref.weight.grad, q.weight.grad)


def test_quant_linear_without_quantizers_is_exactly_linear():
    torch.manual_seed(0)
    ref, q = nn.Linear(7, 3), QuantLinear(7, 3)
    q.load_state_dict(ref.state_dict())
    x = torch.randn(4, 7)
    assert torch.equal(ref(x), q(x))


def test_binary_conv_equals_float_conv_on_signed_padded_inputs():
    """Padding happens before the sign, so the border is sign(0) = +1."""
    torch.manual_seed(0)
    q = QuantConv2d(3, 4, 3, padding=1, bias=False, input_quantizer=SteSign(),
                    weight_quantizer=SteSign())
    x = torch.randn(2, 3, 6, 5)
    x[0, 0, 0, :3] = 0.0
    sx = torch.where(F.pad(x, (1, 1, 1, 1)) >= 0, 1.0, -1.0)
    ref = F.conv2d(sx, torch.where(q.weight >= 0, 1.0, -1.0))
    assert torch.equal(q(x), ref)


@pytest.mark.parametrize("beta", ["mean", "spatial"])
def test_xnor_activation_scale_beta(beta):
    torch.manual_seed(0)
    q = QuantConv2d(3, 4, 3, bias=False, input_quantizer=SteSign(beta=beta),
                    weight_quantizer=SteSign())
    x = torch.randn(2, 3, 6, 5)
    raw = F.conv2d(torch.where(x >= 0, 1.0, -1.0), torch.where(q.weight >= 0, 1.0, -1.0))
    k = (x.abs().mean(dim=(1, 2, 3), keepdim=True) if beta == "mean"
         else F.avg_pool2d(x.abs().mean(dim=1, keepdim=True), 3, 1))
    torch.testing.assert_close(q(x), raw * k)


def test_quantized_layers_pass_gradients_to_latent_weights():
    q = QuantLinear(6, 3, input_quantizer=SteSign(), weight_quantizer=XnorWeight())
    x = torch.randn(4, 6) * 0.5
    q(x).pow(2).sum().backward()
    assert q.weight.grad is not None and q.weight.grad.abs().sum() > 0
