"""A photo to align, decoded at the scales the pipeline asks for.

Detection wants a copy of about :data:`DETECT_SIDE` pixels on the long side, and the warp
wants the face at about the crop's own scale; neither needs every pixel of a 12-megapixel
photo. :meth:`Photo.open` decodes a JPEG once, in the DCT domain, at the coarsest scale
(1/2, 1/4, 1/8) that keeps :data:`DECODE_SIDE` pixels on the long side (the *detection
level*; :mod:`slimface.io.decode`), and :meth:`Photo.level_for` decodes a finer level
later only for a face too small for the levels at hand. Images smaller than twice
:data:`DECODE_SIDE` (LFW's 250x250 among them) and files that are not plain JPEGs are
decoded once, in full, by :func:`slimface.io.image.decode_image`, as before.

Faces and landmarks are always in full-resolution, upright pixel coordinates; every
:class:`Level` carries the affine map of its pixel centres onto them. A JPEG's levels keep
the stored orientation (the map does the EXIF turn, and so does the warp, for free); only
the small copies a detector sees are turned upright (:meth:`Level.upright`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from slimface.align.stages import stage
from slimface.align.warp import compose_affine, resize_map

#: Long side (pixels) of the largest copy faces are detected on.
DETECT_SIDE = 1024
#: A JPEG is first decoded at the coarsest DCT scale that keeps this many pixels on the long
#: side, so the detection copies are downscaled from it, never enlarged.
DECODE_SIDE = 768
#: A face is warped from the coarsest level with at least this many of its pixels per crop
#: pixel (a finer one is decoded when needed), so the warp never enlarges a face that the
#: file has at a higher resolution.
MIN_SOURCE_RATIO = 1.0

_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Level:
    """Pixels of the photo at some scale, and the map of their centres to full resolution."""

    pixels: np.ndarray
    to_full: np.ndarray = field(default_factory=lambda: _IDENTITY.copy())

    @property
    def long_side(self) -> int:
        return max(self.pixels.shape[:2])

    @property
    def full_per_pixel(self) -> float:
        """Full-resolution pixels per pixel of this level (1.0 for the full image)."""
        return float(np.sqrt(abs(np.linalg.det(self.to_full[:, :2]))))

    def resized(self, long_side: int, final: int = cv2.INTER_AREA) -> "Level":
        """This level downscaled to ``long_side``; itself when it is no larger.

        Exact halvings first (``cv2.INTER_AREA`` at 2x, a fast 2x2 mean; an odd last row or
        column is dropped), then one resize by less than 2x with ``final`` (area by
        default): the same filter as a single area resize at a fraction of its cost."""
        level = self
        # (a strip of an image, 1x10000 px, is not halved to nothing)
        while level.long_side >= 2 * long_side and min(level.pixels.shape[:2]) >= 2:
            h, w = level.pixels.shape[:2]
            even = level.pixels[:h - h % 2, :w - w % 2]
            half = cv2.resize(even, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            level = Level(half, compose_affine(level.to_full,
                                               resize_map((w - w % 2, h - h % 2),
                                                          (w // 2, h // 2))))
        h, w = level.pixels.shape[:2]
        if max(h, w) <= long_side:
            return level
        scale = long_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(level.pixels, size, interpolation=final)
        return Level(small, compose_affine(level.to_full, resize_map((w, h), size)))

    def upright(self) -> "Level":
        """This level turned the way ``to_full`` says the photo stands (a JPEG level is kept
        as stored until a detector needs it upright: turning a small copy is cheap)."""
        a = self.to_full[:, :2]
        pixels = self.pixels
        turn = np.eye(3)  # pixel centres of this level -> those of the turned one
        if abs(a[0, 0]) < abs(a[0, 1]):
            pixels = pixels.transpose(1, 0, 2)
            turn = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
        h, w = pixels.shape[:2]
        lin = a @ np.linalg.inv(turn[:2, :2])
        if lin[0, 0] < 0:
            pixels = pixels[:, ::-1]
            turn = np.array([[-1.0, 0, w - 1], [0, 1, 0], [0, 0, 1]]) @ turn
        if lin[1, 1] < 0:
            pixels = pixels[::-1]
            turn = np.array([[1.0, 0, 0], [0, -1, h - 1], [0, 0, 1]]) @ turn
        if pixels is self.pixels:
            return self
        to_full = np.vstack([self.to_full, [0, 0, 1]]) @ np.linalg.inv(turn)
        return Level(np.ascontiguousarray(pixels), to_full[:2])

    def region(self, x0: int, y0: int, x1: int, y1: int) -> "Level":
        """The pixels ``[y0:y1, x0:x1]`` of this level (clipped to it) as a level."""
        h, w = self.pixels.shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        shift = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])
        return Level(np.ascontiguousarray(self.pixels[y0:y1, x0:x1]),
                     compose_affine(self.to_full, shift))


class Photo:
    """One image at one or more scales; see the module docstring.

    Attributes:
        path: the file (None for pixels handed over in memory).
        size: upright ``(width, height)`` at full resolution.
        damage: what is wrong with a damaged image used anyway (``allow_damaged``).
    """

    def __init__(self, levels: dict[int, Level], size: tuple[int, int],
                 path: str | os.PathLike[str] | None = None, header=None,
                 allow_damaged: bool = False, damage: str | None = None):
        self._levels = dict(levels)
        self.size = size
        self.path = path
        self._header = header
        self._allow_damaged = allow_damaged
        self.damage = damage

    @classmethod
    def from_array(cls, image: np.ndarray) -> "Photo":
        """Pixels already decoded (HxWx3 uint8 RGB, upright): one level, full resolution."""
        return cls({1: Level(np.asarray(image))}, (image.shape[1], image.shape[0]))

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, allow_damaged: bool = False,
             decode_side: int = DECODE_SIDE) -> "Photo":
        """Read the header and decode the detection level now (so a damaged or unreadable
        file fails here, with the errors of :func:`slimface.io.image.decode_image`)."""
        from slimface.io.decode import decode_scaled, read_header, scale_factor_for

        with stage("decode"):
            header = read_header(path)
            factor = scale_factor_for(header.size, decode_side) if header.scalable else 1
            first = decode_scaled(path, factor, allow_damaged=allow_damaged, header=header,
                                  upright=False)
        scalable = header.scalable and first.factor == factor
        return cls({first.factor: Level(first.pixels, first.to_full)}, first.full_size,
                   path=path, header=header if scalable else None,
                   allow_damaged=allow_damaged, damage=first.damage)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Upright full-resolution ``(height, width, 3)``, as an image array's shape."""
        return (self.size[1], self.size[0], 3)

    @property
    def detection_level(self) -> Level:
        """The coarsest level decoded so far (the one :meth:`open` decoded), as stored."""
        return self._levels[max(self._levels)]

    @property
    def factors(self) -> list[int]:
        """Scales this photo can be had at: decoded ones, and the DCT scales of a JPEG."""
        if self._header is None:
            return sorted(self._levels)
        from slimface.io.decode import FACTORS

        return list(FACTORS)

    def level(self, factor: int) -> Level:
        """The photo at 1/``factor`` scale, decoded on first use."""
        if factor not in self._levels:
            if factor not in self.factors:
                raise ValueError(f"no level 1/{factor} (have {self.factors})")
            from slimface.io.decode import decode_scaled

            with stage("decode"):
                scaled = decode_scaled(self._header.path, factor, header=self._header,
                                       allow_damaged=self._allow_damaged, checked=True,
                                       upright=False)
            self._levels[scaled.factor] = Level(scaled.pixels, scaled.to_full)
            return self._levels[scaled.factor]
        return self._levels[factor]

    def level_for(self, full_per_pixel: float) -> Level:
        """The level to make an image from (a crop, a detection region) that takes
        ``full_per_pixel`` full-resolution pixels per pixel: the coarsest decoded level with
        at least :data:`MIN_SOURCE_RATIO` of its pixels per output pixel, else the coarsest
        level that has them (decoded now), else the full image."""
        def enough(factor: int) -> bool:
            return full_per_pixel / factor >= MIN_SOURCE_RATIO

        for factor in sorted(self._levels, reverse=True):
            if enough(factor):
                return self._levels[factor]
        finer = [f for f in self.factors if enough(f)]
        return self.level(max(finer) if finer else min(self.factors))
