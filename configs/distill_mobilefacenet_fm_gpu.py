"""The default recipe on one GPU: function matching from the imported MobileFaceNet, teacher
and student both on the GPU, the aligned faces from a training pack (``slimface data pack``)
and augmented by 14 data workers, continuing from the shipped ``slimface-mobile``.

A GPU does in minutes what the CPU recipe does in hours: at batch 256 this schedule is
3.1M augmented views (90 passes over the 34.5k faces; the CPU cycles together saw 1.2M).
Run it through ``tools/gpu_distill.sh`` (which also says how to make the pack), or directly:

    slimface data pack configs/distill_mobilefacenet_fm_gpu.py --out .device/pack
    slimface train configs/distill_mobilefacenet_fm_gpu.py --out RUN [--max-minutes M] [--resume]

There is no LFW view-1 check in the loop (the GPU machine need not hold LFW): evaluate the
run's ``backbone.pt`` afterwards (``slimface eval --model RUN/backbone.pt --benchmark lfw``).
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm.py")),
    init_from="slimface-mobile",
    device="cuda",
    data_pack=".device/pack",
    data_workers=14,
    threads=2,
    batch_size=256,
    lr=2e-3,
    warmup_steps=500,
    steps_per_epoch=12000,
    eval_every=0,
    checkpoint_every=1000,
    checkpoint_minutes=2.0,
    seed=2,
)
