"""Decode a JPEG at 1/2, 1/4 or 1/8 scale in the DCT domain, upright by its EXIF orientation.

A face detector needs about a thousand pixels on the long side and a 112-pixel crop needs
the face at about its own scale, so decoding a 12-megapixel photo in full for either throws
most of the work away. libjpeg-turbo's scaled inverse DCT (through ``simplejpeg``; Pillow's
``Image.draft`` is the same mechanism) produces the reduced image directly: each output
pixel is the average of an ``f`` x ``f`` block of the full image. The entropy-coded data is
still read in full, and in strict mode, so a damaged file is found in the same pass and
refused exactly as :func:`slimface.io.image.decode_image` refuses it.

:func:`decode_scaled` with ``factor=1`` *is* :func:`~slimface.io.image.decode_image` (same
pixels, same errors); so are files that are not plain JPEGs (PNG, CMYK JPEG, MPO ...),
whatever factor is asked for, and a damaged JPEG decoded with ``allow_damaged=True``.
Coordinates: ``to_full`` maps pixel centres of the returned image onto pixel centres of the
upright full-resolution image (libjpeg pads the image to whole blocks on the right and
bottom of the *stored* image, which the EXIF rotation may move to the left or top).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from slimface.errors import DamagedImageError

#: Scales libjpeg decodes in the DCT domain (full-resolution pixels per decoded pixel).
FACTORS = (1, 2, 4, 8)
_ORIENTATION_TAG = 0x0112
#: EXIF orientation -> the Pillow transpose that makes the stored image upright (as
#: ``ImageOps.exif_transpose`` applies it).
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class ImageHeader:
    """What the file's header says: format, stored size, EXIF orientation, pixel mode."""

    path: Path
    format: str
    stored_size: tuple[int, int]
    orientation: int
    mode: str

    @property
    def size(self) -> tuple[int, int]:
        """Upright (width, height) at full resolution."""
        w, h = self.stored_size
        return (h, w) if self.orientation in (5, 6, 7, 8) else (w, h)

    @property
    def scalable(self) -> bool:
        """A plain JPEG (grey or YCbCr) that libjpeg can decode at a reduced scale."""
        return self.format == "JPEG" and self.mode in ("RGB", "L")


@dataclass(frozen=True)
class ScaledImage:
    """HxWx3 uint8 RGB pixels at 1/``factor`` of the full resolution: upright, unless
    decoded with ``upright=False`` (then as stored, and ``to_full`` does the turning)."""

    pixels: np.ndarray
    factor: int
    #: Upright (width, height) of the full-resolution image.
    full_size: tuple[int, int]
    #: 2x3 affine map from pixel centres of ``pixels`` to upright full-resolution pixel
    #: centres.
    to_full: np.ndarray
    #: What is wrong with a damaged image used anyway (``allow_damaged``), else None.
    damage: str | None = None


def read_header(path: str | os.PathLike[str]) -> ImageHeader:
    """The header of ``path``, checked as :func:`~slimface.io.image.decode_image` checks it
    before decoding (missing, empty, not an image, unsupported format, too many pixels)."""
    from slimface.io.image import _check_dimensions, _open_checked, existing_image_file

    p = existing_image_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open_checked(p) as im:
            _check_dimensions(p, im)
            return ImageHeader(p, str(im.format), im.size, _orientation(im), im.mode)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 when absent or unreadable, as ``exif_transpose`` does."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data" notes
            value = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose an otherwise good image
        return 1
    return value if value in _TRANSPOSE else 1


def scale_factor_for(size: tuple[int, int], min_long_side: int) -> int:
    """The largest of :data:`FACTORS` that keeps the long side at ``min_long_side`` or more
    (1 when the image is no larger than that)."""
    long_side = max(size)
    return max(f for f in FACTORS if f == 1 or math.ceil(long_side / f) >= min_long_side)


