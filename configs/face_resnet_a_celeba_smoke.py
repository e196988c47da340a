"""CPU smoke test of the Face-ResNet model A recipe (Zhou et al. 2018; softmax) on the CelebA
subset."""
from slimface.train.config import TrainConfig

config = TrainConfig(
    backbone="face_resnet_a",
    head="softmax",
    data="celeba_subset/img_align_celeba_89x109",
    min_images_per_identity=4,
    batch_size=16,
    epochs=1,
    max_steps=20,
    milestones=(),
)
