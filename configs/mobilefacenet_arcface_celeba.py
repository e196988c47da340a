"""CPU-sized real run: MobileFaceNet + ArcFace (s 32, m 0.3) on the CelebA subset identities
with 4+ images (408 identities, 1,770 images; 27 steps/epoch at batch 64).

Measured run (README): this file as is (5 epochs, 135 steps, LFW view-1 61.8%), then continued
with ``--resume --set epochs=12 --set milestones=9,11 --set eval_every=324`` (324 steps,
~65 min in all on 2 busy shared cores, view-1 71.0%). ArcFace margin 0.3 rather than 0.5: with
~4 images per identity and a few hundred steps from scratch, 0.5 is the usual cause of a
stalled loss. LFW view 1 is checked during training; view 2 only at the end.
"""
from slimface.train.config import TrainConfig

config = TrainConfig(
    backbone="mobilefacenet",
    head="arcface",
    head_kwargs={"s": 32.0, "m": 0.3},
    data="celeba_subset/img_align_celeba_89x109",
    min_images_per_identity=4,
    batch_size=64,
    lr=0.1,
    weight_decay=5e-4,
    warmup_steps=50,
    epochs=5,
    milestones=(3, 4),
    checkpoint_every=100,
    log_every=10,
    eval_every=135,  # once, at the end: embedding ~4k view-1 images is minutes here
    threads=1,  # on 2 shared, busy cores 1 thread ran 3x faster than 2 (6 vs 2 img/s)
)
