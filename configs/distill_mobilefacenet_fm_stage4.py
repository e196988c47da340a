"""Fourth cycle of the default recipe (``distill_mobilefacenet_fm``): the same function
matching from the imported MobileFaceNet, restarted from the third cycle's kept weights with
a cosine nearly twice as long as the third's. Its kept weights (step 20,000) are the shipped
``slimface-mobile``.

Each warm restart so far cost 5-7 points of LFW view-1 all-pairs TAR at FAR 1e-4 for its
first 1,000 steps and ended 1-2 points above the cycle before; a longer cycle spends less of
its budget recovering. Run it after the third cycle, from its work dir:

    slimface models fetch --model mobilefacenet-tflite                 # the teacher (once)
    slimface train configs/distill_mobilefacenet_fm_stage4.py          # cycle 4
    slimface train configs/distill_mobilefacenet_fm_stage4.py --resume # every later run

The run that produced the shipped weights started from the third cycle's weights as they
were then shipped (``--set init_from=slimface-mobile``); the file now names the work dir
the third cycle's command writes.
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm_stage3.py")),
    init_from="work_dirs/distill_mobilefacenet_fm_stage3/backbone.pt",
    steps_per_epoch=20000,
    seed=3,
)
