"""Sixth cycle of the default recipe (``distill_mobilefacenet_fm``): the same function
matching from the imported MobileFaceNet, restarted from the fifth cycle's last step (the
shipped weights) with a shorter cosine (8,000 steps, under two hours on a 2-core machine) at a
lower peak rate (3e-4).

At 5e-4 the fifth cycle lost only 2-4 points of LFW view-1 all-pairs TAR at FAR 1e-4 in its
first steps and made its gains in the low-rate second half; a lower peak spends less of the
cycle recovering. Run it after the fifth cycle, from its work dir:

    slimface models fetch --model mobilefacenet-tflite                 # the teacher (once)
    slimface train configs/distill_mobilefacenet_fm_stage6.py          # cycle 6
    slimface train configs/distill_mobilefacenet_fm_stage6.py --resume # every later run

From the shipped weights instead: ``--set init_from=slimface-mobile``. Measured: it ends
level with the fifth cycle on LFW view 1 and did not ship
(``runs/distill_mobilefacenet_fm_stage6/README.md``).
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm_stage5.py")),
    # The fifth cycle's last step, which shipped (its backbone.pt is the best-TAR step).
    init_from="work_dirs/distill_mobilefacenet_fm_stage5/checkpoint.pt",
    lr=3e-4,
    steps_per_epoch=8000,
    seed=5,
)
