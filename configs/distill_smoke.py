"""A minutes-long smoke run of label-free distillation from the dlib teacher (200 images, 30
steps; the teacher embeds its own dlib150 crop of every augmented view)."""
from slimface.train.config import TrainConfig

config = TrainConfig(
    objective="distill",
    teacher="dlib_resnet",
    teacher_runtime="torch",
    backbone="slimnet_s",
    crop_pad=8,
    max_images=200,
    loss_weights={"embed": 1.0},
    augment={"scale": 0.0, "rotate_deg": 0.0, "shift_px": 8.0, "low_res": 0.0, "blur": 0.0,
             "jpeg": 0.0, "colour": 0.2, "grey": 0.05, "mixup": 0.0},
    optimizer="adam",
    batch_size=32,
    epochs=1,
    steps_per_epoch=30,
    lr=2e-3,
    weight_decay=0.05,
    warmup_steps=5,
    eval_every=0,
    log_every=5,
)
