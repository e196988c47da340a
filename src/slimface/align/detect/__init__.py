"""Face detectors with five landmarks, behind one registry.

``create_detector("retinaface")`` (default; RetinaFace-MobileNet0.25 run by onnxruntime) or
``create_detector("dlib")`` (dlib's HOG detector + 5-point shape predictor). Both return
:class:`Face` lists sorted by score, in the coordinates of the image they were given.

Tight crops (UTKFace 160x160, CelebA 89x109) leave no context around the face and both
detectors then miss it; ``pad="auto"`` (the default) pads images whose longer side is at most
:data:`AUTO_PAD_MAX_SIDE` pixels by 25% of each side with replicated borders before detecting
(without it RetinaFace missed most tight UTKFace and CelebA crops). ``pad=0.0`` turns it off, a number
forces that fraction. Landmarks are always returned in the unpadded image's coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from slimface._registry import Registry

#: Images with longer side <= this many pixels are padded by ``pad="auto"``.
AUTO_PAD_MAX_SIDE = 224
#: Fraction of each side added by ``pad="auto"``.
AUTO_PAD_FRACTION = 0.25


@dataclass
class Face:
    """One detection: box ``x1, y1, x2, y2``, score, 5x2 landmarks of convention ``kind``."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    kind: str

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


@dataclass
class Detector:
    """Base class: subclasses implement ``_detect`` on an already padded RGB uint8 image."""

    name: str = "detector"
    pad: float | str = "auto"
    config: dict = field(default_factory=dict)

    def detect(self, image: np.ndarray, pad: float | str | None = None) -> list[Face]:
        """Faces in an HxWx3 uint8 RGB image, best score first; ``pad`` overrides the
        detector's own (a region cut from a bigger image has real context and needs none)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect() wants an HxWx3 uint8 RGB array, got "
                             f"{image.dtype} {image.shape}")
        fraction = self.pad_fraction(image.shape, pad)
        if fraction > 0:
            py, px = (int(round(s * fraction)) for s in image.shape[:2])
            padded = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_REPLICATE)
            faces = self._detect(padded)
            shift = np.array([px, py], dtype=np.float32)
            for f in faces:
                f.box = (f.box - np.tile(shift, 2)).astype(np.float32)
                f.landmarks = (f.landmarks - shift).astype(np.float32)
        else:
            faces = self._detect(image)
        return sorted(faces, key=lambda f: -f.score)

    def pad_fraction(self, shape: tuple[int, ...], pad: float | str | None = None) -> float:
        pad = self.pad if pad is None else pad
        if pad == "auto":
            return AUTO_PAD_FRACTION if max(shape[:2]) <= AUTO_PAD_MAX_SIDE else 0.0
        return float(pad)

    def min_face_px(self) -> float:
        """Width of the smallest face found reliably, in pixels of the image given to
        :meth:`detect` (how coarse a copy the pipeline may detect on)."""
        return 16.0

    def signature(self) -> str:
        """Name + settings, for cache keys: a change of settings must not reuse old crops."""
        items = ",".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        return f"{self.name}(pad={self.pad},{items})"

    def _detect(self, image: np.ndarray) -> list[Face]:
        raise NotImplementedError


DETECTORS: Registry[Detector] = Registry("detector")


def create_detector(name: str = "retinaface", **kwargs) -> Detector:
    """Build a detector by name (``"retinaface"``, ``"dlib"``); None kwargs keep defaults."""
    return DETECTORS.create(name, **kwargs)


def list_detectors() -> list[str]:
    return DETECTORS.names()


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of kept boxes, best score first."""
    order = np.argsort(-scores)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


# Register the backends (import for side effects, after the registry exists).
from slimface.align.detect import dlib_hog, retinaface  # noqa: E402,F401
