"""``slimface gallery``: a face database for 1:N identification.

  create DB [--model M] [--index auto|flat|ivf_flat|ivf_pq|hnsw]
  enroll DB --name NAME IMG...      several images per person, all or nothing
  identify DB IMG... [--top k]      best identities per image (--face all: per face)
  list DB                           identities and image counts
  remove DB --name NAME

The database (SQLite) records the model and alignment it was built with and refuses others.
list and identify open it read-only and never write; results go to stdout, messages to
stderr (with ``--json``, stdout carries the JSON only). Several processes may enroll and
identify at once: identify always answers from the latest committed state.

Exit status: 0 when the command did its work (identify also when nobody clears the
threshold: ``unknown``, ``"match": null``); 1 when an image or the gallery cannot be used
(the message names the file); 2 for a usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from slimface.cli._common import (add_bad_file_arg, add_json_arg, add_model_arg, cosine,
                                  emit_result, format_box, format_table, group_usage,
                                  int_at_least, parse_meta, report_skipped)
from slimface.cli.verify import add_model_args, embed_batch, make_matcher, print_warnings
from slimface.errors import GalleryError


DB_HELP = "gallery file (SQLite)"


def register(sub: Any) -> None:
    p = sub.add_parser("gallery", help="enroll and identify faces (SQLite + FAISS)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = p.add_subparsers(dest="gallery_command", metavar="WHAT")
    p.set_defaults(func=lambda a: group_usage(p))

    c = inner.add_parser("create", help="create an empty gallery for one model")
    c.add_argument("db", metavar="DB", help=DB_HELP)
    add_model_arg(c, help="registry name or model file (default: the default model); the "
                          "gallery accepts no other")
    c.add_argument("--index", default="auto",
                   help="search index: auto (exact up to 50k embeddings, IVF above), flat, "
                        "ivf_flat, ivf_pq, hnsw")
    add_json_arg(c)
    c.set_defaults(func=_create)

    e = inner.add_parser("enroll", help="add one person's images")
    e.add_argument("db", metavar="DB", help=DB_HELP)
    e.add_argument("--name", required=True,
                   help="the person's name (images are added if already enrolled)")
    e.add_argument("images", nargs="+", metavar="IMG", help="image files, one face each")
    e.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata stored with the identity (repeatable)")
    add_model_args(e)
    add_json_arg(e)
    e.set_defaults(func=_enroll)

    i = inner.add_parser("identify", help="who is in these images?")
    i.add_argument("db", metavar="DB", help=DB_HELP)
    i.add_argument("images", nargs="+", metavar="IMG",
                   help="image files, one face each (--face all: any number)")
    i.add_argument("--top", type=int_at_least(1), default=1,
                   help="candidates per image (per face)")
    i.add_argument("--threshold", type=cosine, default=None,
                   help="cosine score a match must exceed (default: the model's calibrated "
                        "one, at a false-accept rate of 1e-3 on LFW view 1); higher: fewer "
                        "false matches, more unknowns")
    add_model_args(i, all_faces=True)
    add_bad_file_arg(i, "an image that cannot be used (unreadable, no face, several faces "
                        "under --face error)")
    add_json_arg(i)
    i.set_defaults(func=_identify)

    ls = inner.add_parser("list", help="enrolled identities")
    ls.add_argument("db", metavar="DB", help=DB_HELP)
    add_json_arg(ls)
    ls.set_defaults(func=_list)

    r = inner.add_parser("remove", help="delete an identity and its embeddings")
    r.add_argument("db", metavar="DB", help=DB_HELP)
    r.add_argument("--name", required=True, help="the identity to delete")
    add_json_arg(r)
    r.set_defaults(func=_remove)


def _matcher(args: argparse.Namespace, model: str | None = None, **kw: Any) -> Any:
    """A FaceMatcher on the gallery's own model unless --model names another (refused)."""
    from slimface.errors import ModelFileError
    from slimface.gallery.store import GalleryStore

    if model is not None:
        return make_matcher(args, model, gallery=args.db, **kw)
    store = GalleryStore.open(args.db, readonly=True)
    try:
        recorded = store.meta()["model_name"]
    finally:
        store.close()
    try:
        return make_matcher(args, recorded, gallery=args.db, **kw)
    except ModelFileError as exc:  # a model file that has moved since the gallery was built
        raise GalleryError(f"{args.db}: built with the model {recorded}, which cannot be "
                           f"loaded ({exc}); pass --model FILE with the same weights at their "
                           f"new place") from None