def decode_scaled(path: str | os.PathLike[str], factor: int = 1, *,
                  allow_damaged: bool = False, header: ImageHeader | None = None,
                  checked: bool = False, upright: bool = True) -> ScaledImage:
    """Decode ``path`` at 1/``factor`` scale (1, 2, 4 or 8), upright by EXIF.

    Files that are not plain JPEGs, and damaged JPEGs with ``allow_damaged=True``, are
    decoded at full resolution (``factor`` 1 in the result). Errors are those of
    :func:`~slimface.io.image.decode_image`. ``checked=True`` says an earlier decode of
    this file at another scale found it clean, so ``factor=1`` may take libjpeg-turbo's
    single pass too (the same pixels as Pillow's decode, without its separate check).
    ``upright=False`` leaves a reduced JPEG as stored (turning a big image costs more than
    reading it turned: ``to_full`` includes the turn).
    """
    from slimface.io.image import DAMAGED_REMEDY, decode_image

    if factor not in FACTORS:
        raise ValueError(f"factor must be one of {FACTORS}, got {factor!r}")
    head = header or read_header(path)
    if (factor > 1 or checked) and head.scalable:
        pixels, damage = _decode_jpeg(head, factor)
        if damage is None and pixels is not None:
            return _scaled(pixels, head, factor, upright)
        if damage is not None and not allow_damaged:
            raise DamagedImageError(head.path, f"damaged image data ({damage})",
                                    remedy=DAMAGED_REMEDY)
    decoded = decode_image(head.path, allow_damaged=allow_damaged)
    h, w = decoded.pixels.shape[:2]
    return ScaledImage(decoded.pixels, 1, (w, h), np.array([[1.0, 0, 0], [0, 1.0, 0]]),
                       decoded.damage)


def _decode_jpeg(head: ImageHeader, factor: int) -> tuple[np.ndarray | None, str | None]:
    """(stored-orientation pixels, None), (None, damage) or (None, None) when libjpeg-turbo
    cannot decode it this way (the caller then takes Pillow's full decode)."""
    import simplejpeg

    from slimface.io.image import _JPEG_DAMAGE

    w, h = head.stored_size
    want = (math.ceil(h / factor), math.ceil(w / factor))
    try:
        data = head.path.read_bytes()
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=want[0],
                                        min_width=want[1], strict=True)
    except ValueError as exc:
        message = str(exc).strip()
        return None, (message if message.startswith(_JPEG_DAMAGE) else None)
    except OSError:
        return None, None
    if pixels.shape[:2] != want:
        return None, None
    return pixels, None


def _scaled(pixels: np.ndarray, head: ImageHeader, factor: int, upright: bool
            ) -> ScaledImage:
    """Apply the EXIF orientation (when ``upright``) and work out the map to upright
    full-resolution coordinates."""
    o = head.orientation
    stored_h, stored_w = pixels.shape[:2]
    # reduced stored pixel centre -> full stored (the centre of its block) -> upright full
    stored_to_full = np.array([[factor, 0, (factor - 1) / 2],
                               [0, factor, (factor - 1) / 2], [0, 0, 1.0]])
    m = orientation_matrix(o, head.stored_size) @ stored_to_full
    if upright and o != 1:
        pixels = np.asarray(Image.fromarray(pixels).transpose(_TRANSPOSE[o]))
        m = m @ np.linalg.inv(orientation_matrix(o, (stored_w, stored_h)))
    return ScaledImage(np.ascontiguousarray(pixels), factor, head.size, m[:2], None)


def orientation_matrix(orientation: int, stored_size: tuple[int, int]) -> np.ndarray:
    """3x3 map of pixel centres of a stored ``(width, height)`` image onto the upright image
    that EXIF ``orientation`` describes (the transposes of :data:`_TRANSPOSE`)."""
    w, h = stored_size
    x, y, one = (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)

    def row(sign: float, axis: tuple, shift: float) -> list[float]:
        return [sign * axis[0], sign * axis[1], shift]

    rows = {1: (row(1, x, 0), row(1, y, 0)),
            2: (row(-1, x, w - 1), row(1, y, 0)),
            3: (row(-1, x, w - 1), row(-1, y, h - 1)),
            4: (row(1, x, 0), row(-1, y, h - 1)),
            5: (row(1, y, 0), row(1, x, 0)),
            6: (row(-1, y, h - 1), row(1, x, 0)),
            7: (row(-1, y, h - 1), row(-1, x, w - 1)),
            8: (row(1, y, 0), row(-1, x, w - 1))}[orientation]
    return np.array([*rows, list(one)])
