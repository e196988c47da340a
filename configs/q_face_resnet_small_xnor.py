"""Model Q's recipe (Zhou et al. (2018), "Face Recognition Method Based on Quantized Residual
Convolutional Neural Networks") through the normal trainer: a half-width Face-ResNet A with
binary weights and activations (XNOR) trained by softmax on the CelebA subset alone.

Binary everywhere except Conv1a (the classifier head stays float); the 408 CelebA-subset
identities with 4+ images (1,770 crops). Block order conv -> pool -> BN -> sign (XNOR-Net's):
with the paper's conv -> BN -> pool -> sign ~94% of the bits after each pooling stage are +1
(see ``slimface.models.face_resnet``). Departures from the paper's SGD: AdamW at 1e-3, the usual
optimizer for binary networks (two SGD runs, lr 0.01 and 0.05, were stopped at the chance-level
loss after 150-200 steps; AdamW too stayed near chance for ~300 steps before it learned, so the
two are not compared over a full run), and no weight decay (it pulls latent weights to 0,
where their signs flip at random). 1,600 steps of 32 crops. For a model that reaches a useful LFW accuracy in CPU
hours, see ``distill_q_face_resnet_small.py`` (the same network distilled from the teacher on
more faces).

    slimface train configs/q_face_resnet_small_xnor.py
    slimface compress quantize --model work_dirs/q_face_resnet_small_xnor/backbone.pt \
        --scheme xnor --out q_small.slim --parity 200
"""
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
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    warmup_steps=100,
    epochs=8,
    steps_per_epoch=200,
    milestones=(5, 7),
    eval_every=400,
    checkpoint_every=200,
    log_every=50,
)
