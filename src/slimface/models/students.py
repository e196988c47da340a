"""Student backbones for distillation, and the shipped default model ``slimface-mobile``.

MobileFaceNet (https://arxiv.org/abs/1804.07573) is the reference student, but on x86 CPUs its
depthwise convolutions run ~5x below the dense-conv rate (measured on this project's CPUs in
ONNX Runtime: ~40 vs ~200 G multiply-adds/s): with fewer multiply-adds than the dlib teacher
it is still 4x slower. The ``slimnet`` family here is therefore a narrow *dense* residual net
(ResNet basic blocks, https://arxiv.org/abs/1512.03385) that spends few multiply-adds at high
resolution and ends in MobileFaceNet's global depthwise conv (GDConv) instead of global average
pooling. Optional squeeze-and-excitation (https://arxiv.org/abs/1709.01507) as in the
distilled mobile network of Wei et al. (2019), "Efficient Face Recognition Algorithm Based on
Mobile Device" (Modern Computer).

Every student carries a :class:`TeacherSpaceMap`: fixed buffers ``s * std + mean`` that map
the regressed, centred and rescaled target back into the teacher's embedding space, so a
distilled student's output is comparable (by cosine) with the teacher's own embeddings.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from slimface.errors import ModelFileError
from slimface.models._registry import register_backbone

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "slimface.models.weights"
SLIMFACE_MOBILE_FILE = "slimface_mobile.safetensors"
SLIMFACE_MOBILE_DLIB_FILE = "slimface_mobile_dlib.safetensors"


class TeacherSpaceMap(nn.Module):
    """Fixed affine map ``y = s * std + mean`` from the student's regression space to the teacher's.

    Distillation regresses ``(t - mean) / std`` because raw dlib targets share one dominant
    direction (the mean of the normalised embeddings has norm ~0.91); folding the inverse into
    the model keeps the shipped student's output in the teacher's space. Identity (std 1,
    mean 0) until :meth:`set_target_stats`.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("target_mean", torch.zeros(dim))
        self.register_buffer("target_std", torch.ones(dim))

    @torch.no_grad()
    def set_target_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.target_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.target_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s * self.target_std + self.target_mean


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features (SE, Hu et al. 2018)."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(w))))


def _act(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"act must be 'prelu' or 'relu', got {kind!r}")


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, act: str = "prelu",
                 groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), _act(act, cout))


class BasicBlock(nn.Module):
    """Two dense 3x3 convs with an identity (or strided 1x1) shortcut, optional SE."""

    def __init__(self, cin: int, cout: int, stride: int = 1, act: str = "prelu",
                 se: bool = False):
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, 3, stride, act)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(cout))
        self.se = SqueezeExcite(cout) if se else nn.Identity()
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout)))
        self.act = _act(act, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


class GDConvHead(nn.Module):
    """1x1 expansion, global depthwise conv over the whole map (MobileFaceNet), linear to the
    embedding. GDConv weighs centre and border positions differently, unlike average pooling."""

    def __init__(self, cin: int, feature_hw: tuple[int, int], expand: int, embedding_dim: int,
                 act: str):
        super().__init__()
        self.expand = ConvBNAct(cin, expand, 1, 1, act)
        self.gdconv = nn.Sequential(nn.Conv2d(expand, expand, feature_hw, groups=expand,
                                              bias=False), nn.BatchNorm2d(expand))
        self.fc = nn.Linear(expand, embedding_dim, bias=False)
        self.bn = nn.BatchNorm1d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.gdconv(self.expand(x)).flatten(1)))


@dataclass(frozen=True)
class SlimNetCfg:
    """Architecture of one ``slimnet`` variant (kept as data so files can name it)."""

    widths: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 2, 1)
    stem_width: int = 16
    stem_stride: int = 4          # 2 = one strided conv, 4 = two strided convs
    head_expand: int = 512
    act: str = "relu"
    se: bool = False


