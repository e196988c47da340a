"""Where this user's files live: caches (``$SLIMFACE_CACHE``, else ``~/.cache/slimface``) and
data the user makes, such as calibrated verify thresholds (``$SLIMFACE_HOME``, else the
platform's user data folder). Nothing is ever written into the installed package.

Data-set roots (``--data``, ``$SLIMFACE_DATA``) belong to :mod:`slimface.data.roots`; the names
below are re-exported from there so older imports keep working.
"""
from __future__ import annotations

import os
from pathlib import Path

from slimface.data.roots import data_candidates, data_root, find_data_root


def cache_root() -> Path:
    """Crop caches, teacher-embedding caches: ``$SLIMFACE_CACHE`` or ``~/.cache/slimface``."""
    root = Path(os.environ.get("SLIMFACE_CACHE", Path.home() / ".cache" / "slimface"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def user_data_root(create: bool = False) -> Path:
    """Files the user makes (calibrated thresholds): ``$SLIMFACE_HOME``, else the platform's
    user data folder (``~/.local/share/slimface`` on Linux)."""
    if os.environ.get("SLIMFACE_HOME"):
        root = Path(os.environ["SLIMFACE_HOME"])
    else:
        from platformdirs import user_data_dir

        root = Path(user_data_dir("slimface", appauthor=False))
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


__all__ = ["cache_root", "data_candidates", "data_root", "find_data_root", "user_data_root"]
