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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from slimface.errors import EnrollmentWarning, GalleryError, ImageError, SlimfaceError
from slimface.gallery.embedder import (ALL_FACES, DEFAULT_FLIP, MULTI_FACE_CHOICES,
                                       NO_FACE_CHOICES, EmbeddedFace,
                                       FaceEmbedder, check_choice, default_threads)
from slimface.gallery.gallery import Gallery, Match
from slimface.gallery.thresholds import Threshold, lookup_threshold
from slimface.io.image import DamagedImageWarning

PathLike = str | os.PathLike[str]
#: An image: its file's path, or pixels already in memory (a NumPy array in RGB order, or a
#: PIL image; see :func:`slimface.io.image.pixels_in_memory`).
ImageLike = Any


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
    #: What is wrong with an image used anyway (``allow_damaged``).
    warnings: list[str] = field(default_factory=list)
    #: The gallery generation (count of committed writes) the answer reflects.
    generation: int = -1
    #: Which face of a group photo (counted from 1, left to right;
    #: :meth:`FaceMatcher.identify_all`), None for the one face of an image; the JSON shows
    #: the face's box, score and status only then.
    face: int | None = None
    box: list[float] | None = None
    #: The detector's confidence in that face (0-1), to filter doubtful boxes.
    score: float | None = None
    #: How that face was found (``detected``, ``fallback_detector``, ``centre``).
    status: str | None = None
    #: The face of the same photo that holds this face's best name with a higher score: one
    #: person is one face of a photo, so this face is then ``unknown`` (its candidates stay).
    name_taken_by: int | None = None

    @property
    def match(self) -> Match | None:
        top = self.best
        return None if self.name_taken_by is not None else top

    @property
    def best(self) -> Match | None:
        """The top candidate when it clears the threshold, whatever the photo's other faces."""
        top = self.candidates[0] if self.candidates else None
        if top is None or (self.threshold is not None and top.score <= self.threshold):
            return None
        return top

    def as_dict(self) -> dict[str, Any]:
        m = self.match
        out: dict[str, Any] = {"path": self.path}
        if self.face is not None:
            out["face"] = self.face
            out["status"] = self.status
            out["box"] = self.box
            out["score"] = None if self.score is None else round(self.score, 4)
        out["match"] = None if m is None else m.name
        if self.name_taken_by is not None:
            out["name_taken_by"] = self.name_taken_by
        out["candidates"] = [c.as_dict() for c in self.candidates]
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


