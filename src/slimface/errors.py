"""Errors that reach users.

Every failure a user can cause (a bad file, no face, an unknown model name) is raised as a
subclass of :class:`SlimfaceError`. The CLI catches exactly this base class and prints its
message without a traceback, so messages must name the offending file or value and say what
would be valid.
"""
from __future__ import annotations

from os import PathLike


class SlimfaceError(Exception):
    """Base of every user-facing error; ``exit_code`` is what the CLI returns."""

    exit_code: int = 1


def _where(path: str | PathLike[str] | None, problem: str) -> str:
    return f"{path}: {problem}" if path is not None else problem


class ImageError(SlimfaceError):
    """An input image could not be used; the message starts with the file path.

    ``remedy`` ("pass allow_damaged=True to use it anyway") ends the message. It is kept
    apart (``bare_problem`` is the message without it) so that a caller who spells the
    option differently (``--allow-damaged`` on the command line) or adds another way out
    rewords the remedy instead of cutting it out of the text."""

    def __init__(self, path: str | PathLike[str] | None, problem: str, remedy: str = ""):
        self.path = None if path is None else str(path)
        self.bare_problem = problem
        self.remedy = remedy
        self.problem = f"{problem}; {remedy}" if remedy else problem
        super().__init__(_where(path, self.problem))


class ImageNotFoundError(ImageError):
    """The path does not exist or is not a regular file."""


class ImageDecodeError(ImageError):
    """The file looks like an image but cannot be decoded (truncated or corrupt)."""


class DamagedImageError(ImageDecodeError):
    """The decoder reported corrupt data (libjpeg's "Corrupt JPEG data", premature end,
    extraneous bytes): the pixels it produced would be partly wrong."""


class NotAnImageError(ImageError):
    """The file's content is not any image format."""


class UnsupportedImageError(ImageError):
    """An image format or pixel layout that slimface does not read."""


class EmptyImageError(ImageError):
    """Zero-byte file or an image with a zero dimension."""


class ImageTooLargeError(ImageError):
    """More pixels than the decode limit (guards against decompression bombs)."""


class FaceError(ImageError):
    """Detection did not give exactly the one face the caller needs; ``note`` is advice
    that ends the message (kept by callers that reword the rest)."""

    def __init__(self, path: str | PathLike[str] | None, problem: str, note: str = "",
                 remedy: str = ""):
        self.note = note
        super().__init__(path, problem + note, remedy)


class NoFaceError(FaceError):
    """No face was found in the image."""


class MultipleFacesError(FaceError):
    """Several faces were found where the caller asked for exactly one."""


class ModelError(SlimfaceError):
    """A model name or model file cannot be used."""


class UnknownNameError(SlimfaceError, ValueError):
    """A registry lookup failed; the message lists close matches."""


class ModelFileError(ModelError):
    """A model file is missing, corrupt, or not a slimface/expected model file."""


class DataError(SlimfaceError):
    """A data set is missing or malformed (pairs files, identity folders)."""


class ConfigError(SlimfaceError, ValueError):
    """An experiment config or ``--set`` override is invalid."""


class OutputError(SlimfaceError):
    """A result file cannot be written where asked (a folder, no permission)."""


class GalleryError(SlimfaceError):
    """A gallery database cannot be used as asked (other model, missing identity...)."""


class EnrollmentWarning(UserWarning):
    """Photos enrolled under a name that look like someone else, or like two people
    (``FaceMatcher.enrollment_doubts``): enrolled anyway, since only the user knows."""


class SmallFaceWarning(UserWarning):
    """A face enrolled from too few pixels to match reliably
    (``slimface.gallery.embedder.SMALL_FACE_PX``): enrolled anyway."""


class SaturatingInt8Warning(UserWarning):
    """An int8 ONNX file with 8-bit weights loaded on a CPU without VNNI, where ONNX
    Runtime's integer products saturate and the embeddings drift far from the float
    model's (:class:`slimface.runtime.export.Int8Options`, ``reduce_range``)."""
