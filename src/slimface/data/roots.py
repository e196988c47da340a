"""Where the data sets live. One resolution order everywhere: an explicit ``--data``, then
``$SLIMFACE_DATA``, then ``../shared/data`` beside the working directory or the checkout, so
commands work unchanged in a clone next to ``shared/``."""
from __future__ import annotations

import os
from pathlib import Path

from slimface.errors import DataError

_REPO_ROOT = Path(__file__).resolve().parents[3]


def data_candidates(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders :func:`find_data_root` tries, in order."""
    if explicit is not None:
        return [Path(explicit)]
    found = []
    if os.environ.get("SLIMFACE_DATA"):
        found.append(Path(os.environ["SLIMFACE_DATA"]))
    for p in (Path.cwd() / ".." / "shared" / "data", _REPO_ROOT / ".." / "shared" / "data"):
        if p.resolve() not in {f.resolve() for f in found}:
            found.append(p)
    return found


def find_data_root(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing data root, or ``None`` (tests use this to skip cleanly)."""
    for p in data_candidates(explicit):
        if p.is_dir():
            return p.resolve()
    return None


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Like :func:`find_data_root` but raises a :class:`DataError` that says how to fix it."""
    root = find_data_root(explicit)
    if root is None:
        tried = ", ".join(str(p) for p in data_candidates(explicit))
        raise DataError(f"no data folder found (tried {tried}); pass --data DIR, set "
                        "SLIMFACE_DATA, or run `slimface data fetch lfw`")
    return root
