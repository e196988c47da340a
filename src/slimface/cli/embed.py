"""``slimface embed IMAGE... [--model M] [--json [OUT]]``: one face embedding per image.

Prints one line per image, the path, a tab, then the vector's values separated by spaces
(``cut -f2`` keeps the numbers); ``--json`` gives one JSON object with the model, template,
flip, and per image its status, face box, score and embedding. ``--face all`` embeds every
face of each image (group photos), left to right: one line per face, the path followed by
``#`` and the face's number (``group.jpg#2``), and in the JSON its ``face`` number and box.

The same pipeline and defaults as ``slimface verify``, ``slimface gallery`` and
``slimface.FaceMatcher`` (mirror image's embedding summed, ``--flip sum``), so
``slimface embed A.jpg`` prints the vector ``FaceMatcher().embed("A.jpg")`` returns. An image
with several faces is refused unless ``--face largest`` or ``--face central``; an image
without a detected face is refused unless ``--no-face centre`` (use ``slimface align`` to
inspect what the detector sees).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from slimface.cli._common import (add_bad_file_arg, add_json_arg, emit_result, positive_int,
                                  report_skipped)
from slimface.conventions import DEFAULT_FLIP, FLIP_MODES
from slimface.cli.verify import add_model_args, embed_batch, make_matcher, print_warnings


def register(sub: Any) -> None:
    p = sub.add_parser("embed", help="face embeddings of images", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, one face each (--face all: any number)")
    add_model_args(p, all_faces=True)
    p.add_argument("--flip", default=DEFAULT_FLIP, choices=FLIP_MODES,
                   help="add the mirror image's embedding: sum (default, what verify, "
                        "gallery and FaceMatcher use), none, or concatenate")
    p.add_argument("--threads", type=positive_int, default=2,
                   help="images embedded at once, one thread each (default 2); with one "
                        "image, the model's CPU threads")
    add_bad_file_arg(p, "an image that cannot be used (unreadable, no face, several faces "
                        "under --face error)")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    matcher = make_matcher(args, threads=args.threads)
    if "torch" in sys.modules:  # a model in PyTorch (a recorded ONNX twin never loads it)
        import torch

        # one image: its model may use every thread; several: one thread per image in flight
        torch.set_num_threads(args.threads if len(args.images) == 1 else 1)
    faces, skipped = embed_batch(matcher, args.images, args.bad_file,
                                 all_faces=args.face == "all")
    records = []
    for face in faces:
        record: dict[str, Any] = {"path": face.path, "status": face.status}
        if face.face is not None:
            record["face"] = face.face
        if face.box is not None:
            record["box"] = face.box
        if face.score is not None:
            record["score"] = round(face.score, 4)
        if face.warnings:
            record["warnings"] = face.warnings
        record["embedding"] = [round(float(v), 6) for v in face.embedding]
        records.append(record)
    print_warnings([w for f in faces for w in f.warnings])
    skipped_list = report_skipped(skipped)
    embedder = matcher.embedder
    dim = int(faces[0].embedding.shape[0])
    what = (f"{len(records)} face(s) of {len({f.path for f in faces})} image(s)"
            if args.face == "all" else f"{len(records)} image(s)")
    print(f"embedded {what} with {embedder.model_name} ({dim}-d, flip {embedder.flip})",
          file=sys.stderr)
    lines = [f"{_label(r)}\t{' '.join(f'{v:.6f}' for v in r['embedding'])}" for r in records]
    emit_result(args.json, {"model": embedder.model_name, "template": embedder.template,
                            "flip": embedder.flip, "embedding_dim": dim, "faces": records,
                            **({"skipped": skipped_list} if skipped else {})},
                "\n".join(lines))
    return 0


def _label(record: dict[str, Any]) -> str:
    """The first field of a face's line: its image, and ``#N`` for the N-th face of a group."""
    return record["path"] + (f"#{record['face']}" if "face" in record else "")
