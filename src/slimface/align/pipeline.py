"""Detect + align, for one image (:func:`align_image`) or a list of files (:func:`align_paths`).

Policies are explicit because each caller needs a different one:

* ``multi_face``: ``"largest"`` (batch crops for training), ``"central"`` (protocol images such
  as LFW, where the subject is centred: the face whose box centre is nearest the image
  centre), ``"error"`` (user-facing verify: :class:`~slimface.errors.MultipleFacesError`;
  faces with less than a quarter of the largest face's area are ignored so a small face in
  the background does not block a selfie).
* ``no_face``: ``"centre"`` (protocol images: crop where a centred face would be, status
  ``"centre"``, counted in :attr:`AlignedBatch.n_centre`) or ``"error"``
  (:class:`~slimface.errors.NoFaceError`).
* ``fallback_detector``: tried when the main detector finds nothing (status
  ``"fallback_detector"``), e.g. dlib HOG first for the dlib ResNet, RetinaFace after.

:func:`align_paths` detects in ``workers`` processes (each loads its own models, one thread
each) and keeps an on-disk cache (:mod:`slimface.align.cache`) so a second evaluation
neither detects nor decodes again.

Big photos are never processed at full resolution unless a face needs it
(:mod:`slimface.align.photo` decodes them at a reduced scale). Detection runs coarse to fine
(:func:`detect_faces`): first on a small copy (:data:`COARSE_SIDE_PER_MIN_FACE` times the
detector's smallest face on the long side: 384 pixels for RetinaFace), then, while that
finds no face (or, for ``multi_face="error"``, none big enough to rule out a second one),
on larger copies up to :data:`~slimface.align.photo.DETECT_SIDE` pixels; a big photo where
none of them shows a face gets one last look in tiles of a finer copy (:func:`fine_copy`,
:func:`detect_tiled`). A chosen face that
was small on its copy is detected again in a region around it at a finer scale
(:func:`refine_face`), so its landmarks are as precise as a big face's. A face that only the
fallback detector found (too small for the main detector's copies: dlib's HOG window is
80 px) is handed back to the main detector in such a region, at its working size, so the
model still gets the landmarks of the detector it was trained with. Images no larger than
the coarse copy (LFW's 250x250) are detected once, as they are.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from slimface import errors
from slimface.conventions import BAD_FILE_POLICIES
from slimface.align.detect import Detector, Face, create_detector, nms
from slimface.align.photo import DETECT_SIDE, Level, Photo
from slimface.align.stages import stage
from slimface.align.templates import Template, get_template
from slimface.align.warp import (apply_affine, centred_landmarks, compose_affine, crop_ratio,
                                 face_transform, invert_affine, warp_with_matrix)

MULTI_FACE_POLICIES = ("error", "largest", "central")
#: Every face of an image (:func:`align_all`, ``--face all``) rather than one.
ALL_FACES = "all"
NO_FACE_POLICIES = ("error", "centre")
#: The status of a file skipped by ``bad_file="skip"`` (its crop is all zeros).
UNREADABLE = "unreadable"
STATUSES = ("detected", "fallback_detector", "centre")
#: Faces smaller than this fraction of the largest do not count for ``multi_face="error"``.
MIN_RELATIVE_AREA = 0.25
#: Long side of the coarse detection copy, in multiples of the detector's smallest face
#: (RetinaFace: 16 px -> 384 px; dlib's 80 px HOG window -> none, as that exceeds the fine
#: copy). When its faces are final: :func:`detect_faces`.
COARSE_SIDE_PER_MIN_FACE = 24
#: A chosen face is detected again in a region around it where it is this wide (or as wide
#: as the decoded photo has it), when that is at least :data:`REFINE_GAIN` times as wide as
#: on the copy it was found on ...
REFINE_FACE_PX = 112
REFINE_GAIN = 1.25
#: ... in a square region this many face widths across.
REFINE_CONTEXT = 2.0
#: When no detector finds a face on its copies and the photo is at least
#: :data:`FINE_MIN_RATIO` times larger than :data:`~slimface.align.photo.DETECT_SIDE`, the
#: last detector of the chain looks once more, on a copy of up to this long side, in tiles
#: (a finer level is decoded for it). A face in a group photo, a panorama or a 27-megapixel
#: shot is often under 2% of the long side: 16-20 px on the 1,024 px copy, at RetinaFace's
#: limit; here it is twice that. 1,920 px is two tiles per side of a 4:3 photo. It costs a
#: photo without any face a second decode and four 1,024 px detections (about a quarter of
#: a second of one core: docs/speed-photos.md); photos with a face found earlier never
#: reach it.
FINE_DETECT_SIDE = 1920
FINE_MIN_RATIO = 1.5
#: Pixels neighbouring tiles of the fine copy share: more than any face the coarser copies
#: could have missed (about 40 px at 1,920 px), so each such face is whole on some tile.
TILE_OVERLAP = 128


@dataclass
class AlignedFace:
    """One aligned crop, the face it came from (None for a centre crop) and how it was found."""

    crop: np.ndarray
    face: Face | None
    status: str


@dataclass
class AlignedBatch:
    """Crops of many files in input order, with per-file status and detections."""

    crops: np.ndarray
    status: list[str]
    faces: list[Face | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    template: str = ""
    #: Files skipped by ``bad_file="skip"`` (status :data:`UNREADABLE`), with their problem.
    problems: dict[str, str] = field(default_factory=dict)
    #: Damaged files aligned anyway (``allow_damaged=True``), with what is wrong with them.
    damaged: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.status)

    @property
    def n_centre(self) -> int:
        """Images where no detector found a face (centre-crop fallback)."""
        return self.status.count("centre")

    def counts(self) -> dict[str, int]:
        """``{"detected": n, "fallback_detector": n, "centre": n}``."""
        return {s: self.status.count(s) for s in STATUSES}


def _check_policy(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise errors.ConfigError(f"{name}={value!r} is not a valid policy "
                                 f"(choose from: {', '.join(allowed)})")


@lru_cache(maxsize=8)
def _cached_detector(name: str) -> Detector:
    return create_detector(name)


def resolve_detector(detector: str | Detector | None) -> Detector | None:
    """A detector instance from a name (built once per process) or an instance."""
    if detector is None or isinstance(detector, Detector):
        return detector
    return _cached_detector(detector)


def select_face(faces: list[Face], image_shape: tuple[int, ...], multi_face: str,
                path: str | os.PathLike[str] | None = None) -> Face:
    """Pick one of several faces according to ``multi_face`` (see module docstring)."""
    if len(faces) == 1:
        return faces[0]
    if multi_face == "largest":
        return max(faces, key=lambda f: f.area)
    if multi_face == "central":
        centre = np.array([image_shape[1], image_shape[0]], dtype=np.float64) / 2
        return min(faces, key=lambda f: float(np.sum((f.centre - centre) ** 2)))
    largest = max(f.area for f in faces)
    big = [f for f in faces if f.area >= MIN_RELATIVE_AREA * largest]
    if len(big) > 1:
        raise errors.MultipleFacesError(
            path, f"{len(big)} faces found",
            remedy="use a photo with one face, or pass multi_face='largest' or 'central'")
    return max(faces, key=lambda f: f.area)


def detect_one(image: np.ndarray, detector: Detector, fallback: Detector | None,
               multi_face: str, path: Any = None) -> tuple[Face | None, str]:
    """:func:`detect_photo` of pixels already in memory."""
    return detect_photo(Photo.from_array(image), detector, fallback, multi_face, path)


def detect_photo(photo: Photo, detector: Detector | None, fallback: Detector | None,
                 multi_face: str, path: Any = None) -> tuple[Face | None, str]:
    """The chosen face (full-resolution coordinates) and its status; ``(None, "centre")``
    when no detector found one, on its usual copies nor on the fine one
    (:data:`FINE_DETECT_SIDE`)."""
    found = _first_found(photo, detector, fallback, multi_face)
    if found is None:
        return None, "centre"
    return found.refined(photo, select_face(found.faces, photo.shape, multi_face, path))


def detect_all(photo: Photo, detector: Detector | None, fallback: Detector | None
               ) -> list[tuple[Face, str]]:
    """Every face of a group photo, left to right, each refined as :func:`detect_photo`
    refines its one face; with its status.

    Every detector of the chain looks at its largest copy
    (:data:`~slimface.align.photo.DETECT_SIDE`), and in a photo big enough for it the one
    that sees the smallest faces looks at the fine copy's tiles too (:func:`fine_copy`:
    faces down to about 1.5% of the long side). A face found more than once is kept as the
    main detector found it, then the fallback, then the tiles: a group photo needs every
    face at once, so there is no coarse-to-fine shortcut, and a big one pays for the tiles
    (a finer decode and a few more 1,024 px detections) whatever it holds."""
    owned = [(face, search) for search in _searches(photo, detector, fallback, ALL_FACES)
             for face in search.faces]
    kept = _first_of_each_face(owned)
    return [owner.refined(photo, f) for f, owner in sorted(kept, key=lambda p: p[0].centre[0])]


def _first_of_each_face(owned: list[tuple[Face, "_Found"]]) -> list[tuple[Face, "_Found"]]:
    """``owned`` without the later finds of a face found earlier (boxes overlapping by an
    intersection over union of 0.4 or more): detectors' scores are not comparable, so the
    order of the search decides."""
    kept: list[tuple[Face, _Found]] = []
    for face, owner in owned:
        if all(_iou(face.box, other.box) < 0.4 for other, _ in kept):
            kept.append((face, owner))
    return kept


def _chain(detector: Detector | None, fallback: Detector | None) -> list[tuple[Detector, str]]:
    """The detectors to try in order, with the status a face found by each gets."""
    return [(det, status) for det, status in ((detector, "detected"),
                                              (fallback, "fallback_detector"))
            if det is not None]


@dataclass
class _Found:
    """The faces one detector of a chain found, the copy it found them on and, for a
    fallback detector, the main detector and its copy (to hand small faces back to it)."""

    detector: Detector
    faces: list[Face]
    copy: Level
    status: str
    main: Detector | None = None
    main_copy: Level | None = None

    def refined(self, photo: Photo, face: Face) -> tuple[Face, str]:
        """``face`` refined (:func:`refine_face`); a face only the fallback found is handed
        back to the main detector in a region around it."""
        face = refine_face(photo, self.detector, face, self.copy)
        if self.main is None or self.main_copy is None:
            return face, self.status
        # a face too small on the main detector's copies: the main detector sees it at its
        # own working size, in a region around it, and gives its landmarks (not when its
        # copy was as fine as the file: LFW-size images)
        on_main = _face_width(face) / self.main_copy.full_per_pixel
        again = redetect_around(photo, self.main, face,
                                max(REFINE_FACE_PX, 2 * self.main.min_face_px()),
                                min_width_px=REFINE_GAIN * on_main)
        return (again, "detected") if again is not None else (face, self.status)


def _first_found(photo: Photo, detector: Detector | None, fallback: Detector | None,
                 multi_face: str) -> _Found | None:
    """The main detector's faces, else the fallback's, else the tiled look's (None when
    none of them finds a face)."""
    return next((s for s in _searches(photo, detector, fallback, multi_face) if s.faces), None)


def _searches(photo: Photo, detector: Detector | None, fallback: Detector | None,
              multi_face: str) -> Iterator[_Found]:
    """Each detector of the chain on its copies (:func:`detect_faces`), then, in a photo
    big enough for it (:func:`fine_copy`), the detector that sees the smallest faces
    (RetinaFace's 16 px, not HOG's 80) on the fine copy's tiles; made one at a time, so a
    caller that stops at the first faces pays for nothing after them."""
    chain = _chain(detector, fallback)
    main_copy = None
    for det, status in chain:
        faces, copy = detect_faces(photo, det, multi_face)
        if det is detector:
            main_copy = copy
        yield _Found(det, faces, copy, status, *_handed_back(det, detector, fallback,
                                                              main_copy))
    fine = fine_copy(photo) if chain else None
    if fine is not None:
        det, status = min(chain, key=lambda c: c[0].min_face_px())
        yield _Found(det, detect_tiled(fine, det), fine, status,
                     *_handed_back(det, detector, fallback, main_copy))


def _handed_back(det: Detector, main: Detector | None, fallback: Detector | None,
                 main_copy: Level | None) -> tuple[Detector | None, Level | None]:
    """(main detector, its copy) when ``det`` is the fallback, else (None, None)."""
    return (main, main_copy) if det is fallback else (None, None)


def fine_copy(photo: Photo) -> Level | None:
    """The upright copy of at most :data:`FINE_DETECT_SIDE` pixels on the long side for the
    last look at a photo where no face was found; None for a photo smaller than
    :data:`FINE_MIN_RATIO` times :data:`~slimface.align.photo.DETECT_SIDE` (its usual copies
    saw it nearly whole)."""
    longest = max(photo.size)
    if longest < FINE_MIN_RATIO * DETECT_SIDE:
        return None
    side = min(FINE_DETECT_SIDE, longest)
    level = photo.level_for(longest / side)
    if level.long_side < FINE_MIN_RATIO * DETECT_SIDE:
        return None  # the file has nothing finer than the copies already seen
    return level.resized(side, final=cv2.INTER_LINEAR).upright()


def _face_width(face: Face) -> float:
    return float(face.box[2] - face.box[0])


def _to_full(faces: list[Face], level: Level) -> list[Face]:
    """Faces found on ``level`` moved to full-resolution coordinates (in place)."""
    for f in faces:
        f.landmarks = apply_affine(level.to_full, f.landmarks).astype(np.float32)
        f.box = apply_affine(level.to_full, np.asarray(f.box).reshape(2, 2)
                             ).ravel().astype(np.float32)
    return faces


def detection_sides(photo: Photo, detector: Detector, multi_face: str) -> list[int]:
    """Long sides of the copies :func:`detect_faces` may try, smallest first: the coarse
    one, one between it and the fine one, and the fine one (at most
    :data:`~slimface.align.photo.DETECT_SIDE`); none larger than the photo's detection
    level, whose own size ends the list when it is reached."""
    longest = photo.detection_level.long_side
    sides = [DETECT_SIDE]
    coarse = int(COARSE_SIDE_PER_MIN_FACE * detector.min_face_px())
    if coarse < DETECT_SIDE and multi_face not in ("central", ALL_FACES):
        # a small central face may hide behind a big one; every face is wanted
        sides = [coarse, int(round(math.sqrt(coarse * DETECT_SIDE))), DETECT_SIDE]
    out = []
    for side in sides:
        out.append(min(side, longest))
        if longest <= side:
            break
    return out


def detect_tiled(level: Level, detector: Detector) -> list[Face]:
    """Faces (full-resolution coordinates, best first) on ``level`` looked at in tiles of at
    most :data:`~slimface.align.photo.DETECT_SIDE` pixels that overlap by
    :data:`TILE_OVERLAP`, so no detector shrinks its input and a face on a tile border is
    whole on one tile. Each tile keeps only the faces centred in its own share of the
    overlaps (up to their middle), so a face cut by a tile's edge, whose whole is on the
    neighbour, is not a second face; what still overlaps is merged by non-maximum
    suppression."""
    h, w = level.pixels.shape[:2]
    faces: list[Face] = []
    for y0, (top, bottom) in _tiles(h):
        for x0, (left, right) in _tiles(w):
            tile = level.region(x0, y0, x0 + DETECT_SIDE, y0 + DETECT_SIDE)
            found = [f for f in detector.detect(tile.pixels, pad=0.0)
                     if left <= x0 + (f.box[0] + f.box[2]) / 2 < right
                     and top <= y0 + (f.box[1] + f.box[3]) / 2 < bottom]
            faces += _to_full(found, tile)
    if len(faces) < 2:
        return faces
    keep = nms(np.stack([f.box for f in faces]), np.array([f.score for f in faces]), 0.4)
    return [faces[i] for i in keep]


def _tiles(length: int) -> list[tuple[int, tuple[float, float]]]:
    """Each tile's offset along ``length`` and the span of face centres it keeps: from the
    middle of its overlap with the tile before to the middle of that with the tile after."""
    starts = _tile_starts(length)
    cuts = [(a + DETECT_SIDE + b) / 2 for a, b in zip(starts, starts[1:])]
    bounds = [-math.inf, *cuts, math.inf]
    return [(s, (bounds[i], bounds[i + 1])) for i, s in enumerate(starts)]


def _tile_starts(length: int) -> list[int]:
    """Offsets of tiles of :data:`~slimface.align.photo.DETECT_SIDE` along ``length``
    pixels, evenly spread, neighbours sharing at least :data:`TILE_OVERLAP`."""
    if length <= DETECT_SIDE:
        return [0]
    n = math.ceil((length - TILE_OVERLAP) / (DETECT_SIDE - TILE_OVERLAP))
    return [round(i * (length - DETECT_SIDE) / (n - 1)) for i in range(n)]


def small_face_note(photo: Photo, detector: Detector) -> str:
    """For a photo larger than the biggest copy detection looks at: the face width (in the
    photo's pixels) below which the detector cannot find a face there, so a user crops
    rather than falls back to the centre."""
    width, height = photo.size
    longest = max(width, height)
    if longest <= DETECT_SIDE:
        return ""
    seen = FINE_DETECT_SIDE if longest >= FINE_MIN_RATIO * DETECT_SIDE else DETECT_SIDE
    smallest = detector.min_face_px() * longest / min(seen, longest)
    return (f"; in a {width}x{height} photo, faces narrower than about {smallest:.0f} px "
            f"can be missed: crop around the face")


def detect_faces(photo: Photo, detector: Detector, multi_face: str = "largest"
                 ) -> tuple[list[Face], Level]:
    """Faces (full-resolution coordinates) and the upright copy they were found on.

    A copy is made only when the one before it did not settle the question: for
    ``"largest"`` any face does (a face it missed is smaller than one it found); for
    ``"error"`` a largest face at least twice the detector's smallest, so every face of a
    quarter of its area was findable too. ``"central"`` and ``"all"`` always detect on the
    fine copy."""
    sides = detection_sides(photo, detector, multi_face)
    need = 2 * detector.min_face_px() if multi_face == "error" else 0.0
    base = photo.detection_level
    for i, side in enumerate(sides):
        # detector input: after the area halvings, a bilinear step of less than 2x
        copy = base.resized(side, final=cv2.INTER_LINEAR).upright()
        faces = detector.detect(copy.pixels)
        widest = max((_face_width(f) for f in faces), default=-1.0)
        if i == len(sides) - 1 or (faces and widest >= need):
            return _to_full(faces, copy), copy
    raise AssertionError("unreachable: the last copy always returns")


def refine_face(photo: Photo, detector: Detector, face: Face, copy: Level) -> Face:
    """``face`` detected again in a region around it at a finer scale (see
    :data:`REFINE_FACE_PX`), so a face that was small on its detection copy gets landmarks
    as precise as a big face's; the original when the region finds no face overlapping it.

    Measured on 300 phone-size photos made from face crops (``benchmarks/
    photos_agreement.py``): it brings the landmarks of faces 60-200 px between the eyes from
    11.2% to 6.1% of the eye distance away from those found on the source crop itself (the
    full-resolution pipeline: 7.1%), and of smaller faces from 11.4% to 5.0% (9.2%), for
    about 3 ms a photo."""
    width = _face_width(face)  # full-resolution pixels
    on_copy = width / copy.full_per_pixel
    if width <= 0 or REFINE_FACE_PX < REFINE_GAIN * on_copy:
        return face  # big enough on its copy already
    again = redetect_around(photo, detector, face, REFINE_FACE_PX,
                            min_width_px=REFINE_GAIN * on_copy)
    return face if again is None else again


def redetect_around(photo: Photo, detector: Detector, face: Face, width_px: float,
                    min_width_px: float = 0.0) -> Face | None:
    """``detector`` on a square region :data:`REFINE_CONTEXT` face widths across around
    ``face``, where the face is ``width_px`` wide (or as wide as the file has it, if less;
    None when that is under ``min_width_px``); the face it finds overlapping ``face``
    (intersection over union 0.3 or more), else None.

    The region is cut from the coarsest level that has the face at least ``width_px /``
    :data:`REFINE_GAIN` wide, decoded now if need be (a small face's warp needs that level
    anyway and reuses it)."""
    width = _face_width(face)  # full-resolution pixels
    level = photo.level_for(width * REFINE_GAIN / width_px)
    on_level = width / level.full_per_pixel
    target = min(on_level, width_px)
    if width <= 0 or target < min_width_px:
        return None  # nothing finer in the file
    centre = apply_affine(invert_affine(level.to_full), np.asarray(face.centre)[None])[0]
    half = REFINE_CONTEXT * on_level / 2
    region = level.region(int(centre[0] - half), int(centre[1] - half),
                          int(centre[0] + half) + 1, int(centre[1] + half) + 1)
    if min(region.pixels.shape[:2]) < 8:
        return None
    region = region.resized(max(1, round(region.long_side * target / on_level))).upright()
    found = _to_full(detector.detect(region.pixels, pad=0.0), region)
    best = max(found, key=lambda f: _iou(f.box, face.box), default=None)
    if best is None or _iou(best.box, face.box) < 0.3:
        return None
    return best


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def crop_for(image: np.ndarray, face: Face | None, template: Template) -> np.ndarray:
    """Warp ``face`` onto ``template``; a centre crop when ``face`` is None."""
    return crop_photo(Photo.from_array(image), face, template)


def crop_photo(photo: Photo, face: Face | None, template: Template) -> np.ndarray:
    """Warp ``face`` (full-resolution landmarks) onto ``template`` from the level of
    ``photo`` at about the crop's scale; a centre crop when ``face`` is None."""
    if face is None:
        landmarks, kind = centred_landmarks(photo.shape), "5pt"
    else:
        landmarks, kind = face.landmarks, face.kind
    m = face_transform(landmarks, template, kind)  # full image -> crop
    level = photo.level_for(crop_ratio(m))  # full-resolution pixels per crop pixel
    return warp_with_matrix(level.pixels, compose_affine(m, level.to_full), template.size,
                            truncate=template.geometry == "dlib_chip")


def align_image(image_or_path: np.ndarray | Photo | str | os.PathLike[str],
                template: str | Template = "arcface112",
                detector: str | Detector = "retinaface", multi_face: str = "error",
                no_face: str = "error",
                fallback_detector: str | Detector | None = None) -> AlignedFace:
    """Detect, choose and align the face of one image (an RGB uint8 array, a
    :class:`~slimface.align.photo.Photo` or a file path).

    Raises:
        NoFaceError: no face and ``no_face="error"``.
        MultipleFacesError: several faces and ``multi_face="error"``.
        ImageError: the file cannot be read (see :func:`slimface.io.image.load_image`).
    """
    _check_policy("multi_face", multi_face, MULTI_FACE_POLICIES)
    _check_policy("no_face", no_face, NO_FACE_POLICIES)
    photo, path = _as_photo(image_or_path)
    t = get_template(template)
    main, fallback = resolve_detector(detector), resolve_detector(fallback_detector)
    with stage("detect"):
        face, status = detect_photo(photo, main, fallback, multi_face, path)
    if face is None and no_face == "error":
        raise _no_face_error(photo, path, detector, fallback_detector)
    with stage("align"):
        crop = crop_photo(photo, face, t)
    return AlignedFace(crop=crop, face=face, status=status)


def align_all(image_or_path: np.ndarray | Photo | str | os.PathLike[str],
              template: str | Template = "arcface112",
              detector: str | Detector = "retinaface", no_face: str = "error",
              fallback_detector: str | Detector | None = None) -> list[AlignedFace]:
    """Every face of one image aligned, left to right (a group photo: :func:`detect_all`);
    with ``no_face="centre"`` an image without a face gives its centre crop.

    Raises:
        NoFaceError: no face and ``no_face="error"``.
        ImageError: the file cannot be read.
    """
    _check_policy("no_face", no_face, NO_FACE_POLICIES)
    photo, path = _as_photo(image_or_path)
    t = get_template(template)
    main, fallback = resolve_detector(detector), resolve_detector(fallback_detector)
    with stage("detect"):
        found = detect_all(photo, main, fallback)
    if not found:
        if no_face == "error":
            raise _no_face_error(photo, path, detector, fallback_detector)
        found = [(None, "centre")]
    with stage("align"):
        return [AlignedFace(crop=crop_photo(photo, face, t), face=face, status=status)
                for face, status in found]


def _as_photo(image_or_path: np.ndarray | Photo | str | os.PathLike[str]
              ) -> tuple[Photo, Any]:
    """A :class:`Photo` and its path (None for pixels in memory)."""
    if isinstance(image_or_path, np.ndarray):
        return Photo.from_array(image_or_path), None
    if isinstance(image_or_path, Photo):
        return image_or_path, image_or_path.path
    return Photo.open(image_or_path), image_or_path


def _no_face_error(photo: Photo, path: Any, detector: str | Detector,
                   fallback_detector: str | Detector | None) -> errors.NoFaceError:
    """The error for an image where no detector of the chain found a face, with the face
    size below which the finest of them cannot see one in a photo this big."""
    finest = min((d for d in (resolve_detector(detector), resolve_detector(fallback_detector))
                  if d is not None), key=lambda d: d.min_face_px())
    return errors.NoFaceError(path, "no face found (tried "
                                    f"{_chain_names(detector, fallback_detector)})",
                              note=small_face_note(photo, finest))


def _chain_names(detector: str | Detector, fallback: str | Detector | None) -> str:
    names = [d if isinstance(d, str) else d.name for d in (detector, fallback) if d is not None]
    return " then ".join(names)


# --------------------------------------------------------------------------- batch alignment

@dataclass(frozen=True)
class _Job:
    """What a worker needs (picklable: detectors load their models lazily, per process)."""

    template: Template
    detector: Detector | None
    fallback: Detector | None
    multi_face: str
    allow_damaged: bool = False


_WORKER: dict[str, Any] = {}


def _init_worker(job: _Job, forked: bool = True) -> None:
    """Per-process setup: one thread per worker, models loaded once.

    Workers are spawned, not forked: a forked child deadlocks in onnxruntime once the parent
    has run a session (measured: pool hung at 0% CPU). ``SLIMFACE_MP_START=fork`` overrides;
    model caches are then dropped in the child."""
    import cv2

    from slimface.align.detect import dlib_hog, retinaface

    if forked:
        cv2.setNumThreads(1)
        retinaface._session.cache_clear()
        dlib_hog._models.cache_clear()
        _cached_detector.cache_clear()
    _WORKER["job"] = job


def _work(task: tuple[int, str, Face | None, bool]) -> tuple:
    """Align one file; returns ``(index, status, face, crop, damage)`` (damage: what is
    wrong with a damaged image used anyway, else None) or ``(index, "error", cls, path,
    problem)``.

    ImageError subclasses take (path, problem) and do not survive pickling, so errors travel
    back as data and are re-raised in the parent."""
    index, path, known_face, known = task
    job: _Job = _WORKER["job"]
    try:
        photo = Photo.open(path, allow_damaged=job.allow_damaged)
        if known:
            face, status = known_face, ("centre" if known_face is None else "known")
        else:
            face, status = detect_photo(photo, job.detector, job.fallback, job.multi_face,
                                        path)
        return index, status, face, crop_photo(photo, face, job.template), photo.damage
    except errors.ImageError as exc:
        return index, "error", type(exc).__name__, exc.path, exc.bare_problem, exc.remedy


def _raise_worker_error(result: tuple) -> None:
    _, _, cls_name, path, problem, remedy = result
    raise getattr(errors, cls_name)(path, problem, remedy=remedy)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start spawned workers without re-running the caller's script.

    A spawned child normally re-imports ``__main__`` from its file, which re-runs any script
    that lacks an ``if __name__ == "__main__":`` guard (and slows every start by the script's
    imports). The workers need nothing from ``__main__`` (their code lives in this module), so
    ``__file__``/``__spec__`` are hidden from multiprocessing while the pool starts."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _run_jobs(job: _Job, tasks: list[tuple], workers: int, progress: bool,
              desc: str) -> Iterable[tuple]:
    """Yield worker results (any order), serially or in a process pool."""
    from tqdm import tqdm

    if not tasks:
        return
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress or not tasks,
               dynamic_ncols=True, leave=False)
    workers = max(1, min(workers, math.ceil(len(tasks) / 32)))
    try:
        if workers == 1:
            _init_worker(job, forked=False)
            for task in tasks:
                yield _work(task)
                bar.update()
            return
        ctx = mp.get_context(os.environ.get("SLIMFACE_MP_START", "spawn"))
        with _main_module_hidden():
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=(job,))
        with pool:
            for result in pool.imap_unordered(_work, tasks, chunksize=8):
                yield result
                bar.update()
    finally:
        bar.close()


