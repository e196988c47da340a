"""The binary-weight twin with its embedding head in float: the second cycle's recipe
(``distill_slimface_mobile_binary_fm_stage2``, teacher the shipped default) with the head's
1x1 expansion conv and the embedding FC kept float as well, restarted from the second
cycle's kept weights (the two layers start from their latent weights).

Those two layers hold 164k of the model's 954k weights and shape the embedding directly; in
float they add about 0.64 MB, so the file stays under 1 MiB. Every conv of the body keeps
1-bit weights. Run it after the second cycle, from its work dir:

    slimface train configs/distill_slimface_mobile_binary_fm_float_head.py           # first run
    slimface train configs/distill_slimface_mobile_binary_fm_float_head.py --resume  # later runs
    slimface compress quantize --model work_dirs/distill_slimface_mobile_binary_fm_float_head/\\
backbone.pt --scheme xnor --a-bits 32 --out slimface_mobile_binary.slim --parity 200
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

_stage2 = load_config(Path(__file__).with_name("distill_slimface_mobile_binary_fm_stage2.py"))

config = replace(
    _stage2,
    backbone_kwargs={**_stage2.backbone_kwargs,
                     "keep_float": ["stem.0.0", "head.gdconv.0", "head.expand.0", "head.fc"]},
    init_from="work_dirs/distill_slimface_mobile_binary_fm_stage2/backbone.pt",
    steps_per_epoch=5000,
)
