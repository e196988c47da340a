"""The binary-weight twin with float edges: the twin's recipe
(``distill_slimface_mobile_binary_fm``: function matching from ``slimface-mobile``, starting
from its weights) with every small layer that binarizes badly kept float, in one cosine.

Binarizing one layer at a time of the float default (sign times per-channel mean, 120 CelebA
faces) costs the most in its cheapest layers: the embedding's cosine to the parent's falls to
0.63-0.74 for the stem's second conv, the first stage's convs and its shortcut, and to 0.61
for the head's expansion, against 0.91-0.97 for the large late convs. So the stem, the first
stage, the three 1x1 shortcuts and the head (expansion, global depthwise conv, embedding FC)
stay float: 235k of the 954k weights, stored as float16 in the exported file (about 0.6 MB
in all, under the 1 MiB budget); the 719k weights of stages 2 and 3 keep 1-bit weights.

    slimface train configs/distill_slimface_mobile_binary_fm_float_edges.py            # first run
    slimface train configs/distill_slimface_mobile_binary_fm_float_edges.py --resume   # later runs
    slimface compress quantize \\
        --model work_dirs/distill_slimface_mobile_binary_fm_float_edges/backbone.pt \\
        --scheme xnor --a-bits 32 --float16-float-weights --out slimface_mobile_binary.slim --parity 200
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

_twin = load_config(Path(__file__).with_name("distill_slimface_mobile_binary_fm.py"))

FLOAT_EDGES = [
    "stem.0.0", "stem.1.0",
    "stages.0.0.conv1.0", "stages.0.0.conv2.0", "stages.0.0.shortcut.0",
    "stages.0.1.conv1.0", "stages.0.1.conv2.0",
    "stages.1.0.shortcut.0", "stages.2.0.shortcut.0",
    "head.expand.0", "head.gdconv.0", "head.fc",
]

config = replace(
    _twin,
    backbone_kwargs={**_twin.backbone_kwargs, "keep_float": FLOAT_EDGES},
    steps_per_epoch=9000,
    eval_every=1000,
)
