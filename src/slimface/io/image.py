"""Decode and validate input images: one function, :func:`load_image`, that every stage uses.

Why a wrapper around Pillow: user photos arrive rotated by EXIF tags, as grey, 16-bit, palette,
CMYK or with alpha; a detector and a network want plain HxWx3 uint8 RGB. And every way a file
can be wrong (missing, truncated, not an image, too big) must become a
:class:`~slimface.errors.ImageError` whose message starts with the file path, so the CLI can
print it without a traceback.

Damaged data counts as a problem too: Pillow silently decodes a JPEG whose entropy-coded
data is corrupt (libjpeg's "Corrupt JPEG data" warnings), smearing everything below the
damage. Every JPEG is therefore also run through libjpeg-turbo with warnings turned into
errors (``simplejpeg``'s strict mode); a warning is a :class:`DamagedImageError` unless the
caller passes ``allow_damaged=True``, which turns it into a :class:`DamagedImageWarning`.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from slimface.errors import (DamagedImageError, EmptyImageError, ImageDecodeError,
                             ImageNotFoundError, ImageTooLargeError, NotAnImageError,
                             UnsupportedImageError)

#: Decode limit; larger images are refused before their pixels are decoded.
MAX_PIXELS = 50_000_000

#: How a caller of the library uses a damaged image anyway (the CLI says --allow-damaged).
DAMAGED_REMEDY = "pass allow_damaged=True to use it anyway"

#: What the over-the-limit message advises.
_SMALLER_COPY = "; save a smaller copy (12 megapixels is plenty for a face)"


def _avif_readable() -> bool:
    """Whether this Pillow decodes AVIF (its wheels bundle libavif from 11.2 on), the format
    some phones and most web pages now save photos in."""
    from PIL import features

    try:
        return bool(features.check("avif"))
    except (ValueError, KeyError):  # a Pillow that does not know the feature
        return False


def _heif_readable() -> bool:
    """Whether HEIC/HEIF (what iPhones save photos as) can be read: ``pillow-heif`` (a
    dependency) registers a Pillow opener. libheif applies the file's rotation itself and
    the opener resets the EXIF orientation to 1, so the photo is not turned twice."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


_AVIF = _avif_readable()
_HEIF = _heif_readable()

#: The formats this installation reads: Pillow's format name, the name messages give, the
#: file extensions. MPO is the JPEG variant phones write; PGM/PPM are Pillow's "PPM". A
#: multi-page TIFF or an animated GIF is read as its first page or frame.
_FORMATS = ([("JPEG", "JPEG", (".jpg", ".jpeg")), ("MPO", "", ()), ("PNG", "PNG", (".png",)),
             ("PPM", "PGM/PPM", (".pgm", ".ppm", ".pnm")), ("BMP", "BMP", (".bmp",)),
             ("WEBP", "WebP", (".webp",)), ("TIFF", "TIFF", (".tif", ".tiff")),
             ("GIF", "GIF", (".gif",))]
            + ([("AVIF", "AVIF", (".avif",))] if _AVIF else [])
            + ([("HEIF", "HEIC/HEIF", (".heic", ".heif", ".hif"))] if _HEIF else []))

#: Pillow format names we read.
SUPPORTED_FORMATS = tuple(name for name, _, _ in _FORMATS)
SUPPORTED_NAMES = ", ".join(shown for _, shown, _ in _FORMATS if shown)

#: Extensions that folder walks pick up (``slimface align`` and friends).
IMAGE_EXTENSIONS = tuple(ext for _, _, exts in _FORMATS for ext in exts)

# Leading bytes of image formats: a file that starts like an image but fails to open is
# "corrupt", anything else is "not an image".
_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"P1", b"P2", b"P3", b"P4", b"P5",
          b"P6", b"II*\x00", b"MM\x00*")


#: ISO media brands of HEIC/HEIF still images (bytes 8-12, after ``ftyp``).
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")

#: libjpeg warnings that mean the entropy-coded data is damaged (jerror.h, JWRN_*); other
#: warnings (an unknown JFIF revision, an Adobe transform code) leave the pixels right.
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file",
                "Inconsistent progression sequence")

