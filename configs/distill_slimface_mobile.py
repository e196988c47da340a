"""The recipe of the shipped default model's first stage: ``slimnet_s`` distilled label-free
from the dlib ResNet teacher.

Data: UTKFace + CelebA subset + LFW people in no pair (pairs.txt, pairsDevTrain/Test) + AT&T,
RetinaFace landmarks, ArcFace-112 canvases (+8 px) for the student, dlib 150 chips for the
teacher from the same landmarks. Loss: L2 to the centred, rescaled teacher embedding
(``loss_weights={"embed": 1.0}``, no relational term). Augmentation as the shipped run had it:
shifts within +-2 px, mirror, colour jitter 0.1, 5% greyscale; no scale, rotation, photo
effects or mixup. AdamW (no decay on 1-d parameters), cosine schedule.

    slimface train configs/distill_slimface_mobile.py

The shipped weights came from this recipe run by the cached-target loop that ``slimface
train`` replaced (git history up to commit 7a42982, ``slimface compress distill``): there the
teacher embedded each un-augmented crop once, and the student's shifted, jittered views were
regressed onto that fixed target. ``slimface train`` runs the teacher live on the very view
the student sees (its own dlib150 crop of the same face region), so a rerun is the same recipe
with consistent targets, not a replay. The shipped run, in four legs (the learning rate
followed the cosine of the ``steps`` then in force, so raising ``steps`` was a warm restart):

    C=configs/distill_slimface_mobile.py
    slimface compress distill $C --set steps=1800 --set max_shift=-1 --set jitter=0.2 \\
        --set threads=1 --until-step 630
    slimface compress distill $C --resume --set steps=2400 --set max_shift=-1 --set jitter=0.2 \\
        --set threads=1
    slimface compress distill $C --resume --set steps=5000 --set threads=1
    slimface compress distill $C --resume            # steps=20000, 2 threads (below)

i.e. full-canvas crops (+-8 px) and jitter 0.2 to step 2400 (cosine to 0 at 2400; LFW view 2
89.67%), a warm restart (lr 1.1e-3 at step 2400, cosine to 0 at 5000) with crops within
+-2 px of centre and jitter 0.1 (less augmentation because the student underfits; not
ablated; view 2 93.45% at 5000), then a second warm restart (lr 1.7e-3 at step 5000, cosine to
0 at 20,000). The last leg ran on 2 threads at ~330 images/s (47 min). In today's fields
``steps`` is ``steps_per_epoch`` (one epoch), ``max_shift`` is ``augment["shift_px"]`` and
``jitter`` is ``augment["colour"]``.
"""
from slimface.train.config import TrainConfig

config = TrainConfig(
    objective="distill",
    teacher="dlib_resnet",
    teacher_runtime="torch",
    backbone="slimnet_s",
    sources=("utkface", "celeba", "lfw_unpaired", "att"),
    crop_pad=8,
    loss_weights={"embed": 1.0},
    augment={"scale": 0.0, "rotate_deg": 0.0, "shift_px": 2.0, "flip": 0.5, "low_res": 0.0,
             "blur": 0.0, "jpeg": 0.0, "colour": 0.1, "grey": 0.05, "mixup": 0.0},
    optimizer="adam",
    batch_size=64,
    epochs=1,
    steps_per_epoch=20000,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=100,
    seed=0,
    threads=2,
    eval_every=600,
    checkpoint_minutes=5.0,
)