class SlimNet(nn.Module):
    """Narrow dense-conv residual face net: stem, stages of basic blocks (each stage halves
    the resolution), GDConv head, :class:`TeacherSpaceMap`.

    Input float32 NCHW RGB 0..255 (normalised inside), output the un-normalised embedding.
    """

    def __init__(self, cfg: SlimNetCfg = SlimNetCfg(), embedding_dim: int = 128,
                 input_size: tuple[int, int] = (112, 112), template: str = "arcface112"):
        super().__init__()
        if len(cfg.widths) != len(cfg.depths):
            raise ValueError(f"widths {cfg.widths} and depths {cfg.depths} differ in length")
        if cfg.stem_stride not in (2, 4):
            raise ValueError(f"stem_stride must be 2 or 4, got {cfg.stem_stride}")
        self.cfg = cfg
        self.template = template
        self.input_size = tuple(input_size)
        self.embedding_dim = embedding_dim
        self.register_buffer("pixel_mean", torch.full((1, 3, 1, 1), 127.5))
        self.register_buffer("pixel_scale", torch.full((1, 3, 1, 1), 1.0 / 128.0))
        stem: list[nn.Module] = [ConvBNAct(3, cfg.stem_width, 3, 2, cfg.act)]
        if cfg.stem_stride == 4:
            stem.append(ConvBNAct(cfg.stem_width, cfg.stem_width, 3, 2, cfg.act))
        self.stem = nn.Sequential(*stem)
        self.stages = nn.ModuleList(self._make_stages(cfg))
        hw = self._feature_hw(self.input_size, cfg)
        self.head = GDConvHead(cfg.widths[-1], hw, cfg.head_expand, embedding_dim, cfg.act)
        self.output_map = TeacherSpaceMap(embedding_dim)
        self._init_weights()

    @staticmethod
    def _make_stages(cfg: SlimNetCfg) -> list[nn.Module]:
        stages, cin = [], cfg.stem_width
        for i, (w, d) in enumerate(zip(cfg.widths, cfg.depths)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin if j == 0 else w, w, stride if j == 0 else 1, cfg.act,
                                 cfg.se) for j in range(d)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        return stages

    @staticmethod
    def _feature_hw(size: Sequence[int], cfg: SlimNetCfg) -> tuple[int, int]:
        h, w = size
        for _ in range(2 if cfg.stem_stride == 4 else 1):
            h, w = (h + 1) // 2, (w + 1) // 2
        for _ in range(len(cfg.widths) - 1):
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each residual branch (Goyal et al.)
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.conv2[1].weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem((x - self.pixel_mean) * self.pixel_scale)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """The regression output (the centred, rescaled target space used in training)."""
        return self.head(self.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_map(self.forward_raw(x))


# --------------------------------------------------------------------------- variants

SLIMNET_CFGS: dict[str, SlimNetCfg] = {
    # Three stages from 28x28 to 7x7 after a two-conv stride-4 stem; ReLU (fuses into the
    # conv in ONNX Runtime; PReLU cost ~40% more latency in the screen), SE off by default.
    "slimnet_s": SlimNetCfg((32, 64, 128), (1, 2, 2), 16, 4, 512),
    "slimnet_m": SlimNetCfg((32, 64, 128), (2, 3, 2), 32, 4, 384),
    "slimnet_l": SlimNetCfg((40, 80, 128), (2, 2, 2), 24, 4, 512),
    # slimnet_s plus one block at 28x28 and one at 14x14: same names for every slimnet_s
    # tensor, so a trained slimnet_s grows into it (the new blocks start as identity)
    "slimnet_s2": SlimNetCfg((32, 64, 128), (2, 3, 2), 16, 4, 512),
}


def _create_slimnet(variant: str, se: bool | None = None, act: str | None = None,
                    **kwargs: Any) -> SlimNet:
    kwargs.pop("pretrained", None)  # no bundled weights; accepted for a uniform factory call
    cfg = SLIMNET_CFGS[variant]
    overrides = {k: v for k, v in (("se", se), ("act", act)) if v is not None}
    if overrides:
        cfg = SlimNetCfg(**{**cfg.__dict__, **overrides})
    return SlimNet(cfg, **kwargs)


@register_backbone
def slimnet_s(**kwargs: Any) -> SlimNet:
    """1-2-2 blocks, 0.83M params, 69M MACs: the fastest candidate."""
    return _create_slimnet("slimnet_s", **kwargs)


@register_backbone
def slimnet_m(**kwargs: Any) -> SlimNet:
    """2-3-2 blocks, 0.90M params, 107M MACs: more depth at 28x28 and 14x14."""
    return _create_slimnet("slimnet_m", **kwargs)


@register_backbone
def slimnet_s2(**kwargs: Any) -> SlimNet:
    """slimnet_s deepened to 2-3-2 blocks, 0.93M params, 98M MACs (grown from slimnet_s)."""
    return _create_slimnet("slimnet_s2", **kwargs)


@register_backbone
def slimnet_l(**kwargs: Any) -> SlimNet:
    """Wider early stages (40-80-128), 2-2-2 blocks, 0.97M params, 118M MACs."""
    return _create_slimnet("slimnet_l", **kwargs)


# --------------------------------------------------------------------------- shipped model

SLIMFACE_MOBILE_ARCH = "slimnet_s2"
#: The default model's architecture arguments (what ``pretrained=False`` builds).
SLIMFACE_MOBILE_KWARGS: dict[str, Any] = {"embedding_dim": 192}


def load_student_weights(model: nn.Module, path: Any) -> dict[str, Any]:
    """Load a student safetensors file (tensors = state dict, JSON metadata) into ``model``."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("slimface", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own types for corrupt files
        raise ModelFileError(f"{path}: cannot read student weights ({exc})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelFileError(f"{path}: weights do not match {type(model).__name__} "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return meta


def _shipped_weights(file: str, name: str) -> Path:
    from slimface.models.weights import shipped_file

    path = shipped_file(file)
    if path is None:
        raise ModelFileError(f"{WEIGHTS_PACKAGE}/{file}: the shipped {name} weights are "
                             "missing from this install")
    return path


def load_student_file(path: Any, **kwargs: Any) -> nn.Module:
    """A student ``.safetensors`` file (``slimface train`` / ``compress distill --export``):
    the architecture named in its ``slimface`` metadata, built and loaded with its weights.

    ``kwargs`` override the file's architecture arguments. The metadata's ``template``,
    ``input_size`` and ``embedding_dim`` become attributes, the whole of it
    ``pretrained_meta``.
    """
    from safetensors import safe_open

    from slimface.models._registry import create_backbone

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("slimface", "{}"))
    except Exception as exc:  # safetensors raises its own types for corrupt files
        raise ModelFileError(f"{path}: cannot read student weights ({exc})") from None
    arch = meta.get("architecture") or {}
    if not isinstance(arch, dict) or "backbone" not in arch:
        raise ModelFileError(f"{path}: no architecture in the file's 'slimface' metadata "
                             f"(found keys {sorted(meta)})")
    model = create_backbone(arch["backbone"], **{**dict(arch.get("kwargs") or {}), **kwargs})
    load_student_weights(model, path)
    for key in ("template", "embedding_dim"):
        if key in meta:
            setattr(model, key, meta[key])
    if "input_size" in meta:
        model.input_size = tuple(meta["input_size"])
    model.eval()
    model.pretrained_meta = meta  # type: ignore[attr-defined]
    return model


def _shipped_student(file: str, name: str, arch_kwargs: dict[str, Any], pretrained: bool,
                     **kwargs: Any) -> SlimNet:
    """A shipped ``slimnet_s2`` student: its file's weights, or (``pretrained=False``) the bare
    architecture with the file's shape."""
    if pretrained:
        return load_student_file(_shipped_weights(file, name), **kwargs)
    model = _create_slimnet(SLIMFACE_MOBILE_ARCH, **{**arch_kwargs, **kwargs}).eval()
    model.pretrained_meta = {}  # type: ignore[attr-defined]
    return model


@register_backbone(aliases=("slimface-mobile",))
def slimface_mobile(pretrained: bool = True, **kwargs: Any) -> SlimNet:
    """The default model: ``slimnet_s2`` distilled by function matching from the imported
    MobileFaceNet (``mobilefacenet-tflite``), 192-d, in that teacher's embedding space.

    ``pretrained=True`` loads the weights committed in ``slimface/models/weights``.
    """
    return _shipped_student(SLIMFACE_MOBILE_FILE, "slimface-mobile", SLIMFACE_MOBILE_KWARGS,
                            pretrained, **kwargs)


@register_backbone(aliases=("slimface-mobile-dlib",))
def slimface_mobile_dlib(pretrained: bool = True, **kwargs: Any) -> SlimNet:
    """The earlier default: the same architecture distilled from the dlib ResNet (128-d, in
    dlib's embedding space). The default's distillation starts from it (``init_from``)."""
    return _shipped_student(SLIMFACE_MOBILE_DLIB_FILE, "slimface-mobile-dlib", {},
                            pretrained, **kwargs)

