"""Backbone zoo: Face-ResNet's Table 3 parameters (Zhou et al. 2018), MobileFaceNet's size,
the backbone contract."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from slimface.errors import ModelError
from slimface.models import create_backbone
from slimface.models.face_resnet import FaceResNet
from slimface.models.profile import count_macs, count_params, profile_model

FC6 = 1024 * 10575 + 10575  # the 10575-way Fc6 with bias, which Table 3 counts

# Table 3 of Zhou et al. (2018), "Face Recognition Method Based on Quantized Residual
# Convolutional Neural Networks": parameters including Fc6.
TABLE3_PARAMS = {"face_resnet_a": 4.36e7, "face_resnet_b": 4.55e7, "face_resnet_c": 5.68e7}
MY_BACKBONES = ("face_resnet_a", "face_resnet_b", "face_resnet_c", "mobilefacenet",
                "mobilefacenet_050", "mobilefacenet_se")


@pytest.mark.parametrize("name,target", sorted(TABLE3_PARAMS.items()))
def test_face_resnet_params_match_table3_within_half_a_percent(name, target):
    params = count_params(create_backbone(name)) + FC6
    assert abs(params - target) / target < 0.005


def test_face_resnet_a_macs_match_the_table1_count():
    # Counting the multiply-accumulates of the paper's Table 1 gives about 2.13e9 for A (with
    # Fc6); the paper's own op count (2.21e9) follows a convention it does not state.
    macs = count_macs(create_backbone("face_resnet_a"), (112, 96)) + 1024 * 10575
    assert abs(macs - 2.13e9) / 2.13e9 < 0.005


def test_mobilefacenet_is_about_1m_params_and_0_22g_macs():
    prof = profile_model(create_backbone("mobilefacenet"))
    assert 0.95e6 < prof["params"] < 1.05e6
    assert 0.22e9 <= prof["macs"] <= 0.23e9


@pytest.mark.parametrize("name", MY_BACKBONES)
def test_backbone_contract(name):
    model = create_backbone(name).eval()
    x = torch.rand(1, 3, *model.input_size) * 255
    with torch.no_grad():
        emb = model(x)
    assert emb.shape == (1, model.embedding_dim) and emb.dtype == torch.float32
    assert model.template in ("sphereface112x96", "arcface112")
    assert hasattr(model, model.first_layer_name)


def test_model_file_naming_the_former_template_seed112x96_loads_and_aligns():
    import numpy as np

    from slimface.align.warp import centre_crop
    from slimface.models.inference import embed_crops
    from slimface.runtime.loader import load_model

    model = load_model("q_face_resnet_small.slim")  # shipped; its metadata says seed112x96
    assert model.template == "seed112x96"
    crop = centre_crop(np.full((150, 150, 3), 128, np.uint8), model.template)
    assert crop.shape[:2] == tuple(model.input_size)
    emb = embed_crops(model, crop[None])
    assert emb.shape == (1, model.embedding_dim) and np.isfinite(emb).all()


def test_width_multiplier_shrinks_mobilefacenet():
    assert count_params(create_backbone("mobilefacenet", width=0.5)) < 0.35e6


def test_se_adds_parameters_but_almost_no_macs():
    plain = profile_model(create_backbone("mobilefacenet"))
    se = profile_model(create_backbone("mobilefacenet", se=True))
    assert se["params"] > plain["params"] and se["macs"] < plain["macs"] * 1.01


def test_pool_before_activation_order_for_binarized_activations():
    model = create_backbone("face_resnet_a", act_order="conv_bn_pool_act", width=0.125).eval()
    stage = model.conv1b
    x = torch.randn(1, 4, 12, 12)
    y = stage.act(stage.pool(stage.bn(stage.conv(x))))
    torch.testing.assert_close(stage(x), y)
    with pytest.raises(ModelError, match="act_order"):
        FaceResNet(act_order="pool_first")


def test_conv_layer_factory_builds_every_conv():
    built = []

    class MarkedConv(nn.Conv2d):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            built.append(self)

    model = create_backbone("face_resnet_a", conv_layer=MarkedConv, width=0.125)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(built) == len(convs) == 2 + 2 * (1 + 2 + 5 + 3) + 3


def test_counter_counts_grouped_convs_and_linears():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False), nn.Flatten(),
                          nn.Linear(8 * 5 * 5, 3))
    # conv: 5*5*8 outputs x (4/2)*3*3; linear: 200*3
    assert count_macs(model, (5, 5), channels=4) == 5 * 5 * 8 * 2 * 9 + 200 * 3
    assert count_params(model) == 8 * 2 * 9 + 200 * 3 + 3


def test_dropout_after_fc5_is_only_active_in_training():
    model = create_backbone("face_resnet_a", width=0.125)
    x = torch.rand(2, 3, 112, 96) * 255
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5


def test_pool_before_bn_keeps_signs_balanced_and_weights_load_across_orders():
    """With BN after the pool (XNOR-Net's block) a pooled map is centred again; with BN
    before it (Zhou et al. 2018's order) the max of four zero-mean values is positive ~15/16
    times."""
    torch.manual_seed(0)
    x = torch.rand(8, 3, 112, 96) * 255
    paper = create_backbone("face_resnet_a", act_order="conv_bn_pool_act", width=0.25).train()
    xnor = create_backbone("face_resnet_a", act_order="conv_pool_bn_act", width=0.25).train()
    xnor.load_state_dict(paper.state_dict())
    stem = (x - 127.5) / 128.0
    with torch.no_grad():
        pooled_paper = paper.conv1b(paper.conv1a(stem))
        pooled_xnor = xnor.conv1b(xnor.conv1a(stem))
    # PReLU keeps the sign, so the share of positive values is the share of +1 bits
    assert (pooled_paper > 0).float().mean() > 0.85
    assert abs((pooled_xnor > 0).float().mean().item() - 0.5) < 0.1
