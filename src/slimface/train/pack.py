"""A training pack: the distillation canvases as JPEG bytes in a few shard files.

Aligning 34.5k faces takes minutes and needs the data sets; a machine that has neither the
time nor the data (a rented GPU reached over a narrow link, say) can train from a pack
instead: ``slimface data pack CONFIG --out DIR`` writes the canvases that
:func:`slimface.train.function_matching.training_canvases` makes for ``CONFIG``, and a config
with ``data_pack="DIR"`` reads them back without detecting anything.

Layout: ``DIR/pack.json`` (template, padding, canvas size, counts, the JPEG quality and the
shard files) and ``DIR/shard-NNN.npz``, each ``jpeg`` (all of its canvases' JPEG bytes, one
uint8 array) and ``offsets`` (where each canvas starts and ends in it). Shards stay under a
size limit so each can travel on its own (``--shard-mb``). How much JPEG changes what a
teacher sees is measured, not assumed: ``--check N`` (:func:`pack_fidelity`) compares the
teacher's embeddings of N canvases' centre crops before and after the round trip, and the
manifest records it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from slimface.errors import DataError
from slimface.io.atomic import atomic_path

PACK_FORMAT = "slimface-pack-1"
MANIFEST = "pack.json"


def encode_canvases(canvas: np.ndarray, quality: int) -> list[bytes]:
    """RGB uint8 canvases -> baseline JPEG bytes (4:2:0), one per canvas."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    out = []
    for image in canvas:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), params)
        if not ok:
            raise DataError(f"could not JPEG-encode a {image.shape} canvas")
        out.append(buf.tobytes())
    return out


def decode_canvas(blob: bytes | np.ndarray) -> np.ndarray | None:
    """JPEG bytes -> RGB uint8 canvas (None when they do not decode)."""
    image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.ascontiguousarray(image[..., ::-1])


def pack_fidelity(canvas: np.ndarray, blobs: list[bytes], teacher: Any, out_hw: tuple[int, int],
                  n: int, seed: int = 0) -> dict[str, float]:
    """Cosine between ``teacher``'s embeddings of the centre crops of ``n`` random canvases
    and of the same canvases after the JPEG round trip: mean, 1st percentile and least."""
    from slimface.train.function_matching import centre_views

    idx = np.sort(np.random.default_rng(seed).choice(len(canvas), min(n, len(canvas)),
                                                     replace=False))
    before = centre_views(canvas[idx], out_hw)
    after = centre_views(np.stack([decode_canvas(blobs[i]) for i in idx]), out_hw)
    a, b = (np.asarray(teacher.embed(v), np.float64) for v in (before, after))
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"teacher": teacher.name, "canvases": int(len(idx)),
            "cosine_mean": float(cos.mean()), "cosine_p1": float(np.percentile(cos, 1)),
            "cosine_min": float(cos.min())}


def _shards(blobs: list[bytes], max_bytes: int) -> Iterable[list[bytes]]:
    shard: list[bytes] = []
    size = 0
    for blob in blobs:
        if shard and size + len(blob) > max_bytes:
            yield shard
            shard, size = [], 0
        shard.append(blob)
        size += len(blob)
    if shard:
        yield shard


def write_pack(canvas: np.ndarray, out_dir: str | os.PathLike[str], *, template: str,
               pad: int, info: dict[str, Any], quality: int = 75,
               shard_mb: float = 40.0, check: Callable[[list[bytes]], dict] | None = None
               ) -> dict[str, Any]:
    """Write ``canvas`` (N, H, W, 3) as a pack in ``out_dir``; returns the manifest.

    ``check`` measures the encoded canvases (e.g. :func:`pack_fidelity`); its result goes
    into the manifest as ``fidelity``. Each file is written atomically, the manifest last,
    so a pack whose manifest exists is whole."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blobs = encode_canvases(canvas, quality)
    fidelity = check(blobs) if check is not None else None
    files = []
    for k, shard in enumerate(_shards(blobs, int(shard_mb * 2**20))):
        name = f"shard-{k:03d}.npz"
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in shard])]).astype(np.int64)
        with atomic_path(out / name) as tmp, open(tmp, "wb") as f:
            np.savez(f, jpeg=np.frombuffer(b"".join(shard), np.uint8), offsets=offsets)
        files.append({"file": name, "canvases": len(shard)})
    manifest = {"format": PACK_FORMAT, "template": template, "pad": int(pad),
                "canvas_hw": [int(canvas.shape[1]), int(canvas.shape[2])],
                "canvases": int(len(canvas)), "jpeg_quality": int(quality),
                "bytes": int(sum(len(b) for b in blobs)), "shards": files, "info": info,
                **({"fidelity": fidelity} if fidelity is not None else {})}
    with atomic_path(out / MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(pack_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(pack_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no training pack here (make one with `slimface data pack`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable pack manifest ({exc})") from None
    if manifest.get("format") != PACK_FORMAT:
        raise DataError(f"{path}: not a slimface training pack (format "
                        f"{manifest.get('format')!r}, expected {PACK_FORMAT!r})")
    return manifest


def read_pack(pack_dir: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """``(canvas (N, H, W, 3) uint8 RGB, manifest)`` of the pack in ``pack_dir``."""
    manifest = read_manifest(pack_dir)
    h, w = manifest["canvas_hw"]
    canvas = np.empty((manifest["canvases"], h, w, 3), np.uint8)
    i = 0
    for entry in manifest["shards"]:
        path = Path(pack_dir) / entry["file"]
        try:
            with np.load(path) as z:
                data, offsets = z["jpeg"], z["offsets"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path}: unreadable pack shard ({exc})") from None
        if len(offsets) != entry["canvases"] + 1 or i + entry["canvases"] > len(canvas):
            raise DataError(f"{path}: holds {len(offsets) - 1} canvases, the manifest says "
                            f"{entry['canvases']}")
        for a, b in zip(offsets[:-1], offsets[1:]):
            image = decode_canvas(data[a:b])
            if image is None or image.shape[:2] != (h, w):
                raise DataError(f"{path}: canvas {i} is damaged")
            canvas[i] = image
            i += 1
    if i != len(canvas):
        raise DataError(f"{Path(pack_dir) / MANIFEST}: lists {len(canvas)} canvases, the "
                        f"shards hold {i}")
    return canvas, manifest
