"""Face-ResNet model A of Zhou et al. (2018), "Face Recognition Method Based on Quantized
Residual Convolutional Neural Networks", on CASIA-WebFace: softmax (Fc6, 10575 classes), SGD
lr 0.01 /10 at epochs 40/70/90, 100 epochs x 10,000 steps, batch 64, random 112x96 crops of
aligned faces + flip. --data points at the folder holding CASIA-WebFace/IDENTITY/*.jpg."""
from slimface.train.config import TrainConfig

config = TrainConfig(
    backbone="face_resnet_a",
    head="softmax",
    data="CASIA-WebFace",
    steps_per_epoch=10_000,       # batch 64, lr 0.01, 100 epochs, /10 at 40/70/90: the defaults
    eval_every=10_000,
)
