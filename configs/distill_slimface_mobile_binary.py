"""A binary-weight student: ``slimnet_s`` with 1-bit XNOR weights, distilled from the dlib teacher
starting from the trained float ``slimnet_s`` of ``distill_slimface_mobile.py`` (the binarized
student learns from a float network: its float twin's weights as the start and the teacher's
embeddings as the target).

Every conv and the embedding FC carry sign(w) * per-channel alpha weights (straight-through
gradient); activations stay float (a binary-weight network: the sign-select-and-add kernel
path). Kept float: the stem's first conv (3 input channels) and the global depthwise conv of
the head (one 7x7 filter per channel: binarizing it throws away the spatial weighting that is
the point of GDConv). Same data, augmentation and label-free L2 loss as the float student.

    slimface train configs/distill_slimface_mobile_binary.py
    slimface compress quantize --model work_dirs/distill_slimface_mobile_binary/backbone.pt \\
        --scheme xnor --a-bits 32 --out slimface_mobile_binary.slim

The earlier shipped ``slimface_mobile_binary.slim`` (95.53% on LFW) came from this recipe
under the cached-target loop that ``slimface train`` replaced (``slimface compress distill``
then wrote ``model.pt``; see ``distill_slimface_mobile.py``); the shipped one now is the
default model's twin, ``distill_slimface_mobile_binary_fm.py``.
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_slimface_mobile.py")),
    backbone="quantized",
    backbone_kwargs={"base": "slimnet_s", "scheme": "xnor", "w_bits": 1, "a_bits": 32,
                     "keep_float": ["stem.0.0", "head.gdconv.0"]},
    init_from="work_dirs/distill_slimface_mobile/backbone.pt",
    steps_per_epoch=4000,
    lr=1e-3,
    weight_decay=0.0,  # decay would pull latent weights to 0, where their signs flip at random
    threads=1,
    eval_every=500,
)
