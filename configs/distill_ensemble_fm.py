"""The default recipe (``distill_mobilefacenet_fm``) with an ensemble teacher: the dlib ResNet
(128-d, ``dlib150`` crops, torch) and the imported MobileFaceNet (192-d, ``arcface112``
crops, LiteRT), each L2-normalised, concatenated with equal weight and scaled by
``1/sqrt(2)`` (unit-norm, 320-d).

On LFW view 2 this ensemble is a better teacher than either member alone (99.45 pair
accuracy, all-pairs TAR 95.93 at FAR 1e-4, rank-1 97.34, against 99.35 / 95.27 / 96.73 for
the MobileFaceNet; ``benchmarks/teacher_options.py``). Each step both members embed the very
augmented, mixed batch the student sees, every member on its own template's warp of the
same view. The student ``slimnet_s2`` is 320-d, the teacher's width (its output map holds
the teacher's per-dimension mean and spread); everything but its embedding head starts from
the default model (``slimface-mobile``).

Run beside MobileFaceNet alone from the same weights, schedule and seed (4,000 steps,
``runs/distill_ensemble_fm/``), its student was level on LFW view-1 all-pairs TAR at FAR 1e-4,
about one point better at rank-1 and 0.6-0.9 worse on pair accuracy, at 1.6 times the time
per step (the dlib ResNet runs in torch): the default recipe keeps MobileFaceNet alone.

    slimface models fetch --model mobilefacenet-tflite
    slimface train configs/distill_ensemble_fm.py            # first run
    slimface train configs/distill_ensemble_fm.py --resume   # every later run
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_mobilefacenet_fm.py")),
    teacher="dlib-resnet+mobilefacenet-tflite",
    backbone_kwargs={"embedding_dim": 320},
    init_from="slimface-mobile",
    steps_per_epoch=40000,
)
