"""Third cycle of the default recipe (``distill_mobilefacenet_fm``): the same function
matching from the imported MobileFaceNet, restarted from the second cycle's kept weights
(the shipped ``slimface-mobile``, loaded by its registry name) with a longer cosine at the
second cycle's rate.

The second cycle (5,500 steps from the first cycle's weights) still gained on every LFW
view-1 read-out in its last 1,000 steps; this cycle gives the student twice as many steps:

    slimface models fetch --model mobilefacenet-tflite                 # the teacher (once)
    slimface train configs/distill_mobilefacenet_fm_stage3.py          # cycle 3
    slimface train configs/distill_mobilefacenet_fm_stage3.py --resume # every later run
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm_stage2.py")),
    init_from="slimface-mobile",
    steps_per_epoch=11000,
    seed=2,
)
