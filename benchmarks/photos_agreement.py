"""How faithfully big photos are aligned: each photo of a ``make_photo_folder.py`` folder
against the source crop it was made from.

Usage: ``python benchmarks/photos_agreement.py FOLDER [--model M] [--limit N]``

A photo holds its source crop (an LFW, CelebA or UTKFace image) upscaled, so aligning the
photo should give what aligning the source crop gives, the way LFW images are aligned
(the crop as it is, ``multi_face="central"``). Per photo this measures

* the landmark error: mean distance of the photo's five landmarks from the source crop's
  (mapped into the photo through the known paste), in eye distances;
* the embedding agreement: cosine similarity of the two embeddings (flip-summed, as every
  match is made).

Both come out per face size (the face's eye distance in the photo: under 60 px, 60-200 px,
over 200 px) and overall, as one JSON object on stdout. It uses only ``align_image`` and
``embed_crops_any``, so running it with another checkout on ``PYTHONPATH`` measures that
checkout's pipeline on the same folder. Nothing is tuned on LFW pair images: the folder
uses LFW people who are in no pair.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SIZE_GROUPS = (("small (<60 px)", 0, 60), ("medium (60-200 px)", 60, 200),
               ("large (>200 px)", 200, 1e9))


def source_landmarks(face, entry: dict, source_shape: tuple[int, ...]) -> np.ndarray:
    """The source crop's landmarks in the photo (the paste is a resize and a shift)."""
    x0, y0, x1, y1 = entry["face_box"]
    sh, sw = source_shape[:2]
    scale = np.array([(x1 - x0) / sw, (y1 - y0) / sh])
    return (np.asarray(face.landmarks, np.float64) + 0.5) * scale - 0.5 + np.array([x0, y0])


def summarise(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "mean": round(float(v.mean()), 4),
            "median": round(float(np.median(v)), 4), "p10": round(float(np.percentile(v, 10)), 4),
            "p90": round(float(np.percentile(v, 90)), 4)}


def main(argv: list[str] | None = None) -> int:
    import torch

    from slimface._provenance import git_commit
    from slimface.align.pipeline import align_image
    from slimface.gallery.embedder import embed_crops_any, load_model
    from slimface.io.image import load_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", default=None, help="default: the default model")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--rows", action="store_true", help="add every photo's row to the JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, name = load_model(args.model)
    template = model.template
    detector = getattr(model, "detector", None) or "retinaface"
    fallback = getattr(model, "fallback_detector", None)
    entries = json.loads((args.folder / "manifest.json").read_text())[:args.limit]

    def embed(crop: np.ndarray) -> np.ndarray:
        return embed_crops_any(model, crop[None], "sum")[0]

    rows = []
    start = time.process_time()
    for e in entries:
        photo = align_image(args.folder / e["file"], template, detector=detector,
                            multi_face="largest", no_face="centre", fallback_detector=fallback)
        rows.append((e, photo, embed(photo.crop)))
    cpu_ms = 1e3 * (time.process_time() - start) / max(1, len(entries))
    out_rows = []
    for e, photo, emb in rows:
        pixels = load_image(e["source"])
        src = align_image(pixels, template, detector=detector, multi_face="central",
                          no_face="centre", fallback_detector=fallback)
        row = {"file": e["file"], "status": photo.status,
               "cosine": float(np.dot(emb, embed(src.crop)))}
        if photo.face is not None and src.face is not None and src.face.kind == photo.face.kind:
            truth = source_landmarks(src.face, e, pixels.shape)
            eye = float(np.linalg.norm(truth[0] - truth[1]))
            err = float(np.linalg.norm(photo.face.landmarks - truth, axis=1).mean()) / eye
            row.update(eye_px=eye, landmark_error=err if err < 1.0 else None)  # None: other face
        out_rows.append(row)
    result = {"folder": str(args.folder), "model": name, "commit": git_commit(),
              "photos": len(out_rows), "cpu_ms_per_photo_align_embed": round(cpu_ms, 1),
              "statuses": {s: sum(r["status"] == s for r in out_rows)
                           for s in sorted({r["status"] for r in out_rows})},
              "other_face": sum("eye_px" in r and r["landmark_error"] is None
                                for r in out_rows)}
    groups = {"all": (0, 1e9)} | {label: (lo, hi) for label, lo, hi in SIZE_GROUPS}
    for label, (lo, hi) in groups.items():
        sel = [r for r in out_rows if lo <= r.get("eye_px", -1) < hi or label == "all"]
        result[label] = {"cosine": summarise([r["cosine"] for r in sel]),
                         "landmark_error": summarise([r["landmark_error"] for r in sel
                                                      if r.get("landmark_error") is not None])}
    if args.rows:
        result["rows"] = out_rows
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
