"""Seed 002 model B on CASIA-WebFace (SPEC section 1): softmax (Fc6, 10575 classes), SGD
lr 0.01 /10 at epochs 40/70/90, 100 epochs x 10,000 steps, batch 64, random 112x96 crops of
aligned faces + flip. --data points at the folder holding CASIA-WebFace/IDENTITY/*.jpg."""
from slimface.train.config import TrainConfig

config = TrainConfig(
    backbone="face_resnet_b",
    head="softmax",
    data="CASIA-WebFace",
    batch_size=64,
    lr=0.01,
    epochs=100,
    steps_per_epoch=10_000,
    milestones=(40, 70, 90),
    eval_every=10_000,
)
