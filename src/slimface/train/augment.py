"""Inputs that look like users' photos, drawn per batch from ``(seed, step)`` only.

Every augmented view is cut from a padded canvas around the aligned face (the template
``.padded(pad)``): a random similarity transform (scale, rotation, shift) stands in for
noisy landmarks and detector jitter; then mirror, low resolution (down- then up-scaling),
Gaussian blur, JPEG re-compression, colour jitter and greyscale; finally mixup between faces.
Teacher and student are then fed the very same pixels (function matching: Beyer et al. 2022,
"Knowledge distillation: A good teacher is patient and consistent").

The random draws (:func:`draw_views`) are separate from the pixels (:func:`render_views`), so
one draw can render two views of the same faces: :func:`augment_pair` renders the student's
view from its canvas and the teacher's view from a canvas on the teacher's own template (both
warped from the same landmarks). The teacher's warp is the student's augmentation carried
into the teacher's frame, so both views show the same face region, mirrored alike, with the
same photo effects (blur and resolution scaled to the teacher's pixels), colour and mixup.
:func:`augment_views` renders one draw on any number of templates (an ensemble teacher whose
members expect different crops).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from slimface.align.warp import crop_ratio


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; the defaults are the training recipe."""

    scale: float = 0.10          # face scale in [1 - s, 1 + s]
    rotate_deg: float = 10.0
    shift_px: float = 6.0
    flip: float = 0.5
    low_res: float = 0.2         # probability; factor in [0.25, 0.6]
    blur: float = 0.1            # probability; sigma in [0.5, 1.5]
    jpeg: float = 0.25           # probability; quality in [30, 90]
    colour: float = 0.3          # brightness/contrast +-colour, saturation +-colour/2
    grey: float = 0.1
    mixup: float = 0.5           # fraction of the batch mixed with another face
    mixup_alpha: float = 1.0     # lambda ~ Beta(alpha, alpha)


@dataclass
class ViewDraw:
    """The random part of one augmented batch (``n`` views); 0 means an effect is off.

    Angles are in radians, shifts in output pixels, ``low_res`` the down-scaling factor,
    ``blur`` the Gaussian sigma in pixels, ``jpeg`` the quality.
    """

    scale: np.ndarray
    angle: np.ndarray
    shift: np.ndarray            # (n, 2): dx, dy
    flip: np.ndarray
    low_res: np.ndarray
    blur: np.ndarray
    jpeg: np.ndarray
    bright: np.ndarray | None    # (n, 1, 1, 1) each, None when colour is off
    contrast: np.ndarray | None
    saturation: np.ndarray | None
    grey: np.ndarray
    partner: np.ndarray | None   # mixup partner per row, None when no row is mixed
    lam: np.ndarray | None       # (n, 1, 1, 1), 1.0 for rows that are not mixed


def draw_views(rng: np.random.Generator, n: int, cfg: AugmentConfig = AugmentConfig()
               ) -> ViewDraw:
    """Every random number of a batch of ``n`` views, in a fixed order."""
    scale, angle, shift = np.empty(n), np.empty(n), np.empty((n, 2))
    flip = np.zeros(n, bool)
    low_res, blur = np.zeros(n), np.zeros(n)
    jpeg = np.zeros(n, np.int64)
    for i in range(n):
        scale[i] = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
        angle[i] = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
        shift[i] = rng.uniform(-cfg.shift_px, cfg.shift_px, size=2)
        flip[i] = rng.random() < cfg.flip
        if rng.random() < cfg.low_res:
            low_res[i] = rng.uniform(0.25, 0.6)
        if rng.random() < cfg.blur:
            blur[i] = rng.uniform(0.5, 1.5)
        if rng.random() < cfg.jpeg:
            jpeg[i] = int(rng.integers(30, 91))
    bright = contrast = saturation = None
    if cfg.colour > 0:
        bright = rng.uniform(-cfg.colour, cfg.colour, (n, 1, 1, 1)) * 255 * 0.5
        contrast = 1.0 + rng.uniform(-cfg.colour, cfg.colour, (n, 1, 1, 1))
        saturation = 1.0 + rng.uniform(-cfg.colour / 2, cfg.colour / 2, (n, 1, 1, 1))
    grey = rng.random(n) < cfg.grey
    mixed = rng.random(n) < cfg.mixup
    partner = lam = None
    if mixed.any():
        partner = rng.permutation(n)
        lam = rng.beta(cfg.mixup_alpha, cfg.mixup_alpha, n).astype(np.float32)
        lam = np.where(mixed, lam, 1.0).reshape(n, 1, 1, 1)
    return ViewDraw(scale, angle, shift, flip, low_res, blur, jpeg, bright, contrast,
                    saturation, grey, partner, lam)


