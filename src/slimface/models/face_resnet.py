"""Face-ResNet A / B / C: the center-loss paper's residual network as re-designed by Zhou et al.

Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition" (ECCV 2016,
https://github.com/ydwen/caffe-face) with the changes of Zhou et al. (2018), "Face Recognition
Method Based on Quantized Residual Convolutional Neural Networks" (Computer Systems &
Applications 27(8)): BatchNorm before every activation, dropout 0.5 after Fc5, center loss
removed, and deeper variants B and C.

How Table 1 is read (this reading reproduces Table 3's parameter counts within 0.5%):

* ``Conv1b, Pool1 | 3x3, 64`` is a 3x3 conv (no padding, stride 1) *followed by* a 2x2/2 max
  pool; likewise Conv2/Pool2, Conv3/Pool3, Conv4/Pool4. Conv1a has no pool.
* ``Conv2_x [2 convs] x n``: n residual units, each 2 (A, B) or 3 (C) 3x3 convs with padding 1
  and an identity shortcut added after the unit's last activation (caffe-face's eltwise sum).
* With 112x96 input the maps are 110x94 -> 108x92 -> 54x46 -> 52x44 -> 26x22 -> 24x20 ->
  12x10 -> 10x8 -> 5x4, so Fc5 sees 512*5*4 = 10240 inputs.
* Activations are PReLU (caffe-face's choice); ``act="relu"`` is available.
* Fc6 (the 10575-way classifier) is a head (``slimface.models.heads``), not part of the
  backbone; counted with bias it brings A/B/C to 4.36e7 / 4.55e7 / 5.68e7 parameters.

For binarized activations (XNOR-Net, model Q) Zhou et al. move the pool before the
activation: ``act_order="conv_bn_pool_act"``. Measured here, that order still starves a sign:
the 2x2 max of four zero-mean BN outputs is positive 15 times in 16 (pooled maps had mean
1.02, std 0.70 at initialisation), so ~94% of the next layer's input bits were +1 and a
binary-activation Face-ResNet could not even fit 32 random targets in 60 steps.
``"conv_pool_bn_act"`` is XNOR-Net's own block (pool on the conv output, then BN, then sign):
BN re-centres what the pool biased. Every order has the same modules, so weights load across
orders. Quantized layers can be swapped in with the ``conv_layer`` / ``linear_layer``
factories (signatures of :class:`torch.nn.Conv2d` / :class:`torch.nn.Linear`) or by module
replacement; ``first_layer_name`` / ``keep_float`` name the layers Zhou et al. keep in
floating point.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from slimface.errors import ModelError
from slimface.models._registry import register_backbone

ActOrder = Literal["conv_bn_act_pool", "conv_bn_pool_act", "conv_pool_bn_act"]
ACT_ORDERS: tuple[str, ...] = ("conv_bn_act_pool", "conv_bn_pool_act", "conv_pool_bn_act")
ConvFactory = Callable[..., nn.Module]

# (units per stage for conv2_x..conv5_x, convs per unit)
_VARIANTS: dict[str, tuple[tuple[int, int, int, int], int]] = {
    "a": ((1, 2, 5, 3), 2),
    "b": ((3, 4, 6, 3), 2),
    "c": ((3, 4, 6, 3), 3),
}


def _make_act(act: str, channels: int) -> nn.Module:
    if act == "prelu":
        return nn.PReLU(channels, init=0.25)
    if act == "relu":
        return nn.ReLU(inplace=False)
    raise ModelError(f"unknown activation {act!r}; choose 'prelu' or 'relu'")


class ConvStage(nn.Module):
    """An unpadded 3x3 conv -> BN -> activation, with an optional 2x2/2 max pool.

    ``act_order`` decides whether the pool comes after the activation (the float models),
    between BN and activation (Zhou et al.'s order for binarized activations) or before BN
    (XNOR-Net's, which keeps the signs balanced; see the module docstring).
    """

    def __init__(self, cin: int, cout: int, pool: bool, act: str, act_order: str,
                 conv_layer: ConvFactory):
        super().__init__()
        self.conv = conv_layer(cin, cout, kernel_size=3, stride=1, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = _make_act(act, cout)
        self.pool = nn.MaxPool2d(2, 2) if pool else nn.Identity()
        self.act_order = act_order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_order == "conv_pool_bn_act":
            return self.act(self.bn(self.pool(self.conv(x))))
        x = self.bn(self.conv(x))
        if self.act_order == "conv_bn_pool_act":
            return self.act(self.pool(x))
        return self.pool(self.act(x))


class ResidualUnit(nn.Module):
    """``n_convs`` padded 3x3 conv -> BN -> act layers plus the identity shortcut."""

    def __init__(self, channels: int, n_convs: int, act: str, conv_layer: ConvFactory):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_convs):
            layers += [conv_layer(channels, channels, kernel_size=3, stride=1, padding=1,
                                  bias=False),
                       nn.BatchNorm2d(channels), _make_act(act, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FaceResNet(nn.Module):
    """Face-ResNet backbone; ``forward`` maps RGB 0..255 (N,3,112,96) to the 1024-d Fc5."""

    template = "sphereface112x96"
    first_layer_name = "conv1a"
    keep_float = ("conv1a.conv",)  # Fc6 (the head) is also kept float by Zhou et al.

    def __init__(self, units: Sequence[int] = (1, 2, 5, 3), convs_per_unit: int = 2,
                 embedding_dim: int = 1024, dropout: float = 0.5, act: str = "prelu",
                 act_order: ActOrder = "conv_bn_act_pool",
                 conv_layer: ConvFactory = nn.Conv2d, linear_layer: ConvFactory = nn.Linear,
                 width: float = 1.0,
                 input_size: tuple[int, int] = (112, 96)):
        super().__init__()
        if act_order not in ACT_ORDERS:
            raise ModelError(f"unknown act_order {act_order!r}; choose one of {ACT_ORDERS}")
        if len(units) != 4:
            raise ModelError(f"units must name 4 stages (conv2_x..conv5_x), got {list(units)}")
        ch = [max(1, int(round(c * width))) for c in (32, 64, 128, 256, 512)]
        self.input_size = tuple(input_size)
        self.embedding_dim = embedding_dim
        self.act_order = act_order
        kw = dict(act=act, act_order=act_order, conv_layer=conv_layer)
        self.conv1a = ConvStage(3, ch[0], pool=False, **kw)
        self.conv1b = ConvStage(ch[0], ch[1], pool=True, **kw)
        self.conv2_x = self._stage(ch[1], units[0], convs_per_unit, act, conv_layer)
        self.conv2 = ConvStage(ch[1], ch[2], pool=True, **kw)
        self.conv3_x = self._stage(ch[2], units[1], convs_per_unit, act, conv_layer)
        self.conv3 = ConvStage(ch[2], ch[3], pool=True, **kw)
        self.conv4_x = self._stage(ch[3], units[2], convs_per_unit, act, conv_layer)
        self.conv4 = ConvStage(ch[3], ch[4], pool=True, **kw)
        self.conv5_x = self._stage(ch[4], units[3], convs_per_unit, act, conv_layer)
        h, w = self._final_map_size(self.input_size)
        self.fc5 = linear_layer(ch[4] * h * w, embedding_dim)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def _stage(channels: int, n_units: int, n_convs: int, act: str,
               conv_layer: ConvFactory) -> nn.Sequential:
        return nn.Sequential(*(ResidualUnit(channels, n_convs, act, conv_layer)
                               for _ in range(n_units)))

    @staticmethod
    def _final_map_size(size: tuple[int, int]) -> tuple[int, int]:
        """Spatial size after conv1a, then four (unpadded conv, pool) steps."""
        h, w = size[0] - 2, size[1] - 2
        for _ in range(4):
            h, w = (h - 2) // 2, (w - 2) // 2
        if h < 1 or w < 1:
            raise ModelError(f"input_size {size} is too small for Face-ResNet (112x96 expected)")
        return h, w

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv trunk on normalised input: (N, 512, 5, 4) at 112x96."""
        for name in ("conv1a", "conv1b", "conv2_x", "conv2", "conv3_x", "conv3", "conv4_x",
                     "conv4", "conv5_x"):
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 127.5) / 128.0
        x = self.fc5(torch.flatten(self.features(x), 1))
        # Zhou et al.: dropout after Fc5; the embedding is Fc5's output (identity in eval mode).
        return self.dropout(x)


def _create_face_resnet(variant: str, **kwargs: Any) -> FaceResNet:
    units, n_convs = _VARIANTS[variant]
    kwargs.pop("pretrained", None)  # no released weights for these; accepted for uniformity
    kwargs.pop("tag", None)
    return FaceResNet(units=units, convs_per_unit=n_convs, **kwargs)


@register_backbone
def face_resnet_a(**kwargs: Any) -> FaceResNet:
    """Model A (Zhou et al. 2018, Table 1): Face-ResNet + BN + dropout, 2-conv units x
    (1, 2, 5, 3)."""
    return _create_face_resnet("a", **kwargs)


@register_backbone
def face_resnet_b(**kwargs: Any) -> FaceResNet:
    """Model B: 2-conv units x (3, 4, 6, 3)."""
    return _create_face_resnet("b", **kwargs)


@register_backbone
def face_resnet_c(**kwargs: Any) -> FaceResNet:
    """Model C: 3-conv units x (3, 4, 6, 3); the float model Zhou et al. (2018) binarize (Q)."""
    return _create_face_resnet("c", **kwargs)
