"""The binary-weight twin of the default model: ``slimnet_s2`` (192-d) with 1-bit XNOR
weights and float activations, distilled by function matching from ``slimface-mobile``
itself and starting from its weights.

The same data, augmentation, mixup and losses as ``distill_mobilefacenet_fm.py``; the teacher
is the float parent (in torch, a few ms per batch), so the twin learns to reproduce its
parent's embedding space. Every conv and the embedding FC carry sign(w) * per-channel alpha
(straight-through gradient); kept float: the stem's first conv (3 input channels) and the
head's global depthwise conv (one 7x7 filter per channel). No weight decay: it would pull
latent weights to 0, where their signs flip at random.

    slimface train configs/distill_slimface_mobile_binary_fm.py            # first run
    slimface train configs/distill_slimface_mobile_binary_fm.py --resume   # every later run
    slimface compress quantize --model work_dirs/distill_slimface_mobile_binary_fm/backbone.pt \\
        --scheme xnor --a-bits 32 --out slimface_mobile_binary.slim
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm.py")),
    teacher="slimface-mobile",
    backbone="quantized",
    backbone_kwargs={"base": "slimnet_s2", "base_kwargs": {"embedding_dim": 192},
                     "scheme": "xnor", "w_bits": 1, "a_bits": 32,
                     "keep_float": ["stem.0.0", "head.gdconv.0"]},
    init_from="slimface-mobile",
    lr=1e-3,
    weight_decay=0.0,
    warmup_steps=100,
    steps_per_epoch=4000,
    eval_every=500,
)
