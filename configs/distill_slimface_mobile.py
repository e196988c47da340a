"""The shipped default model: ``slimnet_s`` distilled label-free from the dlib ResNet teacher.

Data: UTKFace + CelebA subset + LFW people in no pair (pairs.txt, pairsDevTrain/Test) + AT&T,
RetinaFace landmarks, ArcFace-112 crops (+8 px canvas for random crops) for the student, dlib
150 chips for the teacher from the same landmarks. Loss: L2 to the centred, rescaled teacher
embedding. Two threads on a quiet 2-core machine (~330 images/s); on an oversubscribed one a 2-thread
step ran ~5x slower than a 1-thread step (use ``--set threads=1`` there).

    slimface compress distill configs/distill_slimface_mobile.py

The shipped weights came from this config in four runs, each resuming the last (sampling and
augmentation depend only on (seed, step), so each resume continues the same data stream; the
learning rate follows the cosine of the ``steps`` in force, so raising ``steps`` is a warm
restart):

    C=configs/distill_slimface_mobile.py
    slimface compress distill $C --set steps=1800 --set max_shift=-1 --set jitter=0.2 \
        --set threads=1 --until-step 630
    slimface compress distill $C --resume --set steps=2400 --set max_shift=-1 --set jitter=0.2 \
        --set threads=1
    slimface compress distill $C --resume --set steps=5000 --set threads=1
    slimface compress distill $C --resume            # steps=20000, 2 threads (below)

i.e. full-canvas crops (+-8 px) and jitter 0.2 to step 2400 (cosine to 0 at 2400; LFW view 2
89.67%), a warm restart (lr 1.1e-3 at step 2400, cosine to 0 at 5000) with crops within
+-2 px of centre and jitter 0.1 (less augmentation because the student underfits; not
ablated; view 2 93.45% at 5000), then a second warm restart (lr 1.7e-3 at step 5000, cosine to
0 at 20,000). The last leg ran on 2 threads at ~330 images/s (47 min).
"""
from slimface.compress.distill import DistillConfig

config = DistillConfig(
    student="slimnet_s",
    teacher="dlib_resnet",
    sources=("utkface", "celeba", "lfw_unpaired", "att"),
    embed_loss="l2",
    loss_weights={"embed": 1.0},
    batch_size=64,
    steps=20000,
    max_shift=2,
    jitter=0.1,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=100,
    seed=0,
    threads=2,
    eval_every=600,
    checkpoint_minutes=5.0,
)