def view_matrix(draw: ViewDraw, i: int, canvas_hw: tuple[int, int],
                out_hw: tuple[int, int]) -> np.ndarray:
    """2x3 affine from canvas to view ``i`` (before mirroring): the canvas centre lands on the
    output centre, shifted, scaled and rotated about it."""
    ch, cw = canvas_hw
    oh, ow = out_hw
    s, a = draw.scale[i], draw.angle[i]
    c, si = s * np.cos(a), s * np.sin(a)
    m = np.array([[c, -si, 0.0], [si, c, 0.0]])
    src_c = np.array([(cw - 1) / 2.0, (ch - 1) / 2.0])
    dst_c = np.array([(ow - 1) / 2.0 + draw.shift[i, 0], (oh - 1) / 2.0 + draw.shift[i, 1]])
    m[:, 2] = dst_c - m[:, :2] @ src_c
    return m


def _photo_effects(img: np.ndarray, draw: ViewDraw, i: int, pixel_scale: float = 1.0
                   ) -> np.ndarray:
    """Low resolution, blur and JPEG of view ``i``; ``pixel_scale`` is this view's pixels per
    pixel of the view the draw was made for (blur and resolution keep their physical size)."""
    h, w = img.shape[:2]
    f = draw.low_res[i] / pixel_scale
    if draw.low_res[i] and f < 1.0:
        small = cv2.resize(img, (max(8, int(w * f)), max(8, int(h * f))),
                           interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if draw.blur[i]:
        img = cv2.GaussianBlur(img, (0, 0), draw.blur[i] * pixel_scale)
    if draw.jpeg[i]:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(draw.jpeg[i])])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img


