"""Face-ResNet model C (Zhou et al. 2018) on CASIA-WebFace: model A's recipe
(configs/face_resnet_a_casia.py: softmax Fc6 over 10575 classes, SGD lr 0.01 /10 at epochs
40/70/90, 100 x 10,000 steps, batch 64) with the C backbone of the paper's Table 1."""
from dataclasses import replace
from pathlib import Path

from slimface.train.config import load_config

config = replace(load_config(Path(__file__).with_name("face_resnet_a_casia.py")),
                 backbone="face_resnet_c")
