"""Conventions every stage shares and no stage owns (torch-free, importable from anywhere).

The flip default lives here so that ``slimface eval`` measures the very vectors that
``slimface embed``, ``verify``, the gallery and ``FaceMatcher`` produce.
"""
from __future__ import annotations

import os
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

#: The model used when none is named (``$SLIMFACE_MODEL`` overrides): ``slimface-mobile``,
#: the 0.96M-parameter student distilled from the imported MobileFaceNet; its card
#: (``slimface models show --model slimface-mobile``) has its LFW figures and their command.
DEFAULT_MODEL = "slimface-mobile"


def default_model_name() -> str:
    """``$SLIMFACE_MODEL`` when set, else :data:`DEFAULT_MODEL`."""
    return os.environ.get("SLIMFACE_MODEL") or DEFAULT_MODEL