def _colour_and_mix(batch: np.ndarray, draw: ViewDraw) -> np.ndarray:
    x = batch.astype(np.float32)
    if draw.bright is not None:
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * draw.contrast + mean + draw.bright
        grey = x.mean(axis=3, keepdims=True)
        x = grey + (x - grey) * draw.saturation
    if draw.grey.any():
        x[draw.grey] = x[draw.grey].mean(axis=3, keepdims=True)
    if draw.partner is not None:
        x = draw.lam * x + (1.0 - draw.lam) * x[draw.partner]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def render_views(canvas: np.ndarray, draw: ViewDraw, out_hw: tuple[int, int]) -> np.ndarray:
    """``(B, Hc, Wc, 3)`` uint8 canvases -> ``(B, H, W, 3)`` uint8 views of ``draw``."""
    out = np.empty((len(canvas), out_hw[0], out_hw[1], 3), dtype=np.uint8)
    for i, img in enumerate(canvas):
        m = view_matrix(draw, i, img.shape[:2], out_hw)
        view = cv2.warpAffine(img, m, (out_hw[1], out_hw[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
        if draw.flip[i]:
            view = view[:, ::-1]
        out[i] = _photo_effects(np.ascontiguousarray(view), draw, i)
    return _colour_and_mix(out, draw)


def augment_batch(canvas: np.ndarray, out_hw: tuple[int, int], rng: np.random.Generator,
                  cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """``(B, Hc, Wc, 3)`` uint8 canvases -> ``(B, H, W, 3)`` uint8 augmented, mixed views."""
    return render_views(canvas, draw_views(rng, len(canvas), cfg), out_hw)


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=64)
def _centre_crop(canvas_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """3x3 map of the un-augmented view (the canvas's centre crop): one per pair of sizes,
    not one per face and step."""
    none = ViewDraw(np.ones(1), np.zeros(1), np.zeros((1, 2)), *([None] * 10))
    m = _h(view_matrix(none, 0, canvas_hw, out_hw))
    m.setflags(write=False)
    return m


def teacher_view_matrix(draw: ViewDraw, i: int, to_teacher: np.ndarray,
                        canvas_hw: tuple[int, int], out_hw: tuple[int, int],
                        teacher_canvas_hw: tuple[int, int],
                        teacher_hw: tuple[int, int]) -> np.ndarray:
    """2x3 affine from the teacher's canvas to the teacher's view of draw ``i``.

    ``to_teacher`` maps student-canvas coordinates to teacher-canvas coordinates (both
    canvases warped from the same landmarks). The student's view is ``F S`` of its canvas
    (``S`` the similarity, ``F`` the mirror); ``C = O_t K O_s^-1`` carries the student's
    un-augmented view onto the teacher's (``O`` the centre crops, ``K = to_teacher``), so the
    teacher's view is ``C F S K^-1`` of its canvas: with no augmentation it is exactly the
    teacher's own centre crop, and every pixel of it shows the image point the student's view
    shows at ``C^-1`` of that pixel.
    """
    k = _h(to_teacher)
    o_s = _centre_crop(tuple(canvas_hw), tuple(out_hw))
    o_t = _centre_crop(tuple(teacher_canvas_hw), tuple(teacher_hw))
    s = _h(view_matrix(draw, i, canvas_hw, out_hw))
    f = np.eye(3)
    if draw.flip[i]:
        f = np.array([[-1.0, 0.0, out_hw[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return (o_t @ k @ np.linalg.inv(o_s) @ f @ s @ np.linalg.inv(k))[:2]


def _render_teacher_views(canvas_hw: tuple[int, int], out_hw: tuple[int, int], draw: ViewDraw,
                          teacher_canvas: np.ndarray, to_teacher: np.ndarray,
                          teacher_hw: tuple[int, int]) -> np.ndarray:
    """The teacher's views of ``draw`` (see :func:`teacher_view_matrix`)."""
    out = np.empty((len(teacher_canvas), teacher_hw[0], teacher_hw[1], 3), dtype=np.uint8)
    for i, img in enumerate(teacher_canvas):
        m = teacher_view_matrix(draw, i, to_teacher[i], canvas_hw, out_hw, img.shape[:2],
                                teacher_hw)
        view = cv2.warpAffine(img, m, (teacher_hw[1], teacher_hw[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
        pixel_scale = 1.0 / crop_ratio(to_teacher[i])  # teacher pixels per student pixel
        out[i] = _photo_effects(view, draw, i, pixel_scale)
    return _colour_and_mix(out, draw)


def augment_views(canvas: np.ndarray, out_hw: tuple[int, int],
                  others: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]],
                  rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One draw, one view per template: the student's (as :func:`augment_batch`) and one on
    every other template (as the teacher's view of :func:`augment_pair`).

    Args:
        canvas: ``(B, Hc, Wc, 3)`` student-template canvases.
        out_hw: the student's input size.
        others: per template, ``(canvases, to_template, view_hw)``: ``(B, Htc, Wtc, 3)``
            canvases of the same faces on that template, ``(B, 2, 3)`` student-canvas ->
            that canvas's coordinates per face, and the view size on it.

    Returns:
        The student's views and, per template of ``others``, the same draw in that frame.
    """
    draw = draw_views(rng, len(canvas), cfg)
    student = render_views(canvas, draw, out_hw)
    return student, {name: _render_teacher_views(canvas.shape[1:3], out_hw, draw, tcanvas,
                                                 to_template, hw)
                     for name, (tcanvas, to_template, hw) in others.items()}


def augment_pair(canvas: np.ndarray, teacher_canvas: np.ndarray, to_teacher: np.ndarray,
                 out_hw: tuple[int, int], teacher_hw: tuple[int, int],
                 rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One draw, two views: the student's (as :func:`augment_batch`) and the teacher's.

    Args:
        canvas: ``(B, Hc, Wc, 3)`` student-template canvases.
        teacher_canvas: ``(B, Htc, Wtc, 3)`` teacher-template canvases of the same faces.
        to_teacher: ``(B, 2, 3)`` student-canvas -> teacher-canvas coordinates per face.
        out_hw: the student's input size; teacher_hw: the teacher's.
    """
    student, views = augment_views(canvas, out_hw,
                                   {"teacher": (teacher_canvas, to_teacher, teacher_hw)}, rng,
                                   cfg)
    return student, views["teacher"]