#: Pillow's own decompression-bomb message, whose limit is not ours.
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


#: What Pillow's format plugins raise on malformed data besides OSError.
_PILLOW_PARSE_ERRORS = (ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError,
                        struct.error, ZeroDivisionError)


class DamagedImageWarning(UserWarning):
    """A damaged image was decoded anyway because the caller passed ``allow_damaged=True``."""


@dataclass(frozen=True)
class DecodedImage:
    """Pixels (HxWx3 uint8 RGB) and, when the file is damaged but allowed, what is wrong."""

    pixels: np.ndarray
    damage: str | None = None


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` by extension (:data:`IMAGE_EXTENSIONS`), recursive,
    sorted; empty when there are none (callers say what they needed them for)."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_image(path: str | os.PathLike[str], *, allow_damaged: bool = False) -> np.ndarray:
    """Read ``path`` as an HxWx3 uint8 RGB array, rotated upright by its EXIF orientation.

    Args:
        path: the image file.
        allow_damaged: decode a file whose data the decoder reports as corrupt, with a
            :class:`DamagedImageWarning` instead of a :class:`DamagedImageError`.

    Raises:
        ImageNotFoundError: the path does not exist or is not a file.
        EmptyImageError: zero-byte file or a zero-sized image.
        NotAnImageError: the content is not an image format at all.
        UnsupportedImageError: an image format or pixel mode slimface does not read.
        ImageTooLargeError: more than :data:`MAX_PIXELS` pixels (checked before decoding).
        ImageDecodeError: truncated or corrupt image data.
        DamagedImageError: the decoder reported corrupt data (unless ``allow_damaged``).
    """
    decoded = decode_image(path, allow_damaged=allow_damaged)
    if decoded.damage is not None:
        warnings.warn(DamagedImageWarning(f"{path}: {decoded.damage}"), stacklevel=2)
    return decoded.pixels


def pixels_in_memory(image: Any) -> tuple[str, np.ndarray]:
    """A name and HxWx3 uint8 RGB pixels for an image already in memory: a NumPy array in
    RGB order (HxW grey, HxWx1, HxWx3, or HxWx4 with alpha laid over white; uint8, or
    uint16 scaled 65535 -> 255) or a PIL image (its EXIF orientation applied, as for files).

    The name, ``<pixels WIDTHxHEIGHT HASH>``, stands for a file path in messages and results;
    the hash of the pixels tells two images of one size apart (a gallery stores an image
    once). OpenCV gives BGR: pass ``image[..., ::-1]``.

    Raises:
        TypeError: ``image`` is neither an array nor a PIL image.
        UnsupportedImageError, EmptyImageError: an array that is not an image.
    """
    if isinstance(image, Image.Image):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pixels = _to_rgb_uint8(Path("<PIL image>"), _exif_upright(image))
    elif isinstance(image, np.ndarray):
        pixels = _array_to_rgb(image)
    else:
        raise TypeError(f"an image is a file path (str or os.PathLike), a NumPy array or a "
                        f"PIL image; got {type(image).__module__}.{type(image).__qualname__}")
    height, width = pixels.shape[:2]
    # a name, not a checksum: every 8th pixel of every 8th row tells images apart at 1/64 of
    # the cost (a full hash of a 1080p frame costs about as much as a tenth of matching it)
    digest = hashlib.sha1(np.ascontiguousarray(pixels[::8, ::8]).data).hexdigest()[:10]
    return f"<pixels {width}x{height} {digest}>", pixels


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """See :func:`pixels_in_memory`."""
    where = f"<pixels of shape {tuple(array.shape)}, {array.dtype}>"
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UnsupportedImageError(where, "not an image: expected height x width (grey), "
                                           "or height x width x 3 (RGB) or 4 (RGBA)")
    if 0 in array.shape:
        raise EmptyImageError(where, "image has a zero dimension")
    if array.dtype == np.uint16:
        array = _sixteen_to_eight_bits(array)
    if array.dtype != np.uint8:
        raise UnsupportedImageError(where, "pixels must be uint8 (0..255) or uint16; scale "
                                           "them first, e.g. (x * 255).round().astype("
                                           "np.uint8) for floats in 0..1")
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.shape[2] == 4:
        return _over_white(np.ascontiguousarray(array))
    return array.copy()  # the caller may reuse its buffer (a video frame) while we work


def existing_image_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or the error every reader gives for a missing, directory or empty
    file (checked before any decoder opens it)."""
    p = Path(path)
    if not p.is_file():
        problem = "is a directory, not an image file" if p.is_dir() else "no such file"
        raise ImageNotFoundError(p, problem)
    if p.stat().st_size == 0:
        raise EmptyImageError(p, "file is empty (0 bytes)")
    return p


def decode_image(path: str | os.PathLike[str], *, allow_damaged: bool = False) -> DecodedImage:
    """:func:`load_image` that returns the damage note instead of warning about it."""
    p = existing_image_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # a broken metadata tag: Pillow skips it; a damaged image tag fails the decode below
        warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL.TiffImagePlugin")
        with _open_checked(p) as im:
            _check_dimensions(p, im)
            damage = _jpeg_damage(p) if im.format in ("JPEG", "MPO") else None
            if damage is not None and not allow_damaged:
                raise DamagedImageError(p, f"damaged image data ({damage})",
                                        remedy=DAMAGED_REMEDY)
            im = _decode(p, im) if damage is None else _decode_damaged_jpeg(p, im)
            im = _exif_upright(im)
            return DecodedImage(_to_rgb_uint8(p, im), damage)


def _jpeg_damage(p: Path) -> str | None:
    """libjpeg-turbo's first warning about damaged data in ``p``, or None when it is clean.

    Decodes at 1/8 scale in grey: the entropy-coded data (where damage shows) is read in
    full either way, and the output stays small.
    """
    import simplejpeg

    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(p, f"cannot read image: {exc}") from None
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=1, min_width=1,
                               min_factor=8, strict=True)
    except ValueError as exc:
        message = str(exc).strip()
        if message.startswith(_JPEG_DAMAGE):
            return message
    return None


def _open_checked(p: Path) -> Image.Image:
    """Open lazily (header only) and map Pillow's failures to our error classes."""
    try:
        im = Image.open(p)
    except Image.DecompressionBombError as exc:
        found = _BOMB_PIXELS.search(str(exc))
        size = f"{int(found.group(1)) / 1e6:.1f} megapixels" if found else "too many pixels"
        raise ImageTooLargeError(p, f"{size}, over the {MAX_PIXELS // 1_000_000} megapixel "
                                    f"limit{_SMALLER_COPY}") from None
    except UnidentifiedImageError:
        with open(p, "rb") as f:
            head = f.read(16)
        if head.startswith(_MAGIC):
            raise ImageDecodeError(p, "corrupt or truncated image header") from None
        if head[4:8] == b"ftyp":  # an ISO media file: HEIC, AVIF, or a video
            _refuse_iso_media(p, head[8:12])
        raise NotAnImageError(p, f"not an image file (supported: {SUPPORTED_NAMES})") from None
    except OSError as exc:
        raise ImageDecodeError(p, f"cannot read image: {exc}") from None
    except _PILLOW_PARSE_ERRORS as exc:  # a plugin choking on a malformed header
        raise ImageDecodeError(p, f"corrupt image header ({exc!s:.120})") from None
    if im.format not in SUPPORTED_FORMATS:
        fmt = im.format
        im.close()
        raise UnsupportedImageError(p, f"{fmt} images are not supported "
                                       f"(supported: {SUPPORTED_NAMES})")
    return im


def _refuse_iso_media(p: Path, brand: bytes) -> None:
    """The error for an ISO media file (``ftyp`` box, major ``brand``) Pillow cannot open:
    a HEIC that is cut off or lacks its decoder, an AVIF this Pillow cannot read, else not
    an image at all (a video)."""
    if brand in _HEIF_BRANDS:
        if _HEIF:
            raise ImageDecodeError(p, "corrupt or truncated HEIC image") from None
        raise UnsupportedImageError(p, "HEIC images need the pillow-heif package (pip install "
                                       "pillow-heif), or save the photo as JPEG") from None
    if brand in (b"avif", b"avis"):
        if _AVIF:
            raise ImageDecodeError(p, "corrupt or truncated AVIF image") from None
        raise UnsupportedImageError(p, "AVIF images need Pillow 11.2 or later (pip install -U "
                                       "pillow), or save the photo as JPEG") from None
    raise NotAnImageError(p, f"an ISO media file (a video?), not an image (supported: "
                             f"{SUPPORTED_NAMES})") from None


def _check_dimensions(p: Path, im: Image.Image) -> None:
    w, h = im.size
    if w == 0 or h == 0:
        raise EmptyImageError(p, f"image has a zero dimension ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(p, f"{w}x{h} = {w * h / 1e6:.1f} megapixels, over the "
                                    f"{MAX_PIXELS // 1_000_000} megapixel limit{_SMALLER_COPY}")


def _decode(p: Path, im: Image.Image) -> Image.Image:
    try:
        im.load()
    except (OSError, *_PILLOW_PARSE_ERRORS) as exc:
        raise ImageDecodeError(p, f"truncated or corrupt image data ({exc!s:.120})") from None
    return im


def _decode_damaged_jpeg(p: Path, im: Image.Image) -> Image.Image:
    """A damaged JPEG the caller accepted: libjpeg-turbo's lenient decode, which fills what a
    cut-off file lacks with grey as Pillow's strict loader will not (its EXIF kept)."""
    import simplejpeg

    try:
        pixels = simplejpeg.decode_jpeg(p.read_bytes(), colorspace="RGB", strict=False)
    except (OSError, ValueError):
        return _decode(p, im)  # CMYK and the like: Pillow's loader says what is wrong
    out = Image.fromarray(pixels)
    if "exif" in im.info:
        out.info["exif"] = im.info["exif"]
    return out


def _exif_upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is ignored rather than fatal."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data" notes
            return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose an otherwise good image
        return im


def _to_rgb_uint8(p: Path, im: Image.Image) -> np.ndarray:
    """Every pixel mode to HxWx3 uint8; 16-bit is scaled (65535 -> 255), alpha over white."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_bit_to_rgb(p, im)
    if mode == "F":
        raise UnsupportedImageError(p, "floating-point images are not supported")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        return _over_white(np.asarray(im.convert("RGBA"), dtype=np.uint8))
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (ValueError, OSError) as exc:
        raise UnsupportedImageError(p, f"pixel mode {mode!r} cannot be converted to RGB "
                                       f"({exc})") from None


def _over_white(rgba: np.ndarray, rows: int = 512) -> np.ndarray:
    """RGBA uint8 composited over white, rounded to nearest, in integers and in blocks of
    rows: a 49-megapixel PNG needs a few hundred MB here, not the gigabytes of float copies
    of the whole image. (x * a + 255 * (255 - a)) / 255 is never exactly halfway (255 is
    odd), so adding 127 before the division rounds it as float rounding would."""
    out = np.empty(rgba.shape[:2] + (3,), np.uint8)
    for top in range(0, rgba.shape[0], rows):
        block = rgba[top:top + rows].astype(np.uint32)
        alpha = block[..., 3:4]
        out[top:top + rows] = (block[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return out


def _sixteen_bit_to_rgb(p: Path, im: Image.Image) -> np.ndarray:
    """16-bit grey (Pillow modes I;16* or I) to 8 bits by scaling, never by clipping."""
    arr = np.asarray(im).astype(np.float64)  # astype also fixes big-endian I;16B
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 65535:
        raise UnsupportedImageError(p, f"32-bit integer pixels out of the 16-bit range "
                                       f"({lo:.0f}..{hi:.0f})")
    grey = _sixteen_to_eight_bits(arr)
    return np.repeat(grey[..., None], 3, axis=2)


def _sixteen_to_eight_bits(values: np.ndarray) -> np.ndarray:
    """0..65535 to 0..255 by scaling (65535 -> 255), rounded to nearest."""
    return np.rint(values / 257.0).astype(np.uint8)

