"""From an image file to one L2-normalised embedding: load, detect, align, embed.

The embed and verify commands, the gallery and :class:`slimface.FaceMatcher` all go through
:class:`FaceEmbedder`, so a gallery built by one of them can be searched by the others and
the calibrated threshold applies to all of them. Every failure names the file, and advice
in a message names the option of the interface in use (``--face largest`` on the command
line, ``face="largest"`` in Python).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

from slimface.conventions import BAD_FILE_POLICIES, DEFAULT_FLIP, FLIP_MODES, default_model_name
from slimface.errors import (DamagedImageError, FaceError, ImageError, ModelError,
                             MultipleFacesError, NoFaceError, SlimfaceError, SmallFaceWarning)
from slimface.gallery.gallery import ModelInfo
from slimface.io.image import DamagedImageWarning
from slimface.runtime.fingerprint import model_fingerprint  # noqa: F401 - re-exported

MultiFace = Literal["error", "largest", "central"]
#: :data:`MultiFace` or every face (:data:`ALL_FACES`), as :meth:`FaceEmbedder.embed_files`
#: takes it.
FaceChoice = Literal["error", "largest", "central", "all"]
#: Several faces in one image: refuse, take the largest, or take the one nearest the centre.
MULTI_FACE_CHOICES: tuple[str, ...] = ("error", "largest", "central")
#: Every face of an image (a group photo), left to right, each embedded: the choice
#: :meth:`FaceEmbedder.embed_file_all` makes, offered where an answer per face makes sense
#: (``embed``, ``gallery identify``), not where one face is compared (``verify``, ``enroll``).
ALL_FACES = "all"
#: No face found: refuse, or use the template's centre crop (pre-cropped faces).
NO_FACE_CHOICES: tuple[str, ...] = ("error", "centre")
#: Where a user meets these options: ``"cli"`` spells them ``--face largest``, ``"api"``
#: ``face="largest"``.
INTERFACES = ("api", "cli")
#: Upper bound of :func:`default_threads`.
MAX_DEFAULT_THREADS = 4


def option_hint(interface: str, name: str, value: Any = True) -> str:
    """How a user of ``interface`` sets option ``name`` (a FaceMatcher keyword)."""
    if interface == "cli":
        flag = f"--{name.replace('_', '-')}"
        return flag if value is True else f"{flag} {value}"
    return f"{name}={value!r}" if not isinstance(value, str) else f'{name}="{value}"'


def check_choice(interface: str, name: str, value: Any, choices: Sequence[str]) -> None:
    """Raise a SlimfaceError naming the option (as ``interface`` spells it) and its choices."""
    if value not in choices:
        spelled = f"--{name.replace('_', '-')}" if interface == "cli" else name
        raise SlimfaceError(f"{spelled} must be one of {', '.join(choices)}; got {value!r}")


def load_model(spec: Any, fast_start: bool = False,
               weights: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(model, canonical name) from a registry name, a model file, or a model object.

    ``fast_start``: a name or file whose ONNX Runtime twin was recorded by an earlier run
    (:mod:`slimface.runtime.ort_twin`) loads as that twin, without importing PyTorch
    (``weights``: its file's stamp, when the caller has taken it)."""
    from slimface.runtime.ort_twin import load_twin, model_spec

    if spec is None:
        spec = default_model_name()
    if not isinstance(spec, (str, os.PathLike)):
        return spec, str(getattr(spec, "name", type(spec).__name__))
    name = model_spec(spec)
    twin = load_twin(name, weights) if fast_start else None
    if twin is not None:
        return twin, name
    from slimface.runtime.loader import load_model as _load

    model = _load(spec)
    if getattr(model, "random_weights", False):
        raise untrained_model_error(str(spec))
    return model, name


