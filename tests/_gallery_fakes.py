"""Small fakes shared by the gallery/verify/api/export tests: a tiny random backbone and an
aligner that resizes the whole image (so tests need neither detectors nor real weights)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from torch import nn

from slimface.errors import NoFaceError


class TinyBackbone(nn.Module):
    """Obeys the backbone contract: NCHW RGB 0..255 in, (N, 16) out, template attributes."""

    template = "arcface112"
    input_size = (112, 112)
    embedding_dim = 16
    #: Seeded, so its "weights" are fixed: matching with it means something in tests.
    random_weights = False

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, self.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 127.5) / 128.0
        x = torch.relu(self.bn(self.conv(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc(x)


def fake_align(image, template="arcface112", detector=None, multi_face="error",
               no_face="error", fallback_detector=None):
    """Resize to 112x112; an all-black image has 'no face', a red-marked one two faces
    (the left one larger, the right one central), chosen by the real ``select_face``."""
    if image.max() == 0:
        raise NoFaceError(None, "no face found")
    face = None
    if image[0, 0, 0] == 255 and image[0, 0, 1] == 0:
        from slimface.align.detect import Face
        from slimface.align.pipeline import select_face

        h, w = image.shape[:2]
        big = Face(np.array([0, 0, w * 0.45, h * 0.9]), 0.9, np.zeros((5, 2)), "5pt")
        mid = Face(np.array([w * 0.3, h * 0.2, w * 0.7, h * 0.8]), 0.9, np.zeros((5, 2)), "5pt")
        face = select_face([big, mid], image.shape, multi_face)
        image = image[:, : w // 2] if face is big else image[:, w // 4: 3 * w // 4]
    crop = np.array(Image.fromarray(image).resize((112, 112)))
    return SimpleNamespace(crop=crop, face=face, status="detected")


def fake_align_all(image, template="arcface112", detector=None, no_face="error",
                   fallback_detector=None):
    """Every face :func:`fake_align` knows of, left to right: both of a red-marked image
    (the larger on the left), the whole of another; an all-black image has none (its
    centre crop under ``no_face="centre"``)."""
    if image.max() == 0:
        if no_face == "error":
            raise NoFaceError(None, "no face found")
        crop = np.array(Image.fromarray(image).resize((112, 112)))
        return [SimpleNamespace(crop=crop, face=None, status="centre")]
    if image[0, 0, 0] == 255 and image[0, 0, 1] == 0:
        return [fake_align(image, multi_face="largest"), fake_align(image, multi_face="central")]
    return [fake_align(image)]


def fake_load(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def write_faces(folder: Path, n_people: int, per_person: int, seed: int = 0) -> dict[str, list[Path]]:
    """Each 'person' is a base noise image; their photos are small perturbations of it."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for p in range(n_people):
        base = rng.integers(30, 220, (40, 40, 3))
        out[f"p{p}"] = []
        for k in range(per_person):
            img = np.clip(base + rng.integers(-6, 7, base.shape), 1, 254).astype(np.uint8)
            path = folder / f"p{p}_{k}.png"
            Image.fromarray(img).save(path)
            out[f"p{p}"].append(path)
    return out


def make_embedder(seed: int = 0, flip: str = "none"):
    from slimface.gallery.embedder import FaceEmbedder

    return FaceEmbedder(TinyBackbone(seed).eval(), flip=flip, aligner=fake_align,
                        all_aligner=fake_align_all, image_loader=fake_load)


def register_tiny(monkeypatch, name: str = "tiny-test", seed: int = 0) -> str:
    """Register TinyBackbone under ``name`` and route alignment to :func:`fake_align`."""
    import slimface.gallery.embedder as emb
    from slimface.models import BACKBONES

    def factory(**kw):
        return TinyBackbone(seed=kw.get("seed", seed)).eval()

    monkeypatch.setitem(BACKBONES._factories, name.replace("-", "_"), factory)
    monkeypatch.setitem(BACKBONES._display, name.replace("-", "_"), name)
    monkeypatch.setattr(emb, "_default_aligner", lambda: fake_align)
    monkeypatch.setattr(emb, "_default_all_aligner", lambda: fake_align_all)
    return name


def two_face_image(path: Path) -> Path:
    """An image fake_align reports as holding two faces (red top-left pixel)."""
    rng = np.random.default_rng(9)
    img = rng.integers(30, 220, (40, 40, 3)).astype(np.uint8)
    img[0, 0] = (255, 0, 0)
    Image.fromarray(img).save(path)
    return path


def small_gallery(tmp_path: Path, monkeypatch) -> tuple[dict[str, list[Path]], Path, Path]:
    """The tiny model registered, two people's images, a two-face image, and a gallery made
    for the tiny model with one image of ``p0`` enrolled: (faces, two-face image, gallery)."""
    from slimface.cli.main import main

    register_tiny(monkeypatch)
    faces = write_faces(tmp_path / "img", 2, 2)
    two = two_face_image(tmp_path / "two.png")
    db = tmp_path / "g.db"
    assert main(["gallery", "create", str(db), "--model", "tiny-test"]) == 0
    assert main(["gallery", "enroll", str(db), "--name", "p0", str(faces["p0"][0])]) == 0
    return faces, two, db
