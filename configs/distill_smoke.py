"""A minutes-long smoke run of label-free distillation (200 images, 30 steps)."""
from slimface.compress.distill import DistillConfig

config = DistillConfig(
    student="slimnet_s",
    limit_images=200,
    batch_size=32,
    steps=30,
    warmup_steps=5,
    eval_every=0,
    log_every=5,
)
