"""Identity folders: ``root/IDENTITY/image`` (CASIA-WebFace, the CelebA subset, AT&T...)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from slimface.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp")


@dataclass
class IdentityFolder:
    """Image paths with integer labels; ``classes[label]`` is the identity folder name."""

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]


def scan_identity_folders(root: str | Path, min_images: int = 1, max_identities: int = 0,
                          exclude: Iterable[str | Path] = ()) -> IdentityFolder:
    """List ``root/IDENTITY/*.jpg``; keep identities with at least ``min_images`` images.

    ``exclude`` removes individual files (e.g. LFW pair images, see
    :func:`slimface.data.lfw.lfw_excluded_images`). Identities and files are sorted so labels
    are reproducible across runs and processes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: training data folder not found (expected root/IDENTITY/image)")
    skip = {Path(p).resolve() for p in exclude}
    paths: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    for ident in sorted(d for d in root.iterdir() if d.is_dir()):
        files = sorted(f for f in ident.iterdir()
                       if f.suffix.lower() in IMAGE_SUFFIXES
                       and (not skip or f.resolve() not in skip))
        if len(files) < max(min_images, 1):
            continue
        label = len(classes)
        classes.append(ident.name)
        paths += files
        labels += [label] * len(files)
        if max_identities and len(classes) >= max_identities:
            break
    if not classes:
        raise DataError(f"{root}: no identity folder has {max(min_images, 1)}+ images")
    return IdentityFolder(paths, np.asarray(labels, dtype=np.int64), classes)
