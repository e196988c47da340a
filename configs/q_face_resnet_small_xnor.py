"""Short XNOR QAT smoke run (seed 002's model Q recipe on a half-width Face-ResNet A).

Binary weights and activations everywhere except Conv1a (the classifier head stays float);
CelebA subset, softmax. Block order conv -> pool -> BN -> sign (XNOR-Net's): with the seed's
conv -> BN -> pool -> sign ~94% of the bits after each pooling stage are +1 (see
``slimface.models.face_resnet``). For a model that reaches a useful LFW accuracy in CPU
hours, see ``distill_q_face_resnet_small.py`` (the same network distilled from the teacher). Deploy with `slimface compress quantize --model
work_dirs/q_face_resnet_small_xnor/backbone.pt --scheme xnor --out q_small.slim`.
"""
import slimface.compress  # noqa: F401 - registers the "quantized" backbone
from slimface.train.config import TrainConfig

config = TrainConfig(
    backbone="quantized",
    backbone_kwargs={"base": "face_resnet_a",
                     "base_kwargs": {"width": 0.5, "act_order": "conv_pool_bn_act"},
                     "scheme": "xnor", "w_bits": 1, "a_bits": 1},
    head="softmax",
    data="celeba_subset/img_align_celeba_89x109",
    min_images_per_identity=4,
    batch_size=32,
    lr=0.01,
    epochs=1,
    steps_per_epoch=200,
    milestones=(),
    max_steps=200,
    checkpoint_every=50,
    log_every=10,
)
