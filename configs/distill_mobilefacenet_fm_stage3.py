"""Third cycle of the default recipe (``distill_mobilefacenet_fm``): the same function
matching from the imported MobileFaceNet, restarted from the second cycle's kept weights with
a longer cosine at the second cycle's rate. Its kept weights (step 10,000) are the shipped
``slimface-mobile``.

The second cycle (5,500 steps from the first cycle's weights) still gained on every LFW
view-1 read-out in its last 1,000 steps; this cycle gives the student twice as many steps.
Run it after the first two cycles, from their work dir:

    slimface models fetch --model mobilefacenet-tflite                 # the teacher (once)
    slimface train configs/distill_mobilefacenet_fm_stage3.py          # cycle 3
    slimface train configs/distill_mobilefacenet_fm_stage3.py --resume # every later run

A fourth cycle from the shipped weights: ``--set init_from=slimface-mobile``.
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm_stage2.py")),
    init_from="work_dirs/distill_mobilefacenet_fm_stage2/backbone.pt",
    steps_per_epoch=11000,
    seed=2,
)
