"""``slimface verify A B``: same person or not, with the similarity and the threshold used.

``slimface verify --calibrate --model M`` (re)computes the model's default threshold on LFW
view 1 at FAR 1e-3 and stores it in the user's ``thresholds.json`` (``$SLIMFACE_HOME``, else
the platform's user data folder); it overrides the table shipped with slimface.

Exit status: 0 when the two faces were compared, whether the verdict is same or different
(read the first word of the line, or ``same`` in the JSON); 1 when an image cannot be used
(the message names the file); 2 for a usage error.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from slimface.cli._common import (add_json_arg, add_model_arg, cosine, emit_result,
                                  format_box, fraction, hidden_alias, print_warning,
                                  report_skipped)
from slimface.gallery.thresholds import DEFAULT_FAR


def add_model_args(p: argparse.ArgumentParser, all_faces: bool = False) -> None:
    """Options every command that embeds faces shares (embed, verify, gallery);
    ``all_faces`` offers ``--face all`` (commands that answer per face)."""
    from slimface.gallery.embedder import ALL_FACES, MULTI_FACE_CHOICES, NO_FACE_CHOICES

    add_model_arg(p, help="registry name or model file (.slim/.pt/.onnx); default: the "
                          "default model")
    choices = MULTI_FACE_CHOICES + ((ALL_FACES,) if all_faces else ())
    face = p.add_argument("--face", choices=choices, default="error",
                          help="several faces in one image: refuse (default), use the largest, "
                               "or use the one nearest the centre" + (
                                   "; all: every face, left to right (group photos), each "
                                   "answered with its box" if all_faces else ""))
    hidden_alias(p, face, "--multi-face")
    p.add_argument("--no-face", choices=NO_FACE_CHOICES, default="error",
                   help="no face detected: refuse (default) or use the template's centre "
                        "crop (pre-cropped faces)")
    p.add_argument("--pad", type=fraction, default=0.0,
                   help="replicated border added before detection, as a fraction of the "
                        "image size (tight face crops such as AT&T need ~0.25)")
    p.add_argument("--allow-damaged", action="store_true",
                   help="use images whose data the decoder reports as corrupt (with a "
                        "warning) instead of refusing them")


def make_matcher(args: argparse.Namespace, model: str | None = None, **kw: Any) -> Any:
    """A FaceMatcher whose messages speak of command-line options (``--face largest``)."""
    from slimface.api import FaceMatcher
    from slimface.gallery.embedder import DEFAULT_FLIP, FaceEmbedder

    embedder = FaceEmbedder(model if model is not None else args.model,
                            flip=getattr(args, "flip", DEFAULT_FLIP), pad=args.pad,
                            allow_damaged=args.allow_damaged, interface="cli")
    # --face all is answered by embed_batch(all_faces=True); the matcher's own choice of one
    # face is then unused
    face = "error" if args.face == "all" else args.face
    return FaceMatcher(embedder=embedder, face=face, no_face=args.no_face, **kw)


def embed_batch(matcher: Any, images: Sequence[str], bad_file: str, all_faces: bool = False
                ) -> tuple[list[Any], list[tuple[str, str]]]:
    """The faces of ``images`` (``all_faces``: every face of each, in image order, then left
    to right) and, with ``--bad-file skip``, the images that could not be used with their
    problems. Stopping at a bad image of several says how to go on."""
    from slimface.errors import ImageError, MultipleFacesError, SlimfaceError

    embed = matcher.embed_all_faces if all_faces else matcher.embed_faces
    try:
        results = embed(images, bad_file=bad_file)
    except ImageError as exc:
        remedy = exc.remedy
        if isinstance(exc, MultipleFacesError) and remedy:
            remedy = f"{remedy} (--face all: every face)"
        if len(images) > 1:
            go_on = "--bad-file skip to go on with the other images"
            remedy = f"{remedy}, or {go_on}" if remedy else f"pass {go_on}"
        if remedy == exc.remedy:
            raise
        raise type(exc)(exc.path, exc.bare_problem, remedy=remedy) from None
    results = [f for r in results for f in (r if isinstance(r, list) else [r])]
    faces = [r for r in results if not isinstance(r, ImageError)]
    skipped = [(r.path or "", r.problem) for r in results if isinstance(r, ImageError)]
    if not faces and len(results) == 1:
        raise results[0]  # one image: its own error, as without --bad-file skip
    if not faces:
        report_skipped(skipped)
        raise SlimfaceError(f"none of the {len(images)} images could be used")
    return faces, skipped


def print_warnings(notes: list[str]) -> None:
    """Each note once (every face of a damaged group photo carries its note)."""
    for note in dict.fromkeys(notes):
        print_warning(note)


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="are two face images the same person?",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMG", help="two image files")
    add_model_args(p)
    p.add_argument("--threshold", type=cosine, default=None,
                   help="cosine threshold (default: the model's LFW-calibrated one)")
    p.add_argument("--calibrate", action="store_true",
                   help="compute the model's default threshold on LFW view 1 and store it")
    p.add_argument("--far", type=float, default=None,
                   help=f"false-accept rate for --calibrate (default {DEFAULT_FAR:g}); to "
                        f"verify at another rate, calibrate at it first")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="data root for --calibrate (LFW under lfw/)")
    add_json_arg(p)
    p.set_defaults(func=run, _parser=p)


def run(args: argparse.Namespace) -> int:
    if args.calibrate:
        return _calibrate(args)
    if args.far is not None:
        args._parser.error("--far is the rate --calibrate sets the threshold at; to verify "
                           "at another rate, run `slimface verify --calibrate --far RATE` "
                           "first, or pass --threshold")
    if len(args.images) != 2:
        args._parser.error(f"verify needs exactly two images, got {len(args.images)}")
    matcher = make_matcher(args, threshold=args.threshold)
    result = matcher.verify(*args.images)
    print_warnings([w for f in result.faces for w in f.get("warnings", [])])
    verdict = "same" if result.same else "different"
    # a face chosen among several: say which, as identify does
    chosen = ([f"  {f['path']}: the face at {format_box(f['box'])}" for f in result.faces]
              if args.face in ("largest", "central") else [])
    emit_result(args.json, {"model": matcher.embedder.model_name, **result.as_dict()},
                "\n".join([f"{verdict}  similarity={result.similarity:.4f}  threshold="
                           f"{result.threshold:.4f}  ({result.threshold_source})", *chosen]))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from slimface.gallery.embedder import FaceEmbedder
    from slimface.gallery.thresholds import calibrate, save_threshold

    embedder = FaceEmbedder(args.model)
    entry = calibrate(embedder, args.data, far=DEFAULT_FAR if args.far is None else args.far)
    table = save_threshold(embedder.model_name, entry)
    emit_result(args.json, {"model": embedder.model_name, **entry},
                f"{embedder.model_name}: threshold {entry['value']:.4f} at FAR {entry['far']:g} "
                f"(measured FAR {entry['far_measured']}, TAR {entry['tar']}) -> {table}")
    return 0
