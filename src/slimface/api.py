"""``slimface.FaceMatcher``: the Python face of ``slimface verify`` and ``slimface gallery``.

>>> from slimface import FaceMatcher
>>> fm = FaceMatcher("dlib-resnet", gallery="people.db")
>>> fm.verify("a.jpg", "b.jpg").same
>>> fm.enroll("Ada", ["ada1.jpg", "ada2.jpg"])
>>> fm.identify("who.jpg", top_k=3)

It loads the model, detector and template once and uses the same pipeline (and so the same
calibrated threshold and gallery compatibility rules) as the command line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from slimface.errors import GalleryError, SlimfaceError
from slimface.gallery.embedder import DEFAULT_FLIP, EmbeddedFace, FaceEmbedder
from slimface.gallery.gallery import Gallery, Match
from slimface.gallery.thresholds import Threshold, lookup_threshold

PathLike = str | os.PathLike[str]


@dataclass
class VerifyResult:
    """Outcome of a 1:1 comparison; ``same`` iff ``similarity > threshold``."""

    same: bool
    similarity: float
    threshold: float
    threshold_source: str
    faces: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"same": self.same, "similarity": round(self.similarity, 6),
                "threshold": self.threshold, "threshold_source": self.threshold_source,
                "faces": self.faces}


@dataclass
class IdentifyResult:
    """Top-k identities for one image; ``match`` = best score clears the threshold."""

    path: str
    candidates: list[Match]
    threshold: float | None

    @property
    def match(self) -> Match | None:
        top = self.candidates[0] if self.candidates else None
        if top is None or (self.threshold is not None and top.score <= self.threshold):
            return None
        return top

    def as_dict(self) -> dict[str, Any]:
        m = self.match
        return {"path": self.path, "match": None if m is None else m.name,
                "candidates": [c.as_dict() for c in self.candidates]}


class FaceMatcher:
    """Verify, embed, enroll and identify with one model.

    Args:
        model: registry name, model file (.slim/.pt/.onnx) or a loaded backbone; ``None``
            means the default model.
        threshold: overrides the model's calibrated verify threshold.
        face: ``"error"`` refuses images with several faces, ``"largest"`` takes the biggest.
        no_face: ``"error"`` refuses images without a detected face; ``"centre"`` uses the
            template's centre crop (tight, pre-cropped faces such as AT&T).
        gallery: path of a gallery database for enroll/identify (created on first enroll).
        pad: fraction of replicated border added before detection (tight crops).
        embedder: a ready :class:`FaceEmbedder` (tests, custom detectors); overrides model.
    """

    def __init__(self, model: Any = None, *, threshold: float | None = None,
                 face: str = "error", no_face: str = "error",
                 gallery: PathLike | None = None, pad: float = 0.0,
                 flip: str = DEFAULT_FLIP, embedder: FaceEmbedder | None = None):
        self.embedder = embedder or FaceEmbedder(model, flip=flip, pad=pad)
        self.face = face
        self.no_face = no_face
        self._threshold_override = threshold
        self.gallery_path = None if gallery is None else Path(gallery)
        self._gallery: Gallery | None = None

    # ---- 1:1 -----------------------------------------------------------------------------
    @property
    def threshold(self) -> Threshold:
        """The threshold verify uses, with its source; error if the model was never calibrated."""
        if self._threshold_override is not None:
            return Threshold(float(self._threshold_override), None, "given")
        found = lookup_threshold(self.embedder.model, self.embedder.model_name,
                                 self.embedder.flip, fingerprint=self.embedder.info.fingerprint)
        if found is None:
            raise SlimfaceError(
                f"model {self.embedder.model_name!r} has no calibrated threshold for these "
                f"weights; pass --threshold T or run `slimface verify --calibrate --model "
                f"{self.embedder.model_name}`")
        return found

    def embed_face(self, image: PathLike) -> EmbeddedFace:
        return self.embedder.embed_file(image, multi_face=self.face,  # type: ignore[arg-type]
                                        no_face=self.no_face)

    def embed(self, image: PathLike) -> np.ndarray:
        """L2-normalised embedding of the one face in ``image``."""
        return self.embed_face(image).embedding

    def verify(self, a: PathLike, b: PathLike) -> VerifyResult:
        """Same person or not, by cosine similarity against the model's threshold."""
        threshold = self.threshold  # fail before the (slow) embedding if uncalibrated
        fa, fb = self.embed_face(a), self.embed_face(b)
        sim = float(np.dot(fa.embedding, fb.embedding))
        faces = [{"path": f.path, "status": f.status, "box": f.box} for f in (fa, fb)]
        return VerifyResult(sim > threshold.value, sim, threshold.value, threshold.source, faces)

    # ---- 1:N -----------------------------------------------------------------------------
    def open_gallery(self, path: PathLike | None = None, create: bool = False) -> Gallery:
        """Open (or create) the gallery; refuses one built with another model."""
        p = Path(path) if path is not None else self.gallery_path
        if p is None:
            raise GalleryError("no gallery: pass FaceMatcher(gallery=PATH)")
        if self._gallery is not None and self._gallery.path == p:
            return self._gallery
        if self._gallery is not None:
            self._gallery.close()
        if not p.exists() and create:
            self._gallery = Gallery.create(p, self.embedder.info)
        else:
            self._gallery = Gallery.open(p, expect=self.embedder.info)
        self.gallery_path = p
        return self._gallery

    def enroll(self, name: str, images: Sequence[PathLike] | PathLike,
               metadata: dict[str, Any] | None = None) -> int:
        """Add every image of ``name``; if any image fails, nothing is written."""
        paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        if not paths:
            raise GalleryError(f"enroll {name!r}: no images given")
        faces = self.embedder.embed_files(paths, multi_face=self.face,  # type: ignore[arg-type]
                                          no_face=self.no_face)
        vectors = np.stack([f.embedding for f in faces])
        return self.open_gallery(create=True).enroll(name, vectors, [f.path for f in faces],
                                                     metadata)

    def identify(self, image: PathLike, top_k: int = 1) -> IdentifyResult:
        return self.identify_many([image], top_k)[0]

    def identify_many(self, images: Sequence[PathLike], top_k: int = 1) -> list[IdentifyResult]:
        gallery = self.open_gallery()
        faces = self.embedder.embed_files(images, multi_face=self.face,  # type: ignore[arg-type]
                                          no_face=self.no_face)
        ranked = gallery.identify(np.stack([f.embedding for f in faces]), top_k)
        try:
            threshold: float | None = self.threshold.value
        except SlimfaceError:
            threshold = None
        return [IdentifyResult(f.path, r, threshold) for f, r in zip(faces, ranked)]

    def remove(self, name: str) -> int:
        return self.open_gallery().remove(name)

    def close(self) -> None:
        if self._gallery is not None:
            self._gallery.close()
            self._gallery = None

    def __enter__(self) -> "FaceMatcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