def _create(args: argparse.Namespace) -> int:
    from slimface.gallery.embedder import FaceEmbedder
    from slimface.gallery.gallery import Gallery

    embedder = FaceEmbedder(args.model)
    with Gallery.create(args.db, embedder.info, index_kind=args.index) as g:
        info = g.model
    emit_result(args.json, {"db": args.db, "model": info.name, "template": info.template,
                            "embedding_dim": info.embedding_dim},
                f"created {args.db} for model {info.name} (template {info.template}, "
                f"{info.embedding_dim}-d)")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from slimface.gallery.gallery import clean_name

    meta = parse_meta(args.meta)
    name = clean_name(args.name)  # what is stored, and so what is reported
    with _matcher(args, args.model) as m:
        # refuse an incompatible, read-only or locked gallery before embedding anything
        m.open_gallery().store.check_writable()
        faces = m.embed_faces(args.images)
        notes = [w for f in faces for w in f.warnings] + m.enrollment_doubts(name, faces)
        print_warnings(notes)
        n = m.enroll_faces(name, faces, metadata=meta)
        repeats = m.open_gallery().last_repeats
    again = [f"{source}: already enrolled for {name}; not stored again" for source in repeats]
    print_warnings(again)
    notes += again
    added = len(args.images) - len(repeats)
    out = {"name": name, "added": added, "n_embeddings": n}
    emit_result(args.json, {**out, "warnings": notes} if notes else out,
                f"enrolled {name}: {added} image(s), {n} in total")
    return 0


def _identify(args: argparse.Namespace) -> int:
    with _matcher(args, args.model, threshold=args.threshold) as m:
        m.open_gallery(readonly=True)  # a missing or foreign gallery fails before embedding
        faces, skipped = embed_batch(m, args.images, args.bad_file,
                                     all_faces=args.face == "all")
        results = m.identify_faces(faces, top_k=args.top)
        threshold = results[0].threshold if results else None
        model_name = m.embedder.model_name
    print_warnings([w for r in results for w in r.warnings])
    skipped_list = report_skipped(skipped)
    lines = []
    for r in results:
        cands = ", ".join(f"{c.name} {c.score:.4f}" for c in r.candidates) or "(empty gallery)"
        where = r.path if r.face is None else f"{r.path} face {r.face} at {format_box(r.box)}"
        taken = ("" if r.name_taken_by is None
                 else f"  ({r.best.name} is face {r.name_taken_by}, with a higher score)")
        lines.append(f"{where}: {r.match.name if r.match else 'unknown'}  [{cands}]{taken}")
    emit_result(args.json, {"model": model_name, "threshold": threshold,
                            "results": [r.as_dict() for r in results],
                            **({"skipped": skipped_list} if skipped else {})}, *lines)
    return 0


def _list(args: argparse.Namespace) -> int:
    from slimface.gallery.store import GalleryStore

    store = GalleryStore.open(args.db, readonly=True)
    try:
        with store.snapshot():
            meta, people = store.meta(), store.identities()
    finally:
        store.close()
    rows = [{"name": p.name, "images": p.n_embeddings, "enrolled": p.created_at,
             "metadata": json.dumps(p.metadata) if p.metadata else ""} for p in people]
    print(f"{args.db}: model {meta['model_name']}, template {meta['template']}, "
          f"{len(people)} identities", file=sys.stderr)
    emit_result(args.json, {"model": meta["model_name"], "template": meta["template"],
                            "identities": [p.__dict__ for p in people]},
                format_table(rows) if rows else None)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from slimface.gallery.gallery import Gallery, clean_name

    name = clean_name(args.name)  # as enroll stored it, and so as reported
    with Gallery.open(args.db) as g:
        n = g.remove(name)
    emit_result(args.json, {"name": name, "removed_embeddings": n},
                f"removed {name} ({n} embedding(s))")
    return 0
