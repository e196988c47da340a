"""Training images for label-free distillation: which images, and padded copies to detect on.

Sources (all under the data root; LFW *pair* images are never used, see
:func:`list_training_images`):

* ``utkface``: UTKFace_160, ~23k faces without identity labels (embedding distillation needs
  none; some LFW celebrities may appear in it with other photos);
* ``celeba``: the CelebA subset, 10k images labelled by CelebA identity;
* ``lfw_unpaired``: LFW people who appear in no pair of ``pairs.txt`` *nor* of the view-1
  files, so view-1 health checks stay honest too;
* ``att``: AT&T faces, 40 people x 10 grey images.

UTKFace, CelebA and AT&T crops are tight (the face fills the frame), so those images are
padded by replicating their borders before detection (a copy is written once to the cache).
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from slimface.data.lfw import (find_images_root, find_lfw_root, lfw_pair_names,
                               refuse_lfw_pair_images)
from slimface.errors import DataError
from slimface.io.paths import cache_root

SOURCES: tuple[str, ...] = ("utkface", "celeba", "lfw_unpaired", "att")
#: Sources whose images are tight face crops and are padded before detection.
TIGHT_SOURCES: tuple[str, ...] = ("utkface", "celeba", "att")
UNLABELLED = -1


@dataclass
class ImageList:
    """Training images with their source and identity label (``UNLABELLED`` when none)."""

    paths: list[Path]
    sources: list[str]
    identities: list[str]        # "" when unlabelled; "<source>/<name>" otherwise

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sources:
            out[s] = out.get(s, 0) + 1
        return out

    def labels(self) -> tuple[np.ndarray, list[str]]:
        """Integer labels (``UNLABELLED`` for unlabelled images) and the class names."""
        classes = sorted({i for i in self.identities if i})
        index = {c: k for k, c in enumerate(classes)}
        return (np.array([index.get(i, UNLABELLED) for i in self.identities], np.int64),
                classes)

    def subset(self, keep: Sequence[int]) -> "ImageList":
        return ImageList([self.paths[i] for i in keep], [self.sources[i] for i in keep],
                         [self.identities[i] for i in keep])


def _check_sources(sources: Iterable[str]) -> list[str]:
    sources = list(sources)
    bad = [s for s in sources if s not in SOURCES]
    if bad:
        raise DataError(f"unknown distillation source(s) {bad} (choose from "
                        f"{', '.join(SOURCES)})")
    return sources


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {what} folder not found under the data root")
    return path


def _utkface(root: Path) -> tuple[list[Path], list[str]]:
    folder = _require_dir(root / "utkface" / "UTKFace_160", "UTKFace")
    paths = sorted(folder.glob("*.jpg"))
    return paths, [""] * len(paths)


def _celeba(root: Path) -> tuple[list[Path], list[str]]:
    folder = _require_dir(root / "celeba_subset" / "img_align_celeba_89x109", "CelebA subset")
    paths = sorted(folder.glob("*/*.jpg"))
    return paths, [f"celeba/{p.parent.name}" for p in paths]


def _att(root: Path) -> tuple[list[Path], list[str]]:
    folder = _require_dir(root / "att_faces", "AT&T faces")
    paths = sorted(folder.glob("s*/*.pgm"))
    return paths, [f"att/{p.parent.name}" for p in paths]


def _lfw_unpaired(root: Path) -> tuple[list[Path], list[str]]:
    """Every image of the LFW people named in no pair (any image of a paired person is out)."""
    lfw_root = find_lfw_root(root)
    used, _ = lfw_pair_names(lfw_root)
    images_root = find_images_root(lfw_root)
    with os.scandir(images_root) as it:  # scandir: no stat per entry (5,749 folders)
        people = sorted(e.name for e in it if e.is_dir() and e.name not in used)
    paths = []
    for name in people:
        with os.scandir(images_root / name) as it:
            paths += sorted(images_root / name / e.name for e in it if e.name.endswith(".jpg"))
    return paths, [f"lfw/{p.parent.name}" for p in paths]


_LISTERS = {"utkface": _utkface, "celeba": _celeba, "lfw_unpaired": _lfw_unpaired,
            "att": _att}


def list_training_images(data_root: Path, sources: Iterable[str] = SOURCES) -> ImageList:
    """All images of ``sources``; raises :class:`DataError` if any LFW pair image slipped in."""
    paths: list[Path] = []
    srcs: list[str] = []
    ids: list[str] = []
    for source in _check_sources(sources):
        p, i = _LISTERS[source](Path(data_root))
        paths += p
        ids += i
        srcs += [source] * len(p)
    images = ImageList(paths, srcs, ids)
    if "lfw_unpaired" in srcs:  # a leak would be a bug, not a user mistake: never train on it
        refuse_lfw_pair_images([p for p, s in zip(paths, srcs) if s == "lfw_unpaired"],
                               data_root, purpose="train")
    return images


# ----------------------------------------------------------------------------- padding

def _padded_path(src: Path, out_dir: Path) -> Path:
    digest = hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:16]
    return out_dir / digest[:2] / f"{digest}.jpg"


def _write_padded(job: tuple[str, str, float]) -> None:
    from PIL import Image

    from slimface.io.image import load_image

    src, dst, fraction = job
    img = load_image(src)
    ph, pw = int(round(img.shape[0] * fraction)), int(round(img.shape[1] * fraction))
    padded = np.pad(img, ((ph, ph), (pw, pw), (0, 0)), mode="edge")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(dst).with_suffix(".tmp.jpg")
    Image.fromarray(padded).save(tmp, quality=95)
    os.replace(tmp, dst)


def padded_copies(images: ImageList, fraction: float, workers: int = 2,
                  progress: bool = True) -> list[Path]:
    """Paths to detect on: tight sources get a border-replicated copy (written once)."""
    from tqdm import tqdm

    out_dir = cache_root() / "distill" / f"padded{int(round(fraction * 100))}"
    result, jobs = [], []
    for path, source in zip(images.paths, images.sources):
        if source in TIGHT_SOURCES and fraction > 0:
            dst = _padded_path(path, out_dir)
            if not dst.is_file():
                jobs.append((str(path), str(dst), fraction))
            result.append(dst)
        else:
            result.append(path)
    if jobs:
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            list(tqdm(pool.map(_write_padded, jobs, chunksize=64), total=len(jobs),
                      desc="pad tight crops", disable=not progress, unit="img"))
    return result


