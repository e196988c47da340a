"""Second cycle of the default recipe (``distill_mobilefacenet_fm``): the same function
matching from the imported MobileFaceNet, restarted from the first cycle's kept weights with
a fresh, lower cosine (warm restart).

The first cycle's learning rate reached zero while its LFW view-1 read-outs were still
rising slowly; a second, shorter cycle from its weights tests whether more steps at a
moderate rate carry the student further. Run it after the first cycle, from its work dir:

    slimface train configs/distill_mobilefacenet_fm.py                 # cycle 1 -> work_dirs/
    slimface train configs/distill_mobilefacenet_fm_stage2.py          # cycle 2
    slimface train configs/distill_mobilefacenet_fm_stage2.py --resume # every later run
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm.py")),
    init_from="work_dirs/distill_mobilefacenet_fm/backbone.pt",
    lr=1e-3,
    warmup_steps=200,
    steps_per_epoch=5500,
    seed=1,
)
