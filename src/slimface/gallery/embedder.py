"""From an image file to one L2-normalised embedding: load, detect, align, embed.

The verify command, the gallery and :class:`slimface.FaceMatcher` all go through
:class:`FaceEmbedder`, so a gallery built by one of them can be searched by the others and
the calibrated threshold applies to all of them. Every failure names the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from slimface.errors import FaceError, ModelError, MultipleFacesError, SlimfaceError
from slimface.gallery.gallery import ModelInfo
from slimface.runtime.fingerprint import model_fingerprint  # noqa: F401 - re-exported

MultiFace = Literal["error", "largest"]
MULTI_FACE_CHOICES: tuple[str, ...] = ("error", "largest")
#: Flip handling used for every match (verify threshold, gallery): mirror embedding summed.
DEFAULT_FLIP = "sum"


def load_model(spec: Any) -> tuple[Any, str]:
    """(model, canonical name) from a registry name, a model file, or a model object."""
    from slimface.runtime.loader import default_model_name, load_model as _load

    if spec is None:
        spec = default_model_name()
    if not isinstance(spec, (str, os.PathLike)):
        return spec, str(getattr(spec, "name", type(spec).__name__))
    name = str(Path(spec).resolve()) if Path(spec).is_file() else str(spec)
    return _load(spec), name


def template_name(model: Any) -> str:
    template = getattr(model, "template", None)
    if template is None:
        raise ModelError(f"model {type(model).__name__} has no alignment template attribute")
    return template if isinstance(template, str) else str(getattr(template, "name", template))


def embed_crops_any(model: Any, crops: np.ndarray, flip: str) -> np.ndarray:
    """torch backbones through ``embed_crops``; runtime backends through their own method."""
    own = getattr(model, "embed_crops", None)
    if callable(own):
        return np.asarray(own(crops, flip=flip), np.float32)
    from slimface.models.inference import embed_crops

    return embed_crops(model, crops, flip=flip)


@dataclass
class EmbeddedFace:
    """One image's embedding and how its face was found (``status`` as in align)."""

    path: str
    embedding: np.ndarray
    crop: np.ndarray
    status: str
    box: list[float] | None


class FaceEmbedder:
    """Model + detector + template, loaded once; ``embed_file`` per image."""

    def __init__(self, model: Any = None, *, flip: str = DEFAULT_FLIP, pad: float = 0.0,
                 detector: str | None = None, aligner: Callable[..., Any] | None = None,
                 image_loader: Callable[[str], np.ndarray] | None = None):
        self.model, self.model_name = load_model(model)
        self.template = template_name(self.model)
        self.flip = flip
        self.pad = float(pad)
        self.detector_name = detector or getattr(self.model, "detector", None) or "retinaface"
        self.fallback_name = None if detector else getattr(self.model, "fallback_detector", None)
        self._aligner = aligner
        self._image_loader = image_loader
        self._fingerprint: str | None = None

    @property
    def info(self) -> ModelInfo:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return ModelInfo(name=self.model_name, fingerprint=self._fingerprint,
                         template=self.template,
                         embedding_dim=int(self.model.embedding_dim) * (
                             2 if self.flip == "concat" else 1),
                         flip=self.flip, detector=self.detector_name)

    # ---- one image -----------------------------------------------------------------------
    def embed_file(self, path: str | os.PathLike[str], multi_face: MultiFace = "error",
                   no_face: str = "error") -> EmbeddedFace:
        """Detect exactly one face (or the largest with ``multi_face='largest'``), embed it."""
        if multi_face not in MULTI_FACE_CHOICES:
            raise SlimfaceError(f"--face must be one of {MULTI_FACE_CHOICES}, got {multi_face!r}")
        image = self._load(path)
        aligned = self._align(path, image, multi_face, no_face)
        emb = embed_crops_any(self.model, aligned.crop[None], self.flip)[0]
        face = getattr(aligned, "face", None)
        box = None if face is None else [float(v) for v in np.asarray(face.box).ravel()]
        return EmbeddedFace(str(path), emb, aligned.crop, aligned.status, box)

    def embed_files(self, paths: Sequence[str | os.PathLike[str]],
                    multi_face: MultiFace = "error", no_face: str = "error",
                    progress: bool = False) -> list[EmbeddedFace]:
        """All or nothing: the first bad file raises before anything is returned."""
        from tqdm import tqdm

        it = tqdm(paths, desc="embed", unit="img", disable=not progress, leave=False)
        return [self.embed_file(p, multi_face=multi_face, no_face=no_face) for p in it]

    # ---- steps ---------------------------------------------------------------------------
    def _load(self, path: str | os.PathLike[str]) -> np.ndarray:
        if self._image_loader is not None:
            image = self._image_loader(str(path))
        else:
            from slimface.io.image import load_image

            image = load_image(path)
        return _pad_replicate(image, self.pad) if self.pad > 0 else image

    def _align(self, path: str | os.PathLike[str], image: np.ndarray, multi_face: str,
               no_face: str) -> Any:
        """Detector, then the model's fallback detector; face errors re-raised naming ``path``."""
        aligner = self._aligner or _default_aligner()
        try:
            return aligner(image, template=self.template, detector=self.detector_name,
                           multi_face=multi_face, no_face=no_face,
                           fallback_detector=self.fallback_name)
        except FaceError as exc:
            tried = " then ".join(n for n in (self.detector_name, self.fallback_name) if n)
            problem = exc.problem if isinstance(exc, MultipleFacesError) else (
                f"no face found (detectors tried: {tried})")
            raise type(exc)(path, problem) from None


def _default_aligner() -> Callable[..., Any]:
    from slimface.align.pipeline import align_image

    return align_image


def _pad_replicate(image: np.ndarray, fraction: float) -> np.ndarray:
    """Tight crops (AT&T, UTKFace) need context around the face before detection."""
    h, w = image.shape[:2]
    py, px = int(round(h * fraction)), int(round(w * fraction))
    return np.pad(image, ((py, py), (px, px), (0, 0)), mode="edge")