class FaceMatcher:
    """Verify, embed, enroll and identify with one model.

    Every method takes an image as its file's path, or as pixels already in memory (a NumPy
    array in RGB order, e.g. a video frame, or a PIL image): results and messages then name
    it ``<pixels WIDTHxHEIGHT HASH>``. OpenCV's BGR frames: pass ``frame[..., ::-1]``.

    Args:
        model: registry name, model file (.slim/.pt/.onnx) or a loaded backbone; ``None``
            means the default model.
        threshold: overrides the model's calibrated verify threshold.
        face: several faces in one image: ``"error"`` refuses the image, ``"largest"`` takes
            the biggest face, ``"central"`` the one nearest the image centre. Every face of
            a group photo: :meth:`embed_all` and :meth:`identify_all`.
        no_face: ``"error"`` refuses images without a detected face; ``"centre"`` uses the
            template's centre crop (tight, pre-cropped faces such as AT&T).
        gallery: path of a gallery database for enroll/identify (created on first enroll).
        pad: fraction of replicated border added before detection (tight crops).
        allow_damaged: use images whose data the decoder reports as corrupt, with a
            warning, instead of refusing them.
        embedder: a ready :class:`FaceEmbedder` (tests, custom detectors); overrides model.
        threads: images embedded at once by the methods that take several (one thread
            each; decoding, detection and embedding of different photos overlap). ``None``
            means the machine's cores, at most four; 1 is a plain loop.
    """

    def __init__(self, model: Any = None, *, threshold: float | None = None,
                 face: str = "error", no_face: str = "error",
                 gallery: PathLike | None = None, pad: float = 0.0,
                 flip: str = DEFAULT_FLIP, allow_damaged: bool = False,
                 embedder: FaceEmbedder | None = None, threads: int | None = None):
        interface = embedder.interface if embedder is not None else "api"
        if face == ALL_FACES:
            raise SlimfaceError('face="all" is not a choice of one face: FaceMatcher.embed_all '
                                'and identify_all answer for every face of an image')
        check_choice(interface, "face", face, MULTI_FACE_CHOICES)
        check_choice(interface, "no_face", no_face, NO_FACE_CHOICES)
        self.embedder = embedder or FaceEmbedder(model, flip=flip, pad=pad,
                                                 allow_damaged=allow_damaged)
        if allow_damaged:
            self.embedder.allow_damaged = True
        self.face = face
        self.no_face = no_face
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise SlimfaceError(f"threads must be a positive integer, got {threads!r}")
        self.threads = default_threads() if threads is None else int(threads)
        if threshold is not None and (isinstance(threshold, bool)
                                      or not -1.0 <= float(threshold) <= 1.0):
            raise SlimfaceError(f"threshold is a cosine similarity between -1 and 1; got "
                                f"{threshold!r}")
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

    def embed_face(self, image: ImageLike) -> EmbeddedFace:
        """The embedding of the face in ``image`` with how it was found and any warnings."""
        return self.embedder.embed_file(image, multi_face=self.face,  # type: ignore[arg-type]
                                        no_face=self.no_face)

    def embed_faces(self, images: Sequence[ImageLike], progress: bool = False,
                    threads: int | None = None, bad_file: str = "error"
                    ) -> list[EmbeddedFace | ImageError]:
        """:meth:`embed_face` of every image, ``threads`` (default: :attr:`threads`) at
        once, in input order; the first bad image raises. With ``bad_file="skip"`` an image
        that cannot be used (unreadable, no face, several faces) leaves its
        :class:`~slimface.errors.ImageError` in its place and the others are embedded."""
        _check_list(images, "embed_faces", "embed_face")
        return self.embedder.embed_files(images, multi_face=self.face,  # type: ignore[arg-type]
                                         no_face=self.no_face, progress=progress,
                                         threads=threads or self.threads, bad_file=bad_file)

    def embed_all(self, image: ImageLike) -> list[EmbeddedFace]:
        """Every face of ``image`` (a group photo), left to right, each with its box and
        ``face`` number; none found: as ``no_face`` says."""
        return self.embedder.embed_file_all(image, no_face=self.no_face)

    def embed_all_faces(self, images: Sequence[ImageLike], progress: bool = False,
                        threads: int | None = None, bad_file: str = "error"
                        ) -> list[list[EmbeddedFace] | ImageError]:
        """:meth:`embed_all` of every image (a list of faces per image), as
        :meth:`embed_faces` runs them: ``threads`` at once, input order, ``bad_file``."""
        _check_list(images, "embed_all_faces", "embed_all")
        return self.embedder.embed_files(images, multi_face=ALL_FACES,
                                         no_face=self.no_face, progress=progress,
                                         threads=threads or self.threads, bad_file=bad_file)

    def embed(self, image: ImageLike) -> np.ndarray:
        """L2-normalised embedding of the one face in ``image``."""
        return self.embed_face(image).embedding

    def verify(self, a: ImageLike, b: ImageLike) -> VerifyResult:
        """Same person or not, by cosine similarity against the model's threshold."""
        threshold = self.threshold  # fail before the (slow) embedding if uncalibrated
        fa, fb = self.embed_face(a), self.embed_face(b)
        sim = float(np.dot(fa.embedding, fb.embedding))
        faces = [{"path": f.path, "status": f.status,
                  "box": f.box,
                  **({"warnings": f.warnings} if f.warnings else {})} for f in (fa, fb)]
        return VerifyResult(sim > threshold.value, sim, threshold.value, threshold.source, faces)

    # ---- 1:N -----------------------------------------------------------------------------
    def open_gallery(self, path: PathLike | None = None, create: bool = False,
                     readonly: bool = False) -> Gallery:
        """Open (or create) the gallery; refuses one built with another model.

        ``readonly`` opens it for searching only (nothing is ever written); a gallery
        opened read-only is reopened for writing when a write needs it.
        """
        p = Path(path) if path is not None else self.gallery_path
        if p is None:
            raise GalleryError("no gallery: pass FaceMatcher(gallery=PATH)")
        current = self._gallery
        if current is not None and current.path == p and (readonly or not current.readonly):
            return current
        self.close()
        if not p.exists() and create:
            self._gallery = Gallery.create(p, self.embedder.info)
        else:
            self._gallery = Gallery.open(p, expect=self.embedder.info, readonly=readonly)
        self.gallery_path = p
        return self._gallery

    def enroll(self, name: str, images: Sequence[ImageLike] | ImageLike,
               metadata: dict[str, Any] | None = None) -> int:
        """Add every image of ``name``; if any image fails, nothing is written."""
        paths = [images] if _is_one_image(images) else list(images)
        if not paths:
            raise GalleryError(f"enroll {name!r}: no images given")
        gallery = self.gallery_path
        if gallery is not None and gallery.exists():
            self.open_gallery().store.check_writable()  # fail before the slow embedding
        faces = self.embed_faces(paths)
        for f in faces:
            for note in f.warnings:
                warnings.warn(note, getattr(note, "category", DamagedImageWarning),
                              stacklevel=2)
        for note in self.enrollment_doubts(name, faces):
            warnings.warn(note, EnrollmentWarning, stacklevel=2)
        return self.enroll_faces(name, faces, metadata)

    def enrollment_doubts(self, name: str, faces: Sequence[EmbeddedFace]) -> list[str]:
        """What looks wrong about enrolling ``faces`` as ``name``, one line each: a face
        that matches another enrolled identity above the threshold (a mix-up of photos or
        names), and two of the new faces that do not match each other (two people under
        one name). Empty when the model has no threshold: nothing to judge by."""
        from slimface.gallery.gallery import clean_name

        try:
            threshold = self.threshold.value
        except SlimfaceError:
            return []
        name = clean_name(name)
        vectors = np.stack([f.embedding for f in faces])
        notes = []
        for face, ranked in zip(faces, self.open_gallery(create=True).identify(vectors, 2)):
            other = next((m for m in ranked if m.name != name), None)
            own_best = ranked[0].name == name if ranked else False
            if other is not None and other.score > threshold and not (
                    own_best and ranked[0].score > threshold):
                notes.append(f"{face.path}: matches {other.name} ({other.score:.4f}, "
                             f"threshold {threshold:.4f}), not {name}; enrolled as {name} "
                             f"anyway (check the photo and the name)")
        sims = vectors @ vectors.T
        apart = [(i, j) for i in range(len(faces)) for j in range(i + 1, len(faces))
                 if sims[i, j] <= threshold]
        if apart:
            i, j = apart[0]
            more = f" (and {len(apart) - 1} more pairs)" if len(apart) > 1 else ""
            notes.append(f"{faces[i].path} and {faces[j].path}: {sims[i, j]:.4f}, not the "
                         f"same person at the threshold {threshold:.4f}{more}; all enrolled "
                         f"as {name} anyway")
        return notes

    def enroll_faces(self, name: str, faces: Sequence[EmbeddedFace],
                     metadata: dict[str, Any] | None = None) -> int:
        """Store already embedded faces (from :meth:`embed_faces`) under ``name``."""
        if not faces:
            raise GalleryError(f"enroll {name!r}: no images given")
        vectors = np.stack([f.embedding for f in faces])
        return self.open_gallery(create=True).enroll(name, vectors, [f.path for f in faces],
                                                     metadata)

    def identify(self, image: ImageLike, top_k: int = 1) -> IdentifyResult:
        return self.identify_many([image], top_k)[0]

    def identify_many(self, images: Sequence[ImageLike], top_k: int = 1) -> list[IdentifyResult]:
        """Top-k identities of each image, from the gallery as committed at the search."""
        _check_list(images, "identify_many", "identify")
        if not images:
            return []
        self.open_gallery(readonly=True)  # a missing or foreign gallery fails before embedding
        return self.identify_faces(self.embed_faces(images), top_k)

    def identify_all(self, image: ImageLike, top_k: int = 1) -> list[IdentifyResult]:
        """Who each face of ``image`` is (a group photo): one result per face, left to right,
        with its ``face`` number and ``box``."""
        self.open_gallery(readonly=True)  # a missing or foreign gallery fails before embedding
        return self.identify_faces(self.embed_all(image), top_k)

    def identify_faces(self, faces: Sequence[EmbeddedFace], top_k: int = 1
                       ) -> list[IdentifyResult]:
        """Top-k identities of faces already embedded (:meth:`embed_faces`), as
        :meth:`enroll_faces` enrolls them."""
        if not faces:
            return []
        errors = [f for f in faces if isinstance(f, Exception)]
        if errors:
            raise TypeError(f"identify_faces takes embedded faces; {len(errors)} of them are "
                            f"errors (first: {errors[0]}): leave out what "
                            f"embed_faces(..., bad_file='skip') could not embed")
        gallery = self.open_gallery(readonly=True)
        ranked = gallery.identify(np.stack([f.embedding for f in faces]), top_k)
        try:
            threshold: float | None = self.threshold.value
        except SlimfaceError:
            threshold = None
        return _one_face_per_name([
            IdentifyResult(f.path, r, threshold, list(f.warnings), gallery.last_generation,
                           face=f.face, box=f.box, score=f.score, status=f.status)
            for f, r in zip(faces, ranked)])

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


