"""Labeled Faces in the Wild: pairs files, image paths, and the people/images that must stay
out of training.

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
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

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


def _parse_pair_line(path: Path, lineno: int, line: str, same: bool,
                     images_root: Path, fold: int) -> Pair:
    """One ``name i j`` (same) or ``name1 i name2 j`` (different) line."""
    fields = line.split()
    if same:
        if len(fields) != 3:
            raise DataError(f"{path}:{lineno}: expected a same-person line 'name i j', "
                            f"got {line.strip()!r}")
        i, j = _ints(path, lineno, fields[1:], "image numbers")
        return Pair(image_path(images_root, fields[0], i), image_path(images_root, fields[0], j),
                    True, fold)
    if len(fields) != 4:
        raise DataError(f"{path}:{lineno}: expected a different-person line 'name1 i name2 j', "
                        f"got {line.strip()!r}")
    i, j = _ints(path, lineno, [fields[1], fields[3]], "image numbers")
    return Pair(image_path(images_root, fields[0], i), image_path(images_root, fields[2], j),
                False, fold)


def _header(path: Path, lines: list[str]) -> list[int]:
    if not lines or not lines[0].strip():
        raise DataError(f"{path}:1: empty pairs file (expected a header '10 300' or 'N')")
    fields = lines[0].split()
    if len(fields) not in (1, 2):
        raise DataError(f"{path}:1: expected a header '10 300' (view 2) or 'N' (view 1), "
                        f"got {lines[0].strip()!r}")
    return _ints(path, 1, fields, "a header '10 300' or 'N'")


def parse_pairs(pairs_path: PathLike, images_root: PathLike | None = None,
                fold: int = 0) -> list[Pair]:
    """Parse a view-2 (``10 300`` header) or view-1 (``N`` header) pairs file.

    Args:
        pairs_path: the pairs file.
        images_root: folder of ``NAME/NAME_NNNN.jpg``; default: the image folder found beside
            the pairs file (:func:`find_images_root`).
        fold: fold number given to every pair of a view-1 file (view 2 carries its own).

    Returns:
        Pairs in file order. Blank lines at the end are ignored; any other line count that
        disagrees with the header is a :class:`DataError`.
    """
    path = Path(pairs_path)
    lines = _read_lines(path)
    images = Path(images_root) if images_root is not None else find_images_root(path.parent)
    header = _header(path, lines)
    n_folds, per_class = (1, header[0]) if len(header) == 1 else header
    body = lines[1:]
    while body and not body[-1].strip():
        body.pop()
    expected = n_folds * 2 * per_class
    if len(body) != expected:
        raise DataError(f"{path}: header {lines[0].strip()!r} promises {expected} pair lines, "
                        f"found {len(body)}")
    pairs = []
    for index, line in enumerate(body):
        block, offset = divmod(index, 2 * per_class)
        pair_fold = block if len(header) == 2 else fold
        pairs.append(_parse_pair_line(path, index + 2, line, offset < per_class, images,
                                      pair_fold))
    return pairs


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
