"""``slimface embed IMAGE... [--model M]``: print one face embedding per image as JSON.

Each image must hold exactly one face: no face or several faces is an error naming the file
(use ``slimface align`` to inspect what the detector sees).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from slimface.cli._common import emit_json


def register(sub: Any) -> None:
    p = sub.add_parser("embed", help="face embeddings of images (JSON)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, one face each")
    p.add_argument("--model", default=None,
                   help="registry name or .slim/.pt/.onnx file (default: the best bundled)")
    p.add_argument("--flip", default="none", choices=("none", "sum", "concat"),
                   help="add the mirror image's features (sum or concatenate)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--json", nargs="?", const="-", default="-", metavar="OUT",
                   help="write the JSON to OUT (default: stdout)")
    p.set_defaults(func=run)


def _face_record(path: str, aligned: Any) -> dict[str, Any]:
    face = aligned.face
    record: dict[str, Any] = {"image": path, "status": aligned.status}
    if face is not None:
        record.update(box=[round(float(v), 2) for v in face.box], score=float(face.score))
    return record


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from slimface.align.pipeline import align_image
    from slimface.models.inference import embed_crops
    from slimface.runtime.loader import default_model_name, load_model

    torch.set_num_threads(max(1, args.threads))
    model = load_model(args.model or default_model_name())
    template = getattr(model, "template", "arcface112")
    detector = getattr(model, "detector", None) or "retinaface"
    fallback = getattr(model, "fallback_detector", None)
    records, crops = [], []
    for path in args.images:
        aligned = align_image(path, template=template, detector=detector,
                              fallback_detector=fallback, multi_face="error", no_face="error")
        records.append(_face_record(path, aligned))
        crops.append(aligned.crop)
    embeddings = embed_crops(model, np.stack(crops), flip=args.flip)
    for record, emb in zip(records, embeddings):
        record["embedding"] = [round(float(v), 6) for v in emb]
    out = {"model": str(getattr(model, "name", args.model)), "template": str(template),
           "flip": args.flip, "embedding_dim": int(embeddings.shape[1]), "faces": records}
    emit_json(out, args.json)
    print(f"embedded {len(records)} image(s) with {out['model']} "
          f"({out['embedding_dim']}-d)", file=sys.stderr)
    return 0