def untrained_model_error(name: str) -> ModelError:
    """An architecture name given where a trained model is needed: its random weights would
    give similarities that look real and mean nothing."""
    import difflib

    from slimface.models.pretrained import list_cards

    cards = [c.name for c in list_cards()]
    close = difflib.get_close_matches(name.strip().lower().replace("_", "-"), cards, n=1,
                                      cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return ModelError(f"{name!r} is an architecture with random weights, not a trained model: "
                      f"its similarities would mean nothing{hint} (pretrained models: "
                      f"{', '.join(cards)}; `slimface models` describes them; or a trained "
                      f"model file)")


def _weights_before_loading(spec: Any) -> dict[str, Any] | None:
    """The weights file's stamp of a model named by a name or file (``spec`` after
    :func:`load_model`'s default); None for a model object, which is never recorded as a
    twin, or a file that cannot be read (loading it says what is wrong)."""
    from slimface.runtime.ort_twin import model_spec, weights_stamp

    if not isinstance(spec, (str, os.PathLike)):
        return None
    try:
        return weights_stamp(model_spec(spec))
    except OSError:
        return None


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
    score: float | None = None
    #: What is wrong with an image used anyway (``allow_damaged``); empty when it is clean.
    warnings: list[str] = field(default_factory=list)
    #: Which of the image's faces, counted from 1 left to right, when every face was
    #: embedded (:data:`ALL_FACES`); None for the one face of an image.
    face: int | None = None


class FaceEmbedder:
    """Model + detector + template, loaded once; ``embed_file`` per image.

    ``fast_start`` (the default) loads a model named by a name or file as its recorded ONNX
    Runtime twin when an earlier run chose ONNX Runtime for it (no PyTorch import: see
    :mod:`slimface.runtime.ort_twin`); ``False`` always loads the model itself (evaluation
    and calibration need it).
    """

    def __init__(self, model: Any = None, *, flip: str = DEFAULT_FLIP, pad: float = 0.0,
                 detector: str | None = None, aligner: Callable[..., Any] | None = None,
                 image_loader: Callable[[str], np.ndarray] | None = None,
                 allow_damaged: bool = False, interface: str = "api",
                 all_aligner: Callable[..., Any] | None = None, fast_start: bool = True):
        if interface not in INTERFACES:
            raise ValueError(f"interface must be one of {INTERFACES}, got {interface!r}")
        self.interface = interface
        check_choice(interface, "flip", flip, FLIP_MODES)
        if not 0.0 <= float(pad) <= 1.0:  # a pad meant as pixels would upscale for minutes
            raise SlimfaceError(f"pad is a fraction of the image size between 0 and 1; "
                                f"got {pad!r}")
        self.allow_damaged = bool(allow_damaged)
        #: A name or file (not a model object): its ONNX Runtime choice may be recorded,
        #: stamped with its weights file as it was before loading.
        spec = default_model_name() if model is None else model
        self._weights = _weights_before_loading(spec)
        self.model, self.model_name = load_model(spec, fast_start=fast_start,
                                                 weights=self._weights)
        self.template = template_name(self.model)
        self.flip = flip
        self.pad = float(pad)
        self.detector_name = detector or getattr(self.model, "detector", None) or "retinaface"
        self.fallback_name = None if detector else getattr(self.model, "fallback_detector", None)
        self._aligner = aligner
        self._all_aligner = all_aligner
        self._image_loader = image_loader
        self._fingerprint: str | None = None
        self._runner: Any = None
        self._runner_lock = threading.Lock()

    @property
    def info(self) -> ModelInfo:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return ModelInfo(name=self.model_name, fingerprint=self._fingerprint,
                         template=self.template,
                         embedding_dim=int(self.model.embedding_dim) * (
                             2 if self.flip == "concat" else 1),
                         flip=self.flip, detector=self.detector_name)

    @property
    def runner(self) -> Any:
        """What embeds the crops: an ONNX Runtime twin of a PyTorch model where that is
        faster and agrees with it (:mod:`slimface.runtime.ort_embed`), else the model.
        Chosen on first use (an export, cached per weights), once for all threads."""
        if self._runner is None:
            with self._runner_lock:
                if self._runner is None:
                    self._runner = self._choose_runner()
        return self._runner

    def _choose_runner(self) -> Any:
        if callable(getattr(self.model, "embed_crops", None)):
            return self.model  # a runtime backend or a recorded twin embeds by itself
        from slimface.runtime.ort_embed import onnx_embedder, requested_runtime
        from slimface.runtime.ort_twin import record_twin

        # the weights' hash names the cached export; the gallery needs it too
        known = (self.info.fingerprint
                 if callable(getattr(self.model, "state_dict", None)) else None)
        runtime = requested_runtime()
        ort = onnx_embedder(self.model, runtime=runtime, fingerprint=known)
        if ort is None:
            return self.model
        if known is not None:
            record_twin(self.model_name, self.model, ort, known, chosen_by=runtime,
                        weights=self._weights)
        return ort

    # ---- one image -----------------------------------------------------------------------
    def embed_file(self, path: str | os.PathLike[str], multi_face: MultiFace = "error",
                   no_face: str = "error") -> EmbeddedFace:
        """Detect one face (several: as ``multi_face`` says; none: as ``no_face``), embed it."""
        check_choice(self.interface, "face", multi_face, MULTI_FACE_CHOICES)
        check_choice(self.interface, "no_face", no_face, NO_FACE_CHOICES)
        path, pixels = _image_source(path)
        image, damage, frame = self._prepared(path, self._aligner or _default_aligner(), pixels)
        aligned = self._align(path, image, multi_face, no_face)
        return self._embedded(path, [aligned], damage, frame)[0]

    def embed_file_all(self, path: str | os.PathLike[str], no_face: str = "error"
                       ) -> list[EmbeddedFace]:
        """Every face of the image (a group photo), left to right, embedded in one batch;
        ``face`` numbers them from 1. None found: as ``no_face`` says (``"centre"``: the
        centre crop, as one face)."""
        check_choice(self.interface, "no_face", no_face, NO_FACE_CHOICES)
        if self._aligner is not None and self._all_aligner is None:
            raise SlimfaceError("this embedder aligns one face with its own aligner; give it "
                                "all_aligner= as well to embed every face of an image")
        align_all = self._all_aligner or _default_all_aligner()
        path, pixels = _image_source(path)
        image, damage, frame = self._prepared(path, align_all, pixels)
        aligned = self._mapped_face_errors(
            path, image, lambda: align_all(image, template=self.template,
                                           detector=self.detector_name, no_face=no_face,
                                           fallback_detector=self.fallback_name))
        if not aligned:  # a custom all_aligner's "none" (the pipeline's raises or centres)
            raise NoFaceError(path, "no face found")
        faces = self._embedded(path, aligned, damage, frame)
        for i, face in enumerate(faces, 1):
            face.face = i
        return faces

    def _prepared(self, path: str | os.PathLike[str], aligner: Callable[..., Any],
                  pixels: np.ndarray | None = None
                  ) -> tuple[Any, str | None, tuple[int, int, int, int]]:
        """The image of ``path`` (or ``pixels`` already in memory) ready for alignment,
        refused when it cannot hold a face, with the damage note and the file's own pixels
        within it, ``(x0, y0, width, height)`` (``pad`` adds a border around them)."""
        from slimface.align.stages import stage

        if pixels is not None:
            image, damage = pixels, None
        else:
            with stage("decode"):
                image, damage = self._load(path, aligner)
        _check_proportions(path, image)
        width, height = _size(image)
        if self.pad == 0:
            return image, damage, (0, 0, width, height)
        x0, y0 = int(round(width * self.pad)), int(round(height * self.pad))
        return _pad_replicate(image, x0, y0), damage, (x0, y0, width, height)

    def _embedded(self, path: str | os.PathLike[str], aligned: Sequence[Any],
                  damage: str | None, frame: tuple[int, int, int, int]
                  ) -> list[EmbeddedFace]:
        """The aligned faces of one image embedded as one batch (a face and its mirror, or
        every face of a group photo, in one call of the model); boxes in the file's own
        pixels (``frame``), clipped to them."""
        from slimface.align.stages import stage

        with stage("embed"):
            embs = embed_crops_any(self.runner, np.stack([a.crop for a in aligned]), self.flip)
        flag = option_hint(self.interface, "allow_damaged")
        notes = [] if damage is None else [
            Note(f"{path}: damaged image data ({damage}); used anyway ({flag})",
                 DamagedImageWarning)]
        out = []
        for a, emb in zip(aligned, embs):
            face = getattr(a, "face", None)
            box = None if face is None else _box_in(frame, face.box)
            score = None if face is None else getattr(face, "score", None)
            score = None if score is None or not np.isfinite(score) else float(score)
            out.append(EmbeddedFace(str(path), emb, a.crop, a.status, box, score,
                                    notes + _small_face_note(path, box)))
        return out

    def embed_files(self, paths: Sequence[str | os.PathLike[str]],
                    multi_face: FaceChoice = "error", no_face: str = "error",
                    progress: bool = False, threads: int = 1,
                    bad_file: str = "error") -> list[Any]:
        """:meth:`embed_file` of each file (``multi_face="all"``: :meth:`embed_file_all`, a
        list of faces per file). All or nothing by default: the first bad file (in input
        order) raises before anything is returned. ``bad_file="skip"`` puts each image's
        :class:`ImageError` (unreadable, no face, several faces) in its place instead, so a
        batch command can report it and go on with the others. ``threads`` files are in
        flight at once, one thread each: JPEG decoding, OpenCV and ONNX Runtime release the
        GIL, so one photo's decode overlaps another's detection and the threads use as many
        cores."""
        from tqdm import tqdm

        check_choice(self.interface, "bad_file", bad_file, BAD_FILE_POLICIES)

        def one(path: str | os.PathLike[str]) -> EmbeddedFace | list[EmbeddedFace] | ImageError:
            try:
                if multi_face == ALL_FACES:
                    return self.embed_file_all(path, no_face=no_face)
                return self.embed_file(path, multi_face=multi_face, no_face=no_face)
            except ImageError as exc:
                if bad_file == "error":
                    raise
                return exc

        workers = max(1, min(int(threads), len(paths)))
        bar = tqdm(total=len(paths), desc="embed", unit="img", disable=not progress,
                   leave=False)
        with bar:
            if workers == 1:
                return [_counted(one(p), bar) for p in paths]
            _ = self.runner  # choose the runtime once, before the threads start
            with _torch_threads_shared(self.runner, workers), \
                    ThreadPoolExecutor(workers, thread_name_prefix="slimface-embed") as pool:
                futures = [pool.submit(one, p) for p in paths]
                try:
                    return [_counted(f.result(), bar) for f in futures]
                except BaseException:
                    for f in futures:
                        f.cancel()  # files not started yet are not embedded in vain
                    raise

    # ---- steps ---------------------------------------------------------------------------
    def _load(self, path: str | os.PathLike[str], aligner: Callable[..., Any]
              ) -> tuple[Any, str | None]:
        """Pixels and, for a damaged image used anyway, what the decoder reported.

        For the pipeline's own aligners (``aligner``, the one that will run) the pixels are
        a :class:`slimface.align.photo.Photo`: a big JPEG decoded at the reduced scale
        detection needs, finer levels on demand; other aligners get an array."""
        damage = None
        if self._image_loader is not None:
            image = self._image_loader(str(path))
        else:
            from slimface.align.photo import Photo
            from slimface.align.pipeline import align_all, align_image
            from slimface.io.image import decode_image

            try:
                if self.pad == 0 and aligner in (align_image, align_all):
                    photo = Photo.open(path, allow_damaged=self.allow_damaged)
                    return photo, photo.damage
                decoded = decode_image(path, allow_damaged=self.allow_damaged)
            except DamagedImageError as exc:
                hint = option_hint(self.interface, "allow_damaged")
                raise DamagedImageError(path, exc.bare_problem,
                                        remedy=f"pass {hint} to use it anyway") from None
            image, damage = decoded.pixels, decoded.damage
        return image, damage

    def _align(self, path: str | os.PathLike[str], image: np.ndarray, multi_face: str,
               no_face: str) -> Any:
        """Detector, then the model's fallback detector; face errors re-raised naming ``path``."""
        aligner = self._aligner or _default_aligner()
        return self._mapped_face_errors(
            path, image, lambda: aligner(image, template=self.template,
                                         detector=self.detector_name, multi_face=multi_face,
                                         no_face=no_face, fallback_detector=self.fallback_name))

    def _mapped_face_errors(self, path: str | os.PathLike[str], image: Any,
                            align: Callable[[], Any]) -> Any:
        """``align()``, its face errors re-raised naming ``path`` and the options of this
        interface that would take the image."""
        try:
            return align()
        except MultipleFacesError as exc:
            hint = " or ".join(option_hint(self.interface, "face", c)
                               for c in MULTI_FACE_CHOICES if c != "error")
            if self.interface == "api":  # the CLI names --face all where a command has it
                hint += " (every face: FaceMatcher.embed_all, identify_all)"
            raise MultipleFacesError(path, exc.bare_problem,
                                     remedy=f"use a photo with one face, or pass {hint}"
                                     ) from None
        except FaceError as exc:
            tried = " then ".join(n for n in (self.detector_name, self.fallback_name) if n)
            centre = option_hint(self.interface, "no_face", "centre")
            advice = (_no_face_advice(image)
                      or f"for a pre-cropped face pass {centre}{exc.note}")
            raise type(exc)(path, f"no face found (detectors tried: {tried}); "
                                  f"{advice}") from None


#: Images with a shorter side below this hold no face a detector or a model can use.
MIN_FACE_IMAGE_SIDE = 32


#: Faces narrower than this (pixels of the photo) match much less reliably: on LFW view 1
#: the default model loses 1.7 points of pair accuracy at 34 px and 6.5 at 24 px, where 3%
#: of the faces are not found at all (``python benchmarks/face_size.py``).
SMALL_FACE_PX = 32


class Note(str):
    """One line of :attr:`EmbeddedFace.warnings`: a plain string to print or put in JSON,
    which also says the Python warning category ``FaceMatcher.enroll`` raises it as."""

    category: type[Warning]

    def __new__(cls, text: str, category: type[Warning]) -> Note:
        note = super().__new__(cls, text)
        note.category = category
        return note


def _small_face_note(path: Any, box: Sequence[float] | None) -> list[Note]:
    """A note for a face under :data:`SMALL_FACE_PX` wide, else nothing."""
    if box is None or box[2] - box[0] >= SMALL_FACE_PX:
        return []
    return [Note(f"{path}: the face is {box[2] - box[0]:.0f} pixels wide; faces under "
                 f"{SMALL_FACE_PX} px match much less reliably (a closer or sharper photo "
                 f"helps)", SmallFaceWarning)]


def _image_source(image: Any) -> tuple[str | os.PathLike[str], np.ndarray | None]:
    """``(path, None)`` for a file; ``(name, RGB pixels)`` for an image in memory (see
    :func:`slimface.io.image.pixels_in_memory`: the name stands for the path in messages
    and results). Anything else is a TypeError."""
    if isinstance(image, (str, os.PathLike)):
        return image, None
    from slimface.io.image import pixels_in_memory

    return pixels_in_memory(image)


def _size(image: Any) -> tuple[int, int]:
    """``(width, height)`` of a :class:`~slimface.align.photo.Photo` or an image array."""
    size = getattr(image, "size", None)  # a Photo: (width, height)
    return size if isinstance(size, tuple) else (int(image.shape[1]), int(image.shape[0]))


def _no_face_advice(image: Any) -> str:
    """What to say instead of suggesting a centre crop, when a centre crop would embed
    nothing: an image too small for a face, or one of a single colour; else ""."""
    width, height = _size(image)
    pixels = getattr(getattr(image, "detection_level", None), "pixels", image)
    if min(width, height) < MIN_FACE_IMAGE_SIDE:
        return f"the image is {width}x{height} pixels, too small to hold a face"
    if float(np.asarray(pixels).std()) < 2.0:
        return "the image is blank (one colour all over)"
    return ""


#: Longest side over shortest beyond which an image is a strip, not a photo: no face fits
#: it, so it is refused before decoding levels and detecting.
MAX_ASPECT_RATIO = 100


def _check_proportions(path: str | os.PathLike[str], image: Any) -> None:
    """Refuse a strip of an image (1x10000 pixels) with a message naming the file."""
    width, height = _size(image)
    if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
        raise NoFaceError(path, f"the image is {width}x{height} pixels, a strip more than "
                                f"{MAX_ASPECT_RATIO} times as long as it is wide: no face "
                                f"can be found in it")


def default_threads() -> int:
    """Files embedded at once when the caller does not say: the cores, at most
    :data:`MAX_DEFAULT_THREADS` (each photo in flight holds its decoded levels)."""
    return max(1, min(MAX_DEFAULT_THREADS, os.cpu_count() or 1))


@contextmanager
def _torch_threads_shared(runner: Any, workers: int) -> Iterator[None]:
    """While ``workers`` photos run at once on a PyTorch model, give each a share of the
    cores rather than all of them (ONNX Runtime twins already run one thread each)."""
    if not callable(getattr(runner, "state_dict", None)):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _counted(face: Any, bar: Any) -> Any:
    """``face`` (a face, the faces of a group photo, or an image's error), counted."""
    bar.update()
    return face


def _default_aligner() -> Callable[..., Any]:
    from slimface.align.pipeline import align_image

    return align_image


def _default_all_aligner() -> Callable[..., Any]:
    from slimface.align.pipeline import align_all

    return align_all


def _box_in(frame: tuple[int, int, int, int], box: Any) -> list[float]:
    """A detector's box (left, top, right, bottom; it may reach past the edges where a face
    does) in the coordinates of ``frame``'s pixels, clipped to them, to 0.01 px (what every
    result shows)."""
    x0, y0, width, height = frame
    left, top, right, bottom = (float(v) for v in np.asarray(box).ravel())
    return [round(min(max(v - shift, 0.0), side), 2) for v, shift, side in
            ((left, x0, width), (top, y0, height), (right, x0, width), (bottom, y0, height))]


def _pad_replicate(image: np.ndarray, x: int, y: int) -> np.ndarray:
    """Tight crops (AT&T, UTKFace) need context around the face before detection: ``x``
    and ``y`` pixels of replicated border."""
    return np.pad(image, ((y, y), (x, x), (0, 0)), mode="edge")
