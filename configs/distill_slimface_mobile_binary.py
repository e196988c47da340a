"""A binary-weight student: ``slimnet_s`` with 1-bit XNOR weights, distilled from the dlib teacher
starting from the trained float ``slimnet_s`` of ``distill_slimface_mobile.py`` (the binarized
student learns from float networks: its float twin's weights are the start and the teacher's
embeddings the target).

Every conv and the embedding FC carry sign(w) * per-channel alpha weights (straight-through
gradient); activations stay float (a binary-weight network: the sign-select-and-add kernel
path). Kept float: the stem's first conv (3 input channels) and the global depthwise conv of
the head (one 7x7 filter per channel: binarizing it throws away the spatial weighting that is
the point of GDConv). Same data, augmentation and label-free L2 loss as the float student.

    slimface compress distill configs/distill_slimface_mobile_binary.py
    slimface compress quantize --model work_dirs/distill_slimface_mobile_binary/model.pt \
        --scheme xnor --a-bits 32 --out slimface_mobile_binary.slim
"""
from dataclasses import replace
from pathlib import Path

import slimface.compress  # noqa: F401 - registers the "quantized" backbone
from slimface.compress.distill import load_distill_config

config = replace(
    load_distill_config(Path(__file__).with_name("distill_slimface_mobile.py")),
    student="quantized",
    student_kwargs={"base": "slimnet_s", "scheme": "xnor", "w_bits": 1, "a_bits": 32,
                    "keep_float": ["stem.0.0", "head.gdconv.0"]},
    init_from="work_dirs/distill_slimface_mobile/model.pt",
    steps=4000,
    lr=1e-3,
    weight_decay=0.0,  # decay would pull latent weights to 0, where their signs flip at random
    threads=1,
    eval_every=500,
)
