"""The default model's recipe: ``slimnet_s2`` (192-d) distilled by function matching from the
imported MobileFaceNet (``mobilefacenet-tflite``, LiteRT), on UTKFace + CelebA subset + LFW
people in no pair + AT&T (no LFW pair image), starting from the dlib-distilled student
(``slimface-mobile-dlib``).

Each step the teacher embeds the very augmented, mixed batch the student sees (alignment
jitter, low resolution, blur, JPEG, colour, greyscale, mixup); losses: the centred teacher
embedding (per-dimension L2) plus the batch's cosine-similarity matrix. A cosine schedule
over 14,000 steps, resumed across runs (checkpoints every 5 minutes):

    slimface models fetch --model mobilefacenet-tflite
    slimface train configs/distill_mobilefacenet_fm.py            # first run
    slimface train configs/distill_mobilefacenet_fm.py --resume   # every later run
    slimface train configs/distill_mobilefacenet_fm.py --export slimface_mobile.safetensors

The shipped ``slimface-mobile`` ran its first 7,000 steps with ``steps_per_epoch=40000``
(learning rate 1.86e-3 at step 7,000) and was then resumed with ``--set
steps_per_epoch=14000``, which shortened the same cosine to end at step 14,000; the kept
weights are the step with the best LFW view-1 all-pairs TAR at FAR 1e-4.

``threads=1`` and ``data_workers=1`` fit a 2-core machine: the loop's core runs the student
while a worker process augments the next batch and runs the teacher on it (0.85 -> 0.46 s a
step on a 2-core AMD EPYC, AVX-512; ``docs/training.md``). Give more workers where there are
more cores; ``--set data_workers=0`` keeps everything on one core.
"""
from slimface.train.config import TrainConfig

config = TrainConfig(
    objective="distill",
    teacher="mobilefacenet-tflite",
    backbone="slimnet_s2",
    backbone_kwargs={"embedding_dim": 192},
    init_from="slimface-mobile-dlib",
    sources=("utkface", "celeba", "lfw_unpaired", "att"),
    crop_pad=16,
    batch_size=64,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=300,
    epochs=1,
    steps_per_epoch=14000,
    loss_weights={"embed": 1.0, "relational": 10.0},
    threads=1,
    data_workers=1,
    eval_every=1000,
    log_every=20,
    checkpoint_minutes=5.0,
    seed=0,
)