def _one_face_per_name(results: list[IdentifyResult]) -> list[IdentifyResult]:
    """Among the faces of one group photo (results with a ``face`` number), a name that
    several faces clear the threshold for goes to the one with the highest score; the
    others become unknown and say which face holds it (``name_taken_by``)."""
    holder: dict[tuple[str, str], IdentifyResult] = {}
    for r in results:
        best = r.best
        if r.face is None or best is None:
            continue
        key = (r.path, best.name)
        if key not in holder or best.score > holder[key].candidates[0].score:
            holder[key] = r
    for r in results:
        best = r.best
        if r.face is not None and best is not None and holder[(r.path, best.name)] is not r:
            r.name_taken_by = holder[(r.path, best.name)].face
    return results


def _is_one_image(images: Any) -> bool:
    """A path or one image's pixels (an array of up to three dimensions, a PIL image), as
    opposed to a list of them."""
    from PIL import Image

    return (isinstance(images, (str, os.PathLike, Image.Image))
            or (isinstance(images, np.ndarray) and images.ndim <= 3))


def _check_list(images: Any, method: str, single: str) -> None:
    """Refuse one image where a list of them is expected (a string would be walked letter
    by letter, each letter "no such file"; an array row by row)."""
    if _is_one_image(images) and not isinstance(images, (str, os.PathLike)):
        raise TypeError(f"FaceMatcher.{method} takes a list of images; got one image's "
                        f"pixels: pass [image], or use FaceMatcher.{single}")
    if isinstance(images, (str, os.PathLike)):
        raise TypeError(f"FaceMatcher.{method} takes a list of image paths; got one path "
                        f"({str(images)!r}): pass [path], or use FaceMatcher.{single}")
