"""Second cycle of the binary-weight twin (``distill_slimface_mobile_binary_fm``): the same
function matching, now from the shipped default (both of its cycles) as the teacher,
restarted from the first cycle's kept weights with a longer, lower cosine.

The first cycle's view-1 read-outs rose mostly in its last 500 steps, as the learning rate
reached zero (1-bit weights settle their signs only when the steps get small); this cycle
gives that phase more steps. Run it after the first cycle, from its work dir:

    slimface train configs/distill_slimface_mobile_binary_fm.py           # cycle 1 -> work_dirs/
    slimface train configs/distill_slimface_mobile_binary_fm_stage2.py    # cycle 2
    slimface train configs/distill_slimface_mobile_binary_fm_stage2.py --resume  # later runs
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_slimface_mobile_binary_fm.py")),
    init_from="work_dirs/distill_slimface_mobile_binary_fm/backbone.pt",
    lr=5e-4,
    steps_per_epoch=8000,
)
