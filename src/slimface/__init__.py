"""slimface: small, fast face recognition for CPUs and devices."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from slimface.errors import SlimfaceError  # noqa: E402

__all__ = ["FaceMatcher", "SlimfaceError", "__version__"]


def __getattr__(name: str) -> Any:
    """Lazy ``slimface.FaceMatcher`` so ``import slimface`` does not load torch or FAISS."""
    if name == "FaceMatcher":
        from slimface.api import FaceMatcher

        return FaceMatcher
    raise AttributeError(f"module 'slimface' has no attribute {name!r}")
