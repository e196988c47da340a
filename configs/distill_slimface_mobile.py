"""The shipped default model: ``slimnet_s`` distilled label-free from the dlib ResNet teacher.

Data: UTKFace + CelebA subset + LFW people in no pair (pairs.txt, pairsDevTrain/Test) + AT&T,
RetinaFace landmarks, ArcFace-112 crops (+8 px canvas for random crops) for the student, dlib
150 chips for the teacher from the same landmarks. Loss: L2 to the centred, rescaled teacher
embedding. One thread: on the shared, oversubscribed 2-core machine a 2-thread step ran ~5x
slower than a 1-thread step.

    slimface compress distill configs/distill_slimface_mobile.py

The shipped weights came from this config with one deviation: the run was started with
``steps=1800`` and, once the measured throughput (~48 img/s) showed it would finish early, was
continued from its step-630 checkpoint with ``--resume --set steps=2400`` (the cosine schedule
then continues from step 630 of a 2400-step schedule: lr 1.56e-3 -> 1.75e-3 at the switch).
"""
from slimface.compress.distill import DistillConfig

config = DistillConfig(
    student="slimnet_s",
    teacher="dlib_resnet",
    sources=("utkface", "celeba", "lfw_unpaired", "att"),
    embed_loss="l2",
    loss_weights={"embed": 1.0},
    batch_size=64,
    steps=2400,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=100,
    seed=0,
    threads=1,
    eval_every=600,
    checkpoint_minutes=5.0,
)
