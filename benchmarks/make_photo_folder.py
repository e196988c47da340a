"""A folder of phone-size JPEGs made from the face data sets, for ``slimface bench photos``.

Usage: ``python benchmarks/make_photo_folder.py OUT [--n 300] [--seed 0] [--data DIR]``

Each photo is 3-12 megapixels (4:3, 3:4, 16:9, 9:16 or 1:1), written as baseline JPEG at
quality 90 with 4:2:0 chroma, as phone cameras write them. A source face (CelebA 89x109,
UTKFace 160x160 or an LFW image of a person in no pair, in equal shares) is upscaled
(bicubic) to 6-100% of the photo's shorter side and pasted with a feathered edge onto a
blurred, upscaled corner of another source image (the background); sensor-like noise
(sigma 6 grey levels per channel) keeps the files near a phone's size (about 0.2 MB per
megapixel). A quarter of the photos are stored sideways or upside down with the EXIF
orientation tag that makes them upright (6, 8 or 3), so a reader that ignores EXIF sees a
rotated face.

``manifest.json`` beside the photos lists, per file, the source image, the photo size, the
EXIF orientation and the pasted face's box in upright coordinates. Nothing here is used to
tune anything; the images are never committed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ASPECTS = ((4, 3), (3, 4), (16, 9), (9, 16), (1, 1))
#: (share of photos, smallest and largest face width as a fraction of the shorter side).
FACE_SIZES = ((0.3, 0.6, 1.0), (0.5, 0.2, 0.6), (0.2, 0.06, 0.2))
#: EXIF orientation -> how the stored pixels are turned from upright (np.rot90 count).
ORIENTATIONS = {6: 1, 8: -1, 3: 2}
NOISE_SIGMA = 6.0
QUALITY = 90


def source_images(data: Path) -> dict[str, list[Path]]:
    from slimface.data.lfw import find_images_root, find_lfw_root, lfw_people_not_in_pairs

    lfw_root = find_lfw_root(data)
    lfw = lfw_people_not_in_pairs(lfw_root / "pairs.txt", find_images_root(lfw_root))
    return {
        "celeba": sorted((data / "celeba_subset/img_align_celeba_89x109").glob("*/*.jpg")),
        "utkface": sorted((data / "utkface/UTKFace_160").glob("*.jpg")),
        "lfw": sorted(p for paths in lfw.values() for p in paths),
    }


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def make_photo(rng: np.random.Generator, face_src: np.ndarray, bg_src: np.ndarray
               ) -> tuple[np.ndarray, list[int]]:
    """One upright photo and the pasted face's box ``[x1, y1, x2, y2]``."""
    import cv2

    aw, ah = ASPECTS[rng.integers(len(ASPECTS))]
    pixels = rng.uniform(3e6, 12e6)
    width = int(round(np.sqrt(pixels * aw / ah)))
    height = int(round(width * ah / aw))
    corner = bg_src[:max(2, bg_src.shape[0] // 3), :max(2, bg_src.shape[1] // 3)]
    bg = cv2.resize(corner, (width, height), interpolation=cv2.INTER_CUBIC)
    bg = cv2.GaussianBlur(bg, (0, 0), sigmaX=min(width, height) / 80)

    shares = np.array([s[0] for s in FACE_SIZES])
    lo, hi = FACE_SIZES[rng.choice(len(FACE_SIZES), p=shares / shares.sum())][1:]
    fw = int(round(rng.uniform(lo, hi) * min(width, height)))
    fh = min(height, int(round(fw * face_src.shape[0] / face_src.shape[1])))
    fw = min(width, fw)
    face = cv2.resize(face_src, (fw, fh), interpolation=cv2.INTER_CUBIC)
    x0, y0 = int(rng.integers(0, width - fw + 1)), int(rng.integers(0, height - fh + 1))
    feather = max(1.0, 0.04 * fw)
    mask = np.zeros((fh, fw), np.float32)
    edge = int(2 * feather)
    mask[edge:fh - edge, edge:fw - edge] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=feather)[..., None]
    region = bg[y0:y0 + fh, x0:x0 + fw].astype(np.float32)
    bg[y0:y0 + fh, x0:x0 + fw] = np.clip(mask * face + (1 - mask) * region, 0, 255
                                         ).astype(np.uint8)
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * NOISE_SIGMA
    photo = np.clip(bg.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return photo, [x0, y0, x0 + fw, y0 + fh]


def save_jpeg(path: Path, photo: np.ndarray, orientation: int) -> None:
    """Write ``photo`` (upright) so that it is upright again after EXIF ``orientation``."""
    from PIL import Image

    stored = photo if orientation == 1 else np.rot90(photo, ORIENTATIONS[orientation])
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(
        path, "JPEG", quality=QUALITY, subsampling="4:2:0", exif=exif.tobytes())


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from slimface.data.roots import data_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=300, help="photos to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="data root (default: slimface's)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    sources = source_images(data_root(args.data))
    names = sorted(sources)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i in tqdm(range(args.n), desc="photos", unit="img", file=sys.stderr):
        kind = names[i % len(names)]
        face_path = sources[kind][rng.integers(len(sources[kind]))]
        bg_kind = names[rng.integers(len(names))]
        bg_path = sources[bg_kind][rng.integers(len(sources[bg_kind]))]
        photo, box = make_photo(rng, _rgb(face_path), _rgb(bg_path))
        orientation = int(rng.choice([1, 6, 8, 3], p=[0.75, 0.1, 0.1, 0.05]))
        name = f"photo_{i:04d}.jpg"
        save_jpeg(args.out / name, photo, orientation)
        manifest.append({"file": name, "source": str(face_path), "width": photo.shape[1],
                         "height": photo.shape[0], "orientation": orientation, "face_box": box})
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    sizes = [(args.out / m["file"]).stat().st_size for m in manifest]
    summary = {"out": str(args.out), "photos": len(manifest), "seed": args.seed,
               "megapixels_mean": round(float(np.mean([m["width"] * m["height"]
                                                       for m in manifest])) / 1e6, 2),
               "file_mb_mean": round(float(np.mean(sizes)) / 1e6, 2)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
