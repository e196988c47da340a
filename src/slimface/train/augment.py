"""Inputs that look like users' photos, drawn per batch from ``(seed, step)`` only.

Every augmented view is cut from a padded canvas around the aligned face (the template
``.padded(pad)``): a random similarity transform (scale, rotation, shift) stands in for
noisy landmarks and detector jitter; then mirror, low resolution (down- then up-scaling),
Gaussian blur, JPEG re-compression, colour jitter and greyscale; finally mixup between faces.
Teacher and student are then fed the very same pixels (function matching: Beyer et al. 2022,
"Knowledge distillation: A good teacher is patient and consistent").
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


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


def _similarity(rng: np.random.Generator, canvas_hw: tuple[int, int], out_hw: tuple[int, int],
                cfg: AugmentConfig) -> np.ndarray:
    """2x3 affine from canvas to output: the canvas centre lands on the output centre."""
    ch, cw = canvas_hw
    oh, ow = out_hw
    s = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
    a = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    dx, dy = rng.uniform(-cfg.shift_px, cfg.shift_px, size=2)
    c, si = s * np.cos(a), s * np.sin(a)
    m = np.array([[c, -si, 0.0], [si, c, 0.0]])
    src_c = np.array([(cw - 1) / 2.0, (ch - 1) / 2.0])
    dst_c = np.array([(ow - 1) / 2.0 + dx, (oh - 1) / 2.0 + dy])
    m[:, 2] = dst_c - m[:, :2] @ src_c
    return m


def _photo_effects(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    h, w = img.shape[:2]
    if rng.random() < cfg.low_res:
        f = rng.uniform(0.25, 0.6)
        small = cv2.resize(img, (max(8, int(w * f)), max(8, int(h * f))),
                           interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.blur:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < cfg.jpeg:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img


def _colour(batch: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = batch.astype(np.float32)
    n = len(x)
    if cfg.colour > 0:
        bright = rng.uniform(-cfg.colour, cfg.colour, (n, 1, 1, 1)) * 255 * 0.5
        contrast = 1.0 + rng.uniform(-cfg.colour, cfg.colour, (n, 1, 1, 1))
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * contrast + mean + bright
        grey = x.mean(axis=3, keepdims=True)
        sat = 1.0 + rng.uniform(-cfg.colour / 2, cfg.colour / 2, (n, 1, 1, 1))
        x = grey + (x - grey) * sat
    to_grey = rng.random(n) < cfg.grey
    if to_grey.any():
        x[to_grey] = x[to_grey].mean(axis=3, keepdims=True)
    return x


def _mixup(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    n = len(x)
    mixed = rng.random(n) < cfg.mixup
    if not mixed.any():
        return x
    partner = rng.permutation(n)
    lam = rng.beta(cfg.mixup_alpha, cfg.mixup_alpha, n).astype(np.float32)
    lam = np.where(mixed, lam, 1.0).reshape(n, 1, 1, 1)
    return lam * x + (1.0 - lam) * x[partner]


def augment_batch(canvas: np.ndarray, out_hw: tuple[int, int], rng: np.random.Generator,
                  cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """``(B, Hc, Wc, 3)`` uint8 canvases -> ``(B, H, W, 3)`` uint8 augmented, mixed views."""
    out = np.empty((len(canvas), out_hw[0], out_hw[1], 3), dtype=np.uint8)
    for i, img in enumerate(canvas):
        m = _similarity(rng, img.shape[:2], out_hw, cfg)
        view = cv2.warpAffine(img, m, (out_hw[1], out_hw[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
        if rng.random() < cfg.flip:
            view = view[:, ::-1]
        out[i] = _photo_effects(np.ascontiguousarray(view), rng, cfg)
    x = _mixup(_colour(out, rng, cfg), rng, cfg)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
