"""Training data: identity folders (listed by :mod:`slimface.data.identity`) -> aligned,
padded uint8 crops held in memory.

Layout ``root/IDENTITY/image`` covers CASIA-WebFace and the CelebA subset. Faces are detected
and aligned once through ``slimface.align.pipeline.align_paths`` (which caches crops) onto the
backbone's template padded by ``crop_pad`` on every side; the trainer then takes random
template-sized crops (+ horizontal flip) per step, as Zhou et al. (2018), "Face Recognition
Method Based on Quantized Residual Convolutional Neural Networks" do (random 112x96 crops of
larger aligned faces). Augmentation parameters are a pure function of (seed, step, sample
slot), so resumed and distributed runs draw exactly the augmentations an uninterrupted
single-process run would.

Memory: crops stay in RAM (a 128x112 crop is 43 KB: 2k CelebA faces ~ 90 MB; full CASIA-WebFace
would need ~21 GB and a memory-mapped cache, not built yet).
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch

from slimface.data.identity import IMAGE_SUFFIXES, IdentityFolder, scan_identity_folders


@dataclass
class CropSet:
    """Aligned padded crops (N, H+2p, W+2p, 3) uint8 with labels and the crop size (H, W)."""

    crops: np.ndarray
    labels: np.ndarray
    classes: list[str]
    crop_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_crop_set(folder: IdentityFolder, template: str, crop_pad: int,
                  detector: str = "retinaface", progress: bool = True) -> CropSet:
    """Detect + align every image onto ``template`` padded by ``crop_pad`` (cached)."""
    from slimface.align.pipeline import align_paths
    from slimface.align.templates import get_template

    base = get_template(template)
    padded = base.padded(crop_pad) if crop_pad else base
    batch = align_paths(folder.paths, padded, detector=detector, multi_face="central",
                        no_face="centre", cache=True, progress=progress)
    return CropSet(np.ascontiguousarray(batch.crops), folder.labels, folder.classes,
                   tuple(base.size))


def augment_params(seed: int, step: int, n: int, pad_hw: tuple[int, int],
                   flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop offsets (y, x) and flip flags for the ``n`` global batch slots of ``step``."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    oy = torch.randint(0, pad_hw[0] + 1, (n,), generator=g).numpy()
    ox = torch.randint(0, pad_hw[1] + 1, (n,), generator=g).numpy()
    fl = (torch.rand(n, generator=g) < 0.5).numpy() if flip else np.zeros(n, bool)
    return oy, ox, fl


def crop_batch(crops: np.ndarray, size: tuple[int, int], oy: np.ndarray | None = None,
               ox: np.ndarray | None = None, flips: np.ndarray | None = None) -> torch.Tensor:
    """uint8 NHWC padded crops -> float32 NCHW (0..255) crops of ``size``.

    Offsets ``None`` = centre crop (evaluation); ``flips`` mirrors selected rows.
    """
    n, hp, wp = crops.shape[:3]
    h, w = size
    if oy is None or ox is None:
        oy = np.full(n, (hp - h) // 2)
        ox = np.full(n, (wp - w) // 2)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        patch = crops[i, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        out[i] = patch[:, ::-1] if flips is not None and flips[i] else patch
    return torch.from_numpy(out).permute(0, 3, 1, 2).float()


__all__ = ["IMAGE_SUFFIXES", "CropSet", "IdentityFolder", "augment_params", "crop_batch",
           "load_crop_set", "scan_identity_folders"]
