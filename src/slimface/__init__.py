"""slimface: small, fast face recognition for CPUs and devices."""
from __future__ import annotations

__version__ = "0.1.0"

from slimface.errors import SlimfaceError  # noqa: E402

__all__ = ["SlimfaceError", "__version__"]