def align_paths(paths: Sequence[str | os.PathLike[str]], template: str | Template,
                detector: str | Detector = "retinaface",
                fallback_detector: str | Detector | None = None, multi_face: str = "largest",
                no_face: str = "centre", cache: bool = True, workers: int = 2,
                progress: bool = True, bad_file: str = "error",
                allow_damaged: bool = False) -> AlignedBatch:
    """Align many files; crops come back in input order as one (N, H, W, 3) uint8 array.

    With ``cache=True`` detections and crops are stored under
    ``cache_root()/"crops"`` keyed by (absolute path, size, mtime, detector chain and
    settings, multi-face policy, template geometry); files already there are neither
    detected nor decoded again. A file that cannot be read raises its ImageError; with
    ``bad_file="skip"`` it gets the status :data:`UNREADABLE` and a zero crop instead, its
    problem goes into ``problems``, and the other files are aligned (one bad photo among
    thousands does not stop a folder). ``allow_damaged=True`` aligns a damaged image (a
    truncated JPEG) from the pixels its decoder produced, records it in ``damaged`` and
    keeps it out of the cache, so a later strict run still reports it.
    """
    from slimface.align.cache import CropCache, FileKey, chain_signature

    _check_policy("multi_face", multi_face, ("largest", "central", "error"))
    _check_policy("no_face", no_face, NO_FACE_POLICIES)
    _check_policy("bad_file", bad_file, BAD_FILE_POLICIES)
    t = get_template(template)
    det, fb = resolve_detector(detector), resolve_detector(fallback_detector)
    keys = [FileKey.of(p) for p in paths]
    n = len(keys)
    crops = np.zeros((n, *t.size, 3), dtype=np.uint8)
    status: list[str] = [""] * n
    faces: list[Face | None] = [None] * n
    chain = chain_signature(det, fb, multi_face)
    store = CropCache.open(chain, t) if cache else None

    todo = list(range(n))
    if store is not None:
        todo = store.fill(keys, crops, status, faces)
    unique: dict[FileKey, list[int]] = {}
    for i in todo:
        unique.setdefault(keys[i], []).append(i)
    known = store.detections([k for k in unique]) if store is not None else {}
    tasks = []
    for key, idx in unique.items():
        hit = known.get(key)
        tasks.append((idx[0], key.path, hit[1] if hit else None, hit is not None))
    job = _Job(t, det, fb, multi_face, allow_damaged)
    new: list[tuple[FileKey, str, Face | None, np.ndarray]] = []
    problems: dict[str, str] = {}
    damaged: dict[str, str] = {}
    try:
        for result in _run_jobs(job, tasks, workers, progress, f"align {t.name}"):
            if result[1] == "error":
                if bad_file == "error" or issubclass(getattr(errors, result[2]),
                                                     errors.FaceError):
                    _raise_worker_error(result)  # a face problem is --face/--no-face's
                key = keys[result[0]]
                problems[key.path] = result[4]
                for i in unique[key]:
                    status[i] = UNREADABLE
                continue
            first, st, face, crop, damage = result
            key = keys[first]
            st = known[key][0] if st == "known" else st
            for i in unique[key]:
                crops[i], status[i], faces[i] = crop, st, face
            if damage is not None:
                damaged[key.path] = damage
                continue
            new.append((key, st, face, crop))
            if store is not None and len(new) >= store.chunk_rows:
                store.add(new)
                new = []
    finally:
        if store is not None:
            store.add(new)
            store.close()
    if no_face == "error" and "centre" in status:
        bad = [keys[i].path for i, s in enumerate(status) if s == "centre"]
        more = f" ({len(bad) - 1} more files without a face)" if len(bad) > 1 else ""
        raise errors.NoFaceError(bad[0], f"no face found{more}")
    return AlignedBatch(crops=crops, status=status, faces=faces,
                        paths=[k.path for k in keys], template=t.name, problems=problems,
                        damaged=damaged)
