"""Alignment templates: where the five landmarks of a face land in a crop.

A template names a crop size and, for each landmark convention (``kind``), the crop
coordinates the landmarks are mapped onto by a least-squares similarity transform
(:mod:`slimface.align.warp`). Conventions:

* ``"5pt"``: eye centres, nose tip, mouth corners, viewer's left first (RetinaFace, MTCNN,
  ArcFace).
* ``"dlib5"``: dlib's ``shape_predictor_5_face_landmarks`` order: viewer's-right eye outer and
  inner corner, viewer's-left eye outer and inner corner, bottom of the nose.

Templates:

* ``arcface112``: 112x112, the standard ArcFace/insightface five points.
* ``sphereface112x96``: 112 high x 96 wide, the SphereFace/CenterFace five points: the input
  of the center-loss Face-ResNet (Wen et al. (2016), A Discriminative Feature Learning Approach
  for Deep Face Recognition) and of its quantized version (Zhou et al. (2018), Face Recognition
  Method Based on Quantized Residual Convolutional Neural Networks). ``seed112x96`` is its
  former name: model files and scripts that say ``seed112x96`` still work, but it is not
  listed.
* ``dlib150``: the 150x150 chip dlib's ResNet expects, the geometry of dlib's
  ``get_face_chip(img, shape, 150, padding=0.25)``. Its ``dlib5`` points are dlib's own
  mean-face constants (``dlib/image_transforms/interpolation.h``, ``get_face_chip_details``)
  and its warp reproduces dlib's rectangle/angle construction (``geometry="dlib_chip"``).

The cross-convention points (``5pt`` on ``dlib150``; ``dlib5`` on the two 112 templates) were
measured, not guessed: ``benchmarks/align_template_points.py`` runs both detectors on LFW people
who appear in no pair of ``pairs.txt`` and averages one convention's landmarks in the crops
the other convention defines. Re-run it to reproduce the constants below.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from slimface._registry import Registry

LANDMARK_KINDS = ("5pt", "dlib5")


@dataclass(frozen=True)
class Template:
    """A crop size and the landmark positions (per landmark kind) in that crop.

    Attributes:
        name: registry name (``"arcface112"``; padded variants add ``"+pad8"``).
        size: crop ``(height, width)`` in pixels.
        points: landmark kind -> 5x2 float32 crop coordinates (pixel centres at integers).
        geometry: ``"similarity"`` (Umeyama fit of landmarks onto ``points``) or
            ``"dlib_chip"`` (dlib's chip construction, see :func:`slimface.align.warp`).
        offset: pixels of extra canvas on every side added by :meth:`padded`.
    """

    name: str
    size: tuple[int, int]
    points: dict[str, np.ndarray] = field(compare=False)
    geometry: str = "similarity"
    offset: int = 0

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    @property
    def base_size(self) -> tuple[int, int]:
        """The unpadded crop size the geometry is defined for."""
        return self.size[0] - 2 * self.offset, self.size[1] - 2 * self.offset

    def padded(self, pad: int) -> "Template":
        """The same face geometry on a canvas ``2*pad`` larger (for train-time random crops)."""
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if pad == 0:
            return self
        base = self.name.split("+pad")[0]
        total = self.offset + pad
        return dataclasses.replace(
            self, name=f"{base}+pad{total}", size=(self.size[0] + 2 * pad, self.size[1] + 2 * pad),
            points={k: (v + pad).astype(np.float32) for k, v in self.points.items()},
            offset=total)

    def landmarks_for(self, kind: str) -> np.ndarray:
        """The 5x2 crop points for landmark ``kind``; a ValueError lists the known kinds."""
        if kind not in self.points:
            raise ValueError(f"template {self.name!r} has no points for landmark kind {kind!r} "
                             f"(has: {', '.join(sorted(self.points))})")
        return self.points[kind]

    def fingerprint(self) -> str:
        """A short stable string identifying the geometry (cache keys)."""
        pts = ";".join(f"{k}:" + ",".join(f"{v:.4f}" for v in self.points[k].ravel())
                       for k in sorted(self.points))
        base, sep, pad = self.name.partition("+pad")
        name = _FINGERPRINT_NAMES.get(base, base) + sep + pad
        return f"{name}|{self.size}|{self.geometry}|{self.offset}|{pts}"


# Crop caches are keyed by the fingerprint: a renamed template keeps the key of its former
# name, so crops cached under that name stay valid.
_FINGERPRINT_NAMES = {"sphereface112x96": "seed112x96"}


TEMPLATES: Registry[Template] = Registry("template")


def get_template(name: str | Template) -> Template:
    """Template by registry name (``"arcface112"``...); a Template passes through.

    A ``+padN`` suffix (``"arcface112+pad8"``) returns ``get_template(base).padded(N)``.
    Unknown names raise :class:`~slimface.errors.UnknownNameError` (a ValueError) listing the
    known names.
    """
    if isinstance(name, Template):
        return name
    base, _, pad = name.partition("+pad")
    template = TEMPLATES.create(base)
    if pad:
        if not pad.isdigit():
            raise ValueError(f"bad template padding in {name!r}: expected e.g. 'arcface112+pad8'")
        template = template.padded(int(pad))
    return template


def list_templates() -> list[str]:
    """Template names (former names that still resolve are not listed)."""
    return TEMPLATES.names()


def canonical_template_name(name: str) -> str:
    """The current name of template ``name`` (a former name maps to its successor, ``+padN``
    is kept); a string that names no template comes back unchanged."""
    base, sep, pad = str(name).partition("+pad")
    if not base or base not in TEMPLATES:
        return str(name)
    return TEMPLATES.create(base).name + sep + pad


def _pts(rows: list[list[float]]) -> np.ndarray:
    arr = np.asarray(rows, dtype=np.float32)
    arr.setflags(write=False)
    return arr


# ArcFace (insightface ``arcface_torch/utils``: ``arcface_dst``), 112x112.
ARCFACE_5PT = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
               [41.5493, 92.3655], [70.7299, 92.2041]]

# SphereFace / CenterFace 96x112 reference points (112 high x 96 wide crop).
SPHEREFACE_5PT = [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
            [33.5493, 92.3655], [62.7299, 92.2041]]

# dlib get_face_chip_details, 5-part branch: normalised mean-face points, then
# (padding + p) / (2 * padding + 1) * size with padding 0.25, size 150.
DLIB_MEAN_FACE_5 = [[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                    [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                    [0.4901123135679, 0.6277975316475]]
DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25


def dlib_chip_points(size: int = DLIB_CHIP_SIZE, padding: float = DLIB_CHIP_PADDING) -> np.ndarray:
    """dlib's 5-point chip targets for ``get_face_chip(img, shape, size, padding)``."""
    mean = np.asarray(DLIB_MEAN_FACE_5, dtype=np.float64)
    return _pts(((padding + mean) / (2 * padding + 1) * size).tolist())


# Measured by `python benchmarks/align_template_points.py` (291 LFW non-pair images, dlib HOG
# at upsample=1; with today's upsample="auto" the script gives 293 images and every constant
# within 0.15 px of these). On 98 held-out images the dlib150 chip from RetinaFace 5pt
# landmarks vs the chip from dlib's own landmarks: mean pixel correlation 0.899, dlib ResNet
# embedding cosine mean 0.9945 (min 0.960).
DLIB150_5PT = [[46.48, 45.35], [102.19, 45.40], [73.50, 76.45], [50.04, 102.98],
               [96.92, 103.15]]
ARCFACE112_DLIB5 = [[79.92, 53.12], [66.10, 53.59], [30.97, 53.77], [44.95, 53.83],
                    [56.11, 79.81]]
SPHEREFACE112X96_DLIB5 = [[71.92, 53.12], [58.10, 53.59], [22.97, 53.77], [36.95, 53.83],
                    [48.11, 79.81]]


@TEMPLATES.register
def arcface112() -> Template:
    """112x112 ArcFace crop (insightface's five reference points)."""
    return Template("arcface112", (112, 112),
                    {"5pt": _pts(ARCFACE_5PT), "dlib5": _pts(ARCFACE112_DLIB5)})


@TEMPLATES.register(hidden_aliases=("seed112x96",))
def sphereface112x96() -> Template:
    """112x96 (HxW) SphereFace/CenterFace crop, the Face-ResNet input size."""
    return Template("sphereface112x96", (112, 96),
                    {"5pt": _pts(SPHEREFACE_5PT), "dlib5": _pts(SPHEREFACE112X96_DLIB5)})


@TEMPLATES.register
def dlib150() -> Template:
    """150x150 chip for dlib's ResNet, as ``dlib.get_face_chip(img, shape, 150, 0.25)``."""
    return Template("dlib150", (150, 150),
                    {"5pt": _pts(DLIB150_5PT), "dlib5": dlib_chip_points()},
                    geometry="dlib_chip")
