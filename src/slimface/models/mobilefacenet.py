"""MobileFaceNet: MobileNetV2-style bottlenecks with a global depthwise conv.

Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile
Devices" (2018, https://arxiv.org/abs/1804.07573), Table 1:

    112x112x3  conv3x3 s2 64 -> depthwise conv3x3 64 -> bottlenecks (t, c, n, s) =
    (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)
    -> conv1x1 512 -> linear GDConv7x7 512 -> linear conv1x1 128 (+ BN)

PReLU everywhere except the linear layers. The 7x7 global depthwise conv replaces global
average pooling so centre and corner units get learned, different weights. About 0.99M
parameters and 0.22G multiply-accumulates at 1.0x width.

Options: ``se=True`` adds squeeze-and-excitation (Hu et al. 2017, as in the distilled student
of Wei et al. (2019), Efficient Face Recognition Algorithm Based on Mobile Device) inside every
bottleneck after the depthwise conv; ``width`` scales every channel count (not the embedding).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from slimface.errors import ModelError
from slimface.models._registry import register_backbone

# (expansion t, output channels c, repeats n, first stride s), paper Table 1
_BOTTLENECKS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def _ch(c: int, width: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` (MobileNet convention)."""
    if width == 1.0:
        return c
    return max(divisor, int(c * width + divisor / 2) // divisor * divisor)


class ConvBN(nn.Sequential):
    """conv -> BN (-> PReLU unless ``linear``)."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, p: int = 0, groups: int = 1,
                 linear: bool = False):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if not linear:
            layers.append(nn.PReLU(cout))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel gating: global pool -> FC (reduce) -> ReLU -> FC -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand -> 3x3 depthwise (stride s) [-> SE] -> linear 1x1."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, se: bool):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.expand = ConvBN(cin, hidden, 1)
        self.dw = ConvBN(hidden, hidden, 3, stride, 1, groups=hidden)
        self.se = SqueezeExcite(hidden) if se else nn.Identity()
        self.project = ConvBN(hidden, cout, 1, linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet backbone; ``forward`` maps RGB 0..255 (N,3,112,112) to the embedding."""

    template = "arcface112"
    first_layer_name = "conv1"
    keep_float = ("conv1.0",)

    def __init__(self, embedding_dim: int = 128, width: float = 1.0, se: bool = False,
                 bottlenecks: Sequence[tuple[int, int, int, int]] = _BOTTLENECKS,
                 input_size: tuple[int, int] = (112, 112)):
        super().__init__()
        if width <= 0:
            raise ModelError(f"width multiplier must be positive, got {width}")
        if tuple(input_size) != (112, 112):
            raise ModelError(f"MobileFaceNet's 7x7 GDConv needs 112x112 input, got {input_size}")
        self.input_size = (112, 112)
        self.embedding_dim = embedding_dim
        c64 = _ch(64, width)
        self.conv1 = ConvBN(3, c64, 3, 2, 1)
        self.dw_conv1 = ConvBN(c64, c64, 3, 1, 1, groups=c64)
        blocks: list[nn.Module] = []
        cin = c64
        for t, c, n, s in bottlenecks:
            cout = _ch(c, width)
            for i in range(n):
                blocks.append(Bottleneck(cin, cout, s if i == 0 else 1, t, se))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        c512 = _ch(512, width)
        self.conv2 = ConvBN(cin, c512, 1)
        self.gdconv = ConvBN(c512, c512, 7, 1, 0, groups=c512, linear=True)
        self.embedding = ConvBN(c512, embedding_dim, 1, linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 127.5) / 128.0
        x = self.blocks(self.dw_conv1(self.conv1(x)))
        x = self.embedding(self.gdconv(self.conv2(x)))
        return torch.flatten(x, 1)


def _create(default_width: float, **kwargs: Any) -> MobileFaceNet:
    kwargs.pop("pretrained", None)  # no bundled weights; accepted for a uniform factory call
    kwargs.pop("tag", None)
    kwargs.setdefault("width", default_width)
    return MobileFaceNet(**kwargs)


@register_backbone
def mobilefacenet(**kwargs: Any) -> MobileFaceNet:
    """MobileFaceNet 1.0x, 128-d embedding (``se=True``, ``width=``, ``embedding_dim=``)."""
    return _create(1.0, **kwargs)


@register_backbone
def mobilefacenet_050(**kwargs: Any) -> MobileFaceNet:
    """MobileFaceNet at 0.5x width (0.29M parameters; measured faster than 1.0x on x86)."""
    return _create(0.5, **kwargs)


@register_backbone
def mobilefacenet_se(**kwargs: Any) -> MobileFaceNet:
    """MobileFaceNet with squeeze-and-excitation in every bottleneck (as in Wei et al. 2019)."""
    kwargs.setdefault("se", True)
    return _create(1.0, **kwargs)
