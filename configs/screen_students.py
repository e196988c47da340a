"""The student screen: one short function-matching run per candidate architecture, from
random weights, everything else as the default recipe (``distill_mobilefacenet_fm``: the
imported MobileFaceNet as the teacher, the same data, augmentation, mixing and losses).

Every candidate gets the same steps, seed and schedule, so the LFW view-1 read-outs at the
end rank the architectures at one budget (what a long run reaches is another matter: the
shipped default had many more). Pick the candidate with ``--set backbone=NAME``:

    slimface train configs/screen_students.py --set backbone=slimnet_m --out screen/slimnet_m
    python benchmarks/screen_students.py --out screen   # every candidate, then one table
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm.py")),
    init_from="",
    warmup_steps=100,
    steps_per_epoch=1500,
    eval_every=1500,
    checkpoint_minutes=5.0,
)
