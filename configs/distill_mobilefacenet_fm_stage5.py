"""Fifth cycle of the default recipe (``distill_mobilefacenet_fm``): the same function
matching from the imported MobileFaceNet, restarted from the fourth cycle's kept weights with
the same 20,000-step cosine at half the peak rate (5e-4).

Every restart at the full rate lost 5-7 points of LFW view-1 all-pairs TAR at FAR 1e-4 over
its first 5,000 steps before it gained; a student this far along needs smaller steps to keep
what it has. Run it after the fourth cycle, from its work dir:

    slimface models fetch --model mobilefacenet-tflite                 # the teacher (once)
    slimface train configs/distill_mobilefacenet_fm_stage5.py          # cycle 5
    slimface train configs/distill_mobilefacenet_fm_stage5.py --resume # every later run

From the shipped weights instead: ``--set init_from=slimface-mobile``.
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm_stage4.py")),
    init_from="work_dirs/distill_mobilefacenet_fm_stage4/backbone.pt",
    lr=5e-4,
    seed=4,
)
