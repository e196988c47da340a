"""Conventions every stage shares and no stage owns (torch-free, importable from anywhere).

The flip default lives here so that ``slimface eval`` measures the very vectors that
``slimface embed``, ``verify``, the gallery and ``FaceMatcher`` produce.
"""
from __future__ import annotations

from typing import Literal

FlipMode = Literal["none", "sum", "concat"]
#: ``none``: the crop alone; ``sum``: the crop's and its mirror image's L2-normalised
#: embeddings summed (InsightFace); ``concat``: the two concatenated (Zhou et al. 2018).
FLIP_MODES: tuple[str, ...] = ("none", "sum", "concat")
#: What every user-facing path embeds with, evaluation included.
DEFAULT_FLIP: FlipMode = "sum"
#: What a batch does with an image it cannot use (``align_paths``, ``embed_faces``, the
#: commands' ``--bad-file``): stop, or name it and go on with the others.
BAD_FILE_POLICIES: tuple[str, ...] = ("error", "skip")
