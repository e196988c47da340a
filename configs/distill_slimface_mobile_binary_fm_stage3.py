"""Third cycle of the binary-weight twin: the second cycle's recipe
(``distill_slimface_mobile_binary_fm_stage2``, teacher the shipped default) restarted from
the second cycle's kept weights, with a shorter cosine.

Each earlier cycle gained most of its view-1 read-outs in its last 1,000 steps, as the
learning rate reached zero; a restart at 5e-4 first loses ground, then wins it back and
more. Run it after the second cycle, from its work dir:

    slimface train configs/distill_slimface_mobile_binary_fm_stage3.py            # cycle 3
    slimface train configs/distill_slimface_mobile_binary_fm_stage3.py --resume   # later runs
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_slimface_mobile_binary_fm_stage2.py")),
    init_from="work_dirs/distill_slimface_mobile_binary_fm_stage2/backbone.pt",
    steps_per_epoch=7000,
)
