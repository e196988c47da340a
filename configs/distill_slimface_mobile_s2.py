"""Grow the distilled ``slimnet_s`` into ``slimnet_s2`` and keep distilling (same data, loss,
augmentation and optimiser as ``distill_slimface_mobile.py``, whose config this one edits).

``slimnet_s2`` is ``slimnet_s`` with one more residual block at 28x28 and one at 14x14
(0.93M parameters, 98M multiply-adds, still under the 4 MB fp32 limit). Every ``slimnet_s``
tensor keeps its name, so ``init_from`` loads the trained student and the two new blocks
start as identity (zero-initialised last BatchNorm): training resumes from the small
model's accuracy instead of from scratch. Why: ``slimnet_s`` plateaued at LFW view 1 ~96% over
its last 7,000 steps (capacity, not training time, was the limit).

    slimface train configs/distill_slimface_mobile.py      # the slimnet_s run
    slimface train configs/distill_slimface_mobile_s2.py

The shipped ``slimface-mobile`` came from this recipe under the cached-target loop that
``slimface train`` replaced (see ``distill_slimface_mobile.py``), started from that loop's
``model.pt``:

    slimface compress distill configs/distill_slimface_mobile_s2.py
    slimface compress distill configs/distill_slimface_mobile_s2.py --resume \\
        --set steps=10000 --set threads=2       # warm restart: how the shipped model was made

(LFW view 2: 96.70 at step 6,000, 96.97 at 10,000.) Today the warm restart is
``--resume --set steps_per_epoch=10000 --set threads=2``.
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_slimface_mobile.py")),
    backbone="slimnet_s2",
    init_from="work_dirs/distill_slimface_mobile/backbone.pt",
    steps_per_epoch=6000,
    lr=1e-3,
    seed=1,
    threads=1,
    eval_every=1000,
)
