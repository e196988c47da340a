"""The default model's recipe: ``slimnet_s2`` (192-d) distilled by function matching from the
imported MobileFaceNet (``mobilefacenet-tflite``, LiteRT), on UTKFace + CelebA subset + LFW
people in no pair + AT&T (no LFW pair image), starting from the dlib-distilled student.

Each step the teacher embeds the very augmented, mixed batch the student sees (alignment
jitter, low resolution, blur, JPEG, colour, greyscale, mixup); losses: the centred teacher
embedding (per-dimension L2) plus the batch's cosine-similarity matrix. A long cosine
schedule, resumed across runs (checkpoints every 5 minutes):

    slimface models fetch --model mobilefacenet-tflite
    slimface train configs/distill_mobilefacenet_fm.py            # first run
    slimface train configs/distill_mobilefacenet_fm.py --resume   # every later run
"""
from slimface.train.config import TrainConfig

config = TrainConfig(
    objective="distill",
    teacher="mobilefacenet-tflite",
    backbone="slimnet_s2",
    backbone_kwargs={"embedding_dim": 192},
    init_from="slimface-mobile",
    sources=("utkface", "celeba", "lfw_unpaired", "att"),
    crop_pad=16,
    batch_size=64,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=300,
    epochs=1,
    steps_per_epoch=40000,
    loss_weights={"embed": 1.0, "relational": 10.0},
    threads=1,
    eval_every=1000,
    log_every=20,
    checkpoint_minutes=5.0,
    seed=0,
)
