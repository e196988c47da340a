"""Model Q of Zhou et al. 2018 ("Face recognition based on quantized residual CNNs") on a
small Face-ResNet: binary weights *and* activations (XNOR), trained label-free by distillation
from the dlib teacher on the same faces as slimface-mobile (UTKFace + CelebA subset + LFW
people in no pair + AT&T; never an LFW pair image).

Model: ``face_resnet_a`` at half width (channels 16-32-64-128-256, Fc5 1024) on the 112x96
crops of that paper, XNOR weights with a per-channel alpha in every conv and in Fc5; only
Conv1a (3 input channels of normalised pixels) stays float. The residual stream stays float
(each block adds BN outputs); only conv *inputs* are signs, so the XNOR-popcount kernel runs
every conv but the first. Two departures from the paper, both measured:

* block order conv -> pool -> BN -> sign (XNOR-Net's), not conv -> BN -> pool -> sign: the
  max of four zero-mean BN outputs is positive 15 times in 16, so with the paper's order ~94%
  of the bits after every pooling stage were +1 and the network could not fit even 32 random
  targets (see ``slimface.models.face_resnet``);
* no dropout after Fc5: the paper drops out before a softmax classifier, but here Fc5's
  output *is* the regression target; with dropout the loss stayed at the level of predicting
  the mean (1.0) for 220 steps.

Fc5's 1024 outputs are regressed onto the teacher's 128-d centred embedding through a learned
projection (part of the training state, not of the model). Why distillation instead of the
paper's softmax on CASIA: there is no CASIA here and the CelebA subset alone is small; the
teacher's centred embeddings give a dense target for every face.

    slimface train configs/distill_q_face_resnet_small.py
    slimface compress quantize --model work_dirs/distill_q_face_resnet_small/backbone.pt \\
        --scheme xnor --out q_face_resnet_small.slim --parity 200

The shipped ``q_face_resnet_small.slim`` came from this recipe under the cached-target loop
that ``slimface train`` replaced (see ``distill_slimface_mobile.py``; warm restarts there were
``--set steps=N``, today ``--set steps_per_epoch=N``).
"""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(
    load_config(Path(__file__).with_name("distill_slimface_mobile.py")),
    backbone="quantized",
    backbone_kwargs={"base": "face_resnet_a",
                     "base_kwargs": {"width": 0.5, "act_order": "conv_pool_bn_act",
                                     "dropout": 0.0},
                     "scheme": "xnor", "w_bits": 1, "a_bits": 1},
    steps_per_epoch=2200,
    lr=2e-3,
    weight_decay=0.0,  # decay would pull latent weights to 0, where their signs flip at random
    warmup_steps=200,
    threads=2,
    eval_every=500,
)
