"""Weights committed with the package (what each file is and how it was made: README.md here).

Found through ``importlib.resources`` so they resolve wherever pip installed the package.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_file(name: str) -> Path | None:
    """The committed file ``name`` (e.g. ``q_face_resnet_small.slim``), or None."""
    ref = resources.files(__name__).joinpath(name)
    return Path(str(ref)) if ref.is_file() else None


def shipped_files(suffix: str) -> dict[str, Path]:
    """Committed files ending in ``suffix``, by stem (e.g. every ``.slim`` deploy file)."""
    return {Path(str(f)).stem: Path(str(f)) for f in resources.files(__name__).iterdir()
            if str(f).endswith(suffix)}
