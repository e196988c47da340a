"""Similarity alignment: fit landmarks onto a template and warp the crop.

The fit is Umeyama's least-squares similarity (rotation, uniform scale, translation; no
reflection), written here in NumPy so the geometry is ours and testable. Templates with
``geometry="dlib_chip"`` (``dlib150``) reproduce dlib's ``get_face_chip_details`` +
``extract_image_chip`` construction exactly: dlib fits the chip->image similarity, keeps its
angle and scale, builds a rectangle of ``size*scale - 1`` pixels around the image of the chip
centre, and maps the chip's corner pixels onto that rectangle's corners. That differs from
the plain fit by a fraction of a pixel, which matters when our chips feed dlib's own ResNet.

Large downscales are anti-aliased with a 2x Gaussian pyramid (``cv2.pyrDown``), as dlib does
with ``pyramid_down<2>``, so a face in a 12-megapixel photo does not alias in a 112 crop.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from slimface.align.templates import Template, get_template

#: Pixels (image) per crop pixel above which the image is halved before warping.
_PYRAMID_RATIO = 2.0

# CENTRED_FACE_5PT: the mean 5pt landmark layout in LFW deep-funneled images as fractions of
# (width, height), measured on LFW people in no pair (benchmarks/align_template_points.py).
# The no-face fallback assumes a face of that layout (LFW and similar protocol images centre
# the subject).
CENTRED_FACE_5PT = np.array([[0.4158, 0.4521], [0.5881, 0.4486], [0.5014, 0.5458],
                             [0.4304, 0.6296], [0.5758, 0.6270]], dtype=np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping ``src`` points onto ``dst`` (Umeyama 1991).

    Args:
        src: Nx2 points (N >= 2).
        dst: Nx2 points, same N.

    Returns:
        2x3 float64 matrix ``M`` with ``dst ~= M[:, :2] @ src + M[:, 2]``; rotation has
        determinant +1 (a mirror image is never produced).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two Nx2 point sets of equal shape with N >= 2, got "
                         f"{src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1.0
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / var_s) if var_s > 0 else 1.0
    out = np.empty((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, -a @ m[:, 2:3]])


def _dlib_chip_to_image(chip_pts: np.ndarray, landmarks: np.ndarray,
                        rows: int, cols: int) -> np.ndarray:
    """dlib's chip->image affine map for ``chip_details(chip_pts, landmarks, (rows, cols))``."""
    tform = similarity_transform(chip_pts, landmarks)
    v = tform[:, :2] @ np.array([1.0, 0.0])
    angle, scale = math.atan2(v[1], v[0]), math.hypot(v[0], v[1])
    centre = tform[:, :2] @ np.array([cols / 2.0, rows / 2.0]) + tform[:, 2]
    # centered_drect(centre, cols*scale, rows*scale) spans (cols*scale - 1) pixels, and
    # extract_image_chip maps chip pixel 0 .. cols-1 onto that span.
    sx = (cols * scale - 1.0) / (cols - 1.0)
    sy = (rows * scale - 1.0) / (rows - 1.0)
    c, s = math.cos(angle), math.sin(angle)
    lin = np.array([[c, -s], [s, c]]) @ np.diag([sx, sy])
    chip_centre = np.array([(cols - 1) / 2.0, (rows - 1) / 2.0])
    return np.hstack([lin, (centre - lin @ chip_centre)[:, None]])


def face_transform(landmarks: np.ndarray, template: Template | str,
                   kind: str = "5pt") -> np.ndarray:
    """The 2x3 image->crop matrix that puts ``landmarks`` (5x2, convention ``kind``) on
    ``template``."""
    t = get_template(template)
    pts = np.asarray(t.landmarks_for(kind), dtype=np.float64)
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if lm.shape != pts.shape:
        raise ValueError(f"expected {pts.shape[0]} landmarks of kind {kind!r}, got {lm.shape}")
    if t.geometry == "dlib_chip":
        rows, cols = t.base_size
        m = invert_affine(_dlib_chip_to_image(pts - t.offset, lm, rows, cols))
        m[:, 2] += t.offset
        return m
    return similarity_transform(lm, pts)


def warp_with_matrix(image: np.ndarray, m: np.ndarray, size: tuple[int, int],
                     truncate: bool = False) -> np.ndarray:
    """Bilinear warp of ``image`` by image->crop matrix ``m`` into ``size`` = (H, W); outside
    pixels are black. Downscales beyond 2x go through a Gaussian pyramid first.

    ``truncate=True`` interpolates in float and rounds down, as dlib's ``extract_image_chip``
    does (OpenCV's uint8 path rounds to nearest, 0.5 grey levels brighter on average)."""
    img = np.ascontiguousarray(image)
    m = np.array(m, dtype=np.float64)
    ratio = 1.0 / math.sqrt(abs(np.linalg.det(m[:, :2])))  # image pixels per crop pixel
    while ratio > _PYRAMID_RATIO and min(img.shape[:2]) >= 4:
        img = cv2.pyrDown(img)
        m[:, :2] *= 2.0  # pyrDown output pixel j sits on input pixel 2j
        ratio /= 2.0
    h, w = size
    if truncate:
        out = cv2.warpAffine(img.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        return np.clip(np.floor(out), 0, 255).astype(np.uint8)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def warp_face(image: np.ndarray, landmarks: np.ndarray, template: Template | str,
              kind: str = "5pt") -> np.ndarray:
    """Aligned HxWx3 uint8 crop of the face whose 5 landmarks (convention ``kind``) are given."""
    t = get_template(template)
    return warp_with_matrix(image, face_transform(landmarks, t, kind), t.size,
                            truncate=t.geometry == "dlib_chip")


def centred_landmarks(image_shape: tuple[int, ...]) -> np.ndarray:
    """Where a centred face's 5pt landmarks sit in an image of this shape (LFW layout)."""
    h, w = image_shape[:2]
    return (CENTRED_FACE_5PT * np.array([w, h])).astype(np.float32)


def centre_crop(image: np.ndarray, template: Template | str) -> np.ndarray:
    """The no-face fallback crop: assume the face sits where LFW-style images centre it."""
    t = get_template(template)
    return warp_face(image, centred_landmarks(image.shape), t, kind="5pt")
