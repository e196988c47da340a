"""Labeled Faces in the Wild: pairs files, image paths, and the people/images that must stay
out of training and calibration (the exclusion rule, :func:`lfw_exclusion`).

Two pair-file formats exist (http://vis-www.cs.umass.edu/lfw/README.txt):

* **View 2** (``pairs.txt``): a header ``10 300`` (folds, pairs per class per fold), then for
  each fold 300 same-person lines ``name i j`` followed by 300 different-person lines
  ``name1 i name2 j``. This is the benchmark; results are reported on it.
* **View 1** (``pairsDevTrain.txt`` / ``pairsDevTest.txt``): a header ``N``, then ``N`` same
  and ``N`` different lines, no folds. It exists for tuning (thresholds, hyper-parameters)
  without touching view 2, so it is exposed as one train/test split (:func:`load_view1`).

Image ``i`` of ``name`` is ``<images>/<name>/<name>_<i:04d>.jpg``. Every malformed line is a
:class:`DataError` naming the file and line, because a silently skipped pair changes the
benchmark.

The exclusion rule: nothing trains, calibrates or tunes on an image named by a pair of view 2
*or* view 1 (:func:`lfw_exclusion`, one parser for both views). Training, distillation, PQ and
int8 calibration all check their inputs through it.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from slimface.data.roots import find_data_root
from slimface.errors import DataError

PathLike = str | os.PathLike[str]

#: Image folder names of the LFW variants, best first (deep-funneled is what ../shared has).
IMAGE_DIR_NAMES: tuple[str, ...] = ("lfw-deepfunneled", "lfw_deepfunneled", "lfw",
                                    "lfw-funneled", "lfw_funneled", "images")
VIEW2_FILE = "pairs.txt"
VIEW1_FILES = ("pairsDevTrain.txt", "pairsDevTest.txt")


@dataclass(frozen=True)
class Pair:
    """One verification pair; ``fold`` is 0..9 in view 2, 0 (train) / 1 (test) in view 1."""

    path_a: Path
    path_b: Path
    same: bool
    fold: int


@dataclass(frozen=True)
class View1Split:
    """View 1 as one split: pick thresholds/hyper-parameters on ``train``, check on ``test``."""

    train: list[Pair]
    test: list[Pair]

    @property
    def pairs(self) -> list[Pair]:
        return self.train + self.test


def image_path(images_root: PathLike, name: str, number: int) -> Path:
    """``<images_root>/<name>/<name>_<number:04d>.jpg`` (the LFW naming scheme)."""
    return Path(images_root) / name / f"{name}_{number:04d}.jpg"


def find_images_root(lfw_root: PathLike) -> Path:
    """The image folder inside an LFW folder (any of :data:`IMAGE_DIR_NAMES`)."""
    root = Path(lfw_root)
    for name in IMAGE_DIR_NAMES:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root}: no LFW image folder (looked for {', '.join(IMAGE_DIR_NAMES)}); "
                    "run `slimface data fetch lfw` or pass --data DIR")


def find_lfw_root(data_root: PathLike) -> Path:
    """``<data>/lfw`` or ``<data>`` itself, whichever holds ``pairs.txt``."""
    root = Path(data_root)
    for candidate in (root / "lfw", root):
        if (candidate / VIEW2_FILE).is_file():
            return candidate
    raise DataError(f"{root}: no LFW found (expected {root / 'lfw' / VIEW2_FILE}); run "
                    "`slimface data fetch lfw` or pass --data DIR")


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: pairs file not found")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read pairs file ({exc})") from None


def _ints(path: Path, lineno: int, fields: Sequence[str], what: str) -> list[int]:
    try:
        values = [int(f) for f in fields]
    except ValueError:
        raise DataError(f"{path}:{lineno}: expected {what}, got {' '.join(fields)!r}") from None
    if any(v < 0 for v in values):
        raise DataError(f"{path}:{lineno}: negative number in {' '.join(fields)!r}")
    return values


@dataclass(frozen=True)
class PairRecord:
    """One pairs-file line as written: ``(name_a, number_a)`` vs ``(name_b, number_b)``."""

    name_a: str
    number_a: int
    name_b: str
    number_b: int
    same: bool


def _parse_pair_line(path: Path, lineno: int, line: str, same: bool) -> PairRecord:
    """One ``name i j`` (same) or ``name1 i name2 j`` (different) line."""
    fields = line.split()
    if same:
        if len(fields) != 3:
            raise DataError(f"{path}:{lineno}: expected a same-person line 'name i j', "
                            f"got {line.strip()!r}")
        i, j = _ints(path, lineno, fields[1:], "image numbers")
        return PairRecord(fields[0], i, fields[0], j, True)
    if len(fields) != 4:
        raise DataError(f"{path}:{lineno}: expected a different-person line 'name1 i name2 j', "
                        f"got {line.strip()!r}")
    i, j = _ints(path, lineno, [fields[1], fields[3]], "image numbers")
    return PairRecord(fields[0], i, fields[2], j, False)


def _header(path: Path, lines: list[str]) -> list[int]:
    if not lines or not lines[0].strip():
        raise DataError(f"{path}:1: empty pairs file (expected a header '10 300' or 'N')")
    fields = lines[0].split()
    if len(fields) not in (1, 2):
        raise DataError(f"{path}:1: expected a header '10 300' (view 2) or 'N' (view 1), "
                        f"got {lines[0].strip()!r}")
    return _ints(path, 1, fields, "a header '10 300' or 'N'")


def parse_pair_records(pairs_path: PathLike) -> list[tuple[PairRecord, int | None]]:
    """Every line of a view-2 (``10 300`` header) or view-1 (``N`` header) pairs file as
    ``(record, fold)``; the fold is the block number in view 2 and ``None`` in view 1.

    Needs no image folder: the exclusion rule reads names and numbers only. Blank lines at
    the end are ignored; any other line count that disagrees with the header, and every
    malformed line, is a :class:`DataError` naming the file and line.
    """
    path = Path(pairs_path)
    lines = _read_lines(path)
    header = _header(path, lines)
    n_folds, per_class = (1, header[0]) if len(header) == 1 else header
    body = lines[1:]
    while body and not body[-1].strip():
        body.pop()
    expected = n_folds * 2 * per_class
    if len(body) != expected:
        raise DataError(f"{path}: header {lines[0].strip()!r} promises {expected} pair lines, "
                        f"found {len(body)}")
    records = []
    for index, line in enumerate(body):
        block, offset = divmod(index, 2 * per_class)
        records.append((_parse_pair_line(path, index + 2, line, offset < per_class),
                        block if len(header) == 2 else None))
    return records


def parse_pairs(pairs_path: PathLike, images_root: PathLike | None = None,
                fold: int = 0) -> list[Pair]:
    """Parse a view-2 (``10 300`` header) or view-1 (``N`` header) pairs file.

    Args:
        pairs_path: the pairs file.
        images_root: folder of ``NAME/NAME_NNNN.jpg``; default: the image folder found beside
            the pairs file (:func:`find_images_root`).
        fold: fold number given to every pair of a view-1 file (view 2 carries its own).

    Returns:
        Pairs in file order (see :func:`parse_pair_records` for what is refused).
    """
    path = Path(pairs_path)
    records = parse_pair_records(path)
    images = Path(images_root) if images_root is not None else find_images_root(path.parent)
    return [Pair(image_path(images, r.name_a, r.number_a),
                 image_path(images, r.name_b, r.number_b), r.same,
                 fold if block is None else block) for r, block in records]


def load_view2(lfw_root: PathLike, images_root: PathLike | None = None) -> list[Pair]:
    """The 6000 benchmark pairs of ``<lfw_root>/pairs.txt`` with folds 0..9."""
    root = Path(lfw_root)
    return parse_pairs(root / VIEW2_FILE, images_root or find_images_root(root))


def load_view1(lfw_root: PathLike, images_root: PathLike | None = None) -> View1Split:
    """View 1 as a split: ``pairsDevTrain.txt`` (fold 0) and ``pairsDevTest.txt`` (fold 1)."""
    root = Path(lfw_root)
    images = images_root or find_images_root(root)
    train_file, test_file = (root / name for name in VIEW1_FILES)
    return View1Split(parse_pairs(train_file, images, fold=0),
                      parse_pairs(test_file, images, fold=1))


def unique_images(pairs: Iterable[Pair]) -> list[Path]:
    """Every image of ``pairs`` once, in first-appearance order (embed each image once)."""
    seen: dict[Path, None] = {}
    for p in pairs:
        seen.setdefault(p.path_a, None)
        seen.setdefault(p.path_b, None)
    return list(seen)


def _as_path_list(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def lfw_pair_images(pairs_path: PathLike | Iterable[PathLike],
                    images_root: PathLike | None = None) -> set[Path]:
    """Resolved paths of every image used by the given pairs file(s).

    Training, calibration and distillation code removes these from its inputs (the honesty
    rule). Paths are ``Path.resolve()``-d, so compare with ``p.resolve() in excluded``.
    """
    found: set[Path] = set()
    for path in _as_path_list(pairs_path):
        images = images_root if images_root is not None else find_images_root(path.parent)
        found.update(p.resolve() for p in unique_images(parse_pairs(path, images)))
    return found


def lfw_people(images_root: PathLike) -> dict[str, list[Path]]:
    """Every person folder of an LFW image folder -> its JPEG files, sorted."""
    root = Path(images_root)
    if not root.is_dir():
        raise DataError(f"{root}: LFW image folder not found")
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}


def lfw_people_not_in_pairs(pairs_path: PathLike | Iterable[PathLike],
                            images_root: PathLike | None = None) -> dict[str, list[Path]]:
    """People who appear in no pair of the given file(s) -> all their images.

    With view 2 this is 1,468 people / 1,549 images of deep-funneled LFW; they may be used for
    training (say so where used). Names are read from the pairs lines, so an image of a
    person used anywhere in the pairs excludes the whole person.
    """
    files = _as_path_list(pairs_path)
    images = Path(images_root) if images_root is not None else find_images_root(files[0].parent)
    used: set[str] = set()
    for path in files:
        for pair in parse_pairs(path, images):
            used.add(pair.path_a.parent.name)
            used.add(pair.path_b.parent.name)
    return {name: paths for name, paths in lfw_people(images).items() if name not in used}


def count_by_class(pairs: Iterable[Pair]) -> dict[str, int]:
    """``{"same": n, "different": m}``, for reports and sanity checks."""
    counts: dict[str, int] = defaultdict(int)
    for p in pairs:
        counts["same" if p.same else "different"] += 1
    return dict(counts)


# ------------------------------------------------------------------------ the exclusion rule
#: Every pairs file whose images never train, calibrate or tune anything: view 2, then view 1.
LFW_PAIR_FILES: tuple[str, ...] = (VIEW2_FILE, *VIEW1_FILES)


@dataclass(frozen=True)
class LfwExclusion:
    """People and ``(person, image number)`` named by the LFW pairs files that were read."""

    people: frozenset[str]
    images: frozenset[tuple[str, int]]
    files: tuple[Path, ...]

    def image_paths(self, images_root: PathLike) -> set[Path]:
        """Resolved paths of the excluded images under ``images_root``."""
        root = Path(images_root).resolve()
        return {image_path(root, name, number) for name, number in self.images}


def lfw_pair_names(lfw_root: PathLike, files: Sequence[str] = LFW_PAIR_FILES
                   ) -> tuple[set[str], set[tuple[str, int]]]:
    """People and ``(person, image number)`` named by ``files`` under ``lfw_root``.

    View 2 (``pairs.txt``) must exist; the view-1 files are read when present.
    """
    found = lfw_exclusion(lfw_root, files)
    return set(found.people), set(found.images)


def lfw_exclusion(lfw_root: PathLike, files: Sequence[str] = LFW_PAIR_FILES) -> LfwExclusion:
    """The exclusion rule for one LFW folder: everything its pairs files name.

    Raises:
        DataError: ``pairs.txt`` is missing (nothing could be checked) or a file is malformed.
    """
    root = Path(lfw_root)
    paths = tuple(root / name for name in files if (root / name).is_file())
    if VIEW2_FILE in files and not (root / VIEW2_FILE).is_file():
        raise DataError(f"{root / VIEW2_FILE} not found: cannot exclude LFW pair images")
    people: set[str] = set()
    images: set[tuple[str, int]] = set()
    for path in paths:
        for record, _ in parse_pair_records(path):
            images.update({(record.name_a, record.number_a), (record.name_b, record.number_b)})
            people.update({record.name_a, record.name_b})
    return LfwExclusion(frozenset(people), frozenset(images), paths)


def lfw_excluded_images(lfw_root: PathLike) -> set[Path]:
    """Resolved paths of every LFW image named in ``pairs.txt`` and the view-1 files."""
    return lfw_exclusion(lfw_root).image_paths(find_images_root(lfw_root))


def refuse_lfw_pair_images(paths: Iterable[PathLike], data_root: PathLike | None = None,
                           purpose: str = "calibrate") -> None:
    """Raise if any of ``paths`` is an LFW pair image (view 1 or view 2).

    An image inside an LFW folder (one holding ``pairs.txt``) is checked against that
    folder's pairs files; any other image against the LFW under ``data_root`` (default:
    :func:`slimface.data.roots.find_data_root`). An image in a folder named ``lfw*`` with no
    pairs files above it cannot be checked, so it is refused too.

    Raises:
        DataError: naming the first offending image and what to use instead.
    """
    lfw_above: dict[Path, Path | None] = {}
    banned: dict[Path | None, set[Path]] = {}

    def excluded(lfw_root: Path | None) -> set[Path]:
        if lfw_root not in banned:
            banned[lfw_root] = lfw_excluded_images(lfw_root) if lfw_root is not None else set()
        return banned[lfw_root]

    root = find_data_root(data_root)
    default = next((c for c in ((root / "lfw", root) if root is not None else ())
                    if (c / VIEW2_FILE).is_file()), None)
    for path in paths:
        image = Path(path).resolve()
        folder = image.parent
        if folder not in lfw_above:
            lfw_above[folder] = next((d for d in (folder, *folder.parents)
                                      if (d / VIEW2_FILE).is_file()), None)
        own = lfw_above[folder]
        if own is None and any(part.lower().startswith("lfw") for part in folder.parts):
            raise DataError(f"{folder}: refusing to {purpose} on LFW images without the pairs "
                            "files beside them to check; use CelebA or other non-benchmark faces")
        if image in excluded(own or default):
            raise DataError(f"{path}: refusing to {purpose} on an LFW pair image (view 1 or "
                            "view 2); use CelebA or other non-benchmark faces")
