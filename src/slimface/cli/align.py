"""``slimface align SRC DST --template NAME``: aligned face crops, mirrored folder tree.

SRC is an image file or a folder (searched recursively for .jpg/.jpeg/.png/.pgm/.ppm/.bmp/
.webp/.tif/.tiff/.gif, and HEIC/AVIF where they can be read); every crop is written under DST at the same relative path (with ``--ext``'s
extension). Detection is cached (``$SLIMFACE_CACHE/crops``), so re-running is fast.
The summary counts images where the main detector found a face (detected), where only the
fallback detector did (fallback), and where none did (no-face: centre crop, skipped or error
by ``--no-face``). ``--face`` picks the face when an image holds several; ``--face all``
writes every face of each image, left to right, as ``NAME_face1.png``, ``NAME_face2.png``...
(group photos; no crop cache, the summary counts faces).
A file that cannot be read as an image (not an image, empty, truncated, damaged) stops the
run with its error; ``--bad-file skip`` names each such file on stderr, counts it in the
summary (bad_files) and writes the crops of the others. ``--allow-damaged`` aligns a damaged
image (a truncated JPEG) from what its decoder could read, with a warning; such crops are
never cached.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from slimface.cli._common import (add_bad_file_arg, add_json_arg, emit_result, format_table,
                                  fraction, hidden_alias, print_warning, report_skipped)


def register(sub: Any) -> None:
    from slimface.align.templates import list_templates
    from slimface.gallery.embedder import ALL_FACES, MULTI_FACE_CHOICES

    p = sub.add_parser("align", help="detect and align faces into template crops",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="image file or folder")
    p.add_argument("dst", metavar="DST", help="output folder (created)")
    p.add_argument("--template", default="arcface112",
                   help=f"crop template: {', '.join(list_templates())} (+padN for a larger "
                        f"canvas); default arcface112")
    p.add_argument("--detector", default="retinaface", help="retinaface (default) or dlib")
    p.add_argument("--fallback-detector", default=None,
                   help="detector tried when the first finds no face (e.g. retinaface)")
    face = p.add_argument("--face", choices=MULTI_FACE_CHOICES + (ALL_FACES,),
                          default="largest",
                          help="several faces in one image: keep the largest (default), the "
                               "one nearest the centre, stop (error), or write every face "
                               "(all: NAME_face1, NAME_face2, ... left to right)")
    hidden_alias(p, face, "--multi-face")
    p.add_argument("--no-face", choices=("centre", "skip", "error"), default="centre",
                   help="no face found: write a centre crop (default), skip the file, or stop")
    add_bad_file_arg(p, "a file that cannot be read as an image (damaged, truncated, not an "
                        "image); skipped files are counted in the summary")
    p.add_argument("--allow-damaged", action="store_true",
                   help="align a damaged image (a truncated JPEG) from what its decoder could "
                        "read, with a warning, instead of treating it as unreadable")
    p.add_argument("--pad", default=None,
                   help="border added before detection as a fraction of the image size; "
                        "default 'auto' (25%% for images up to 224 px, tight crops)")
    p.add_argument("--ext", default=".png", help="output extension (.png default, .jpg)")
    p.add_argument("--workers", type=int, default=2, help="detection processes (default 2)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    add_json_arg(p)
    p.set_defaults(func=run)


def _find_images(src: Path) -> tuple[Path, list[Path]]:
    from slimface.errors import DataError
    from slimface.io.image import IMAGE_EXTENSIONS, image_files

    if src.is_file():
        return src.parent, [src]
    if not src.is_dir():
        raise DataError(f"{src}: no such file or folder")
    files = image_files(src)
    if not files:
        raise DataError(f"{src}: no images found (looked for "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    return src, files


def _detector(name: str | None, pad: str | None):
    from slimface.align.detect import create_detector

    if name is None:
        return None
    return create_detector(name, pad=None if pad in (None, "auto") else _pad_value(pad))


def _pad_value(text: str) -> float:
    from slimface.errors import ConfigError

    try:
        return fraction(text)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"--pad {text!r}: pass 'auto' or a fraction of the image size "
                          f"({exc})") from None


def _output_paths(files: list[Path], root: Path, dst: Path, ext: str) -> list[Path]:
    """One crop path per source image, checked before any detection so that nothing a user
    has is overwritten: no crop may land on a source image, and two sources that differ only
    in their extension (``a.jpg``, ``a.png``) would share one crop file."""
    from slimface.errors import ConfigError

    if dst.exists() and not dst.is_dir():
        raise ConfigError(f"{dst}: exists and is not a folder; pass a folder for the crops")
    sources = {path.resolve() for path in files}
    taken: dict[Path, Path] = {}
    outputs = []
    for path in files:
        out = (dst / path.relative_to(root)).with_suffix(ext)
        where = out.resolve()
        if where in sources:
            raise ConfigError(f"{out}: the crop would overwrite a source image; pass a DST "
                              f"folder that holds none of the images")
        if where in taken:
            raise ConfigError(f"{path} and {taken[where]} would both be written to "
                              f"{out}; rename one of them")
        taken[where] = path
        outputs.append(out)
    return outputs


def _make_folder(folder: Path) -> None:
    from slimface.errors import ConfigError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create the output folder ({exc.strerror})") from None


def _align(files: list[Path], template: Any, args: argparse.Namespace) -> Any:
    """``align_paths`` with the command's options. A several-faces error names the
    command-line option that picks one; with ``--bad-file error`` an unreadable file in a
    folder says how to align the others anyway."""
    from slimface.align import align_paths
    from slimface.errors import FaceError, ImageError, MultipleFacesError

    try:
        return align_paths(files, template, detector=_detector(args.detector, args.pad),
                           fallback_detector=_detector(args.fallback_detector, args.pad),
                           multi_face=args.face,
                           no_face="error" if args.no_face == "error" else "centre",
                           cache=not args.no_cache, workers=args.workers, progress=True,
                           bad_file=args.bad_file, allow_damaged=args.allow_damaged)
    except MultipleFacesError as exc:
        raise MultipleFacesError(exc.path, exc.bare_problem,
                                 remedy="use a photo with one face, or pass --face largest or "
                                        "--face central") from None
    except FaceError:
        raise
    except ImageError as exc:
        raise _with_remedy(exc, len(files)) from None


def _with_remedy(exc: Any, n_files: int) -> Any:
    """An unreadable-image error that names the options that would go on: ``--allow-damaged``
    for a damaged file, ``--bad-file skip`` when there are other images to align."""
    from slimface.errors import DamagedImageError

    hints = (["--allow-damaged to use it anyway"] if isinstance(exc, DamagedImageError)
             else []) + (["--bad-file skip to align the other images"] if n_files > 1 else [])
    if not hints:
        return exc
    return type(exc)(exc.path, exc.bare_problem, remedy=f"pass {', or '.join(hints)}")


#: The summary column that counts a face found with each pipeline status.
_COUNTED_AS = {"detected": "detected", "fallback_detector": "fallback", "centre": "no_face"}


def _align_every_face(files: list[Path], outputs: list[Path], template: Any,
                      args: argparse.Namespace) -> tuple[dict[str, int], dict[Path, str],
                                                         dict[Path, str]]:
    """``--face all``: every face of each image (:func:`slimface.align.align_all`), written
    as ``NAME_faceN`` beside where the single crop would go (no source can be there: its own
    crop would be, and :func:`_output_paths` refused that). Returns the counts by face, the
    skipped files with their problems and the damaged files aligned anyway."""
    from tqdm import tqdm

    from slimface.align.photo import Photo
    from slimface.align.pipeline import align_all
    from slimface.errors import FaceError, ImageError

    detector = _detector(args.detector, args.pad)
    fallback = _detector(args.fallback_detector, args.pad)
    no_face = "error" if args.no_face == "error" else "centre"
    counts = {"written": 0, "detected": 0, "fallback": 0, "no_face": 0}
    skipped: dict[Path, str] = {}
    damaged: dict[Path, str] = {}
    for path, out in tqdm(list(zip(files, outputs)), desc="align every face", unit="img",
                          disable=len(files) < 2):
        try:
            photo = Photo.open(path, allow_damaged=args.allow_damaged)
            faces = align_all(photo, template, detector=detector, no_face=no_face,
                              fallback_detector=fallback)
        except FaceError:
            raise
        except ImageError as exc:
            if args.bad_file != "skip":
                raise _with_remedy(exc, len(files)) from None
            skipped[path] = exc.bare_problem
            continue
        if photo.damage:
            damaged[path] = photo.damage
        kept = [(i, a) for i, a in enumerate(faces, 1)
                if not (a.status == "centre" and args.no_face == "skip")]
        for aligned in faces:
            counts[_COUNTED_AS[aligned.status]] += 1
        if kept:
            _make_folder(out.parent)
        for i, aligned in kept:
            _write_crop(out.with_name(f"{out.stem}_face{i}{out.suffix}"), aligned.crop)
        counts["written"] += len(kept)
    return counts, skipped, damaged


def _report_damaged(damaged: dict[Path, str]) -> None:
    for path, problem in damaged.items():
        print_warning(f"{path}: {problem}; aligned anyway (--allow-damaged)")


def _write_crop(out: Path, crop: Any) -> None:
    """One crop, atomically: an interrupted run leaves whole crops or none."""
    from PIL import Image

    from slimface.io.atomic import atomic_save

    fmt = Image.registered_extensions()[out.suffix.lower()]
    options = {"quality": 95} if fmt == "JPEG" else {}
    atomic_save(out, lambda tmp: Image.fromarray(crop).save(tmp, format=fmt, **options))


def _write_crops(outputs: list[Path], batch: Any, no_face: str) -> int:
    """Write the batch's crops to ``outputs`` (same order), leaving out unreadable files
    and, with ``--no-face skip``, faceless ones; returns how many were written."""
    from slimface.align.pipeline import UNREADABLE

    written = 0
    for out, crop, status in zip(outputs, batch.crops, batch.status):
        if status == UNREADABLE or (status == "centre" and no_face == "skip"):
            continue
        _make_folder(out.parent)
        _write_crop(out, crop)
        written += 1
    return written


def _counts(batch: Any) -> dict[str, int]:
    counts = batch.counts()
    return {"detected": counts["detected"], "fallback": counts["fallback_detector"],
            "no_face": counts["centre"]}


def _by_file(files: list[Path], by_path: dict[str, str]) -> dict[Path, str]:
    """Entries of a batch's per-path dict (absolute paths) under the files as given."""
    return {f: by_path[os.path.abspath(f)] for f in files if os.path.abspath(f) in by_path}


def run(args: argparse.Namespace) -> int:
    from slimface.align import get_template
    from slimface.errors import ConfigError

    template = get_template(args.template)
    ext = args.ext if args.ext.startswith(".") else f".{args.ext}"
    if ext.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        raise ConfigError(f"--ext {args.ext!r}: choose .png, .jpg, .bmp or .webp")
    root, files = _find_images(Path(args.src))
    dst = Path(args.dst)
    outputs = _output_paths(files, root, dst, ext)
    if args.face == "all":  # crops written as each image is aligned
        counts, bad, damaged = _align_every_face(files, outputs, template, args)
    else:
        batch = _align(files, template, args)
        bad, damaged = _by_file(files, batch.problems), _by_file(files, batch.damaged)
    skipped = _refuse_unreadable(files, bad)
    _report_damaged(damaged)
    if args.face != "all":  # crops written once every file is known readable
        counts = {"written": _write_crops(outputs, batch, args.no_face), **_counts(batch)}
    summary = {"template": template.name, "images": len(files), **counts,
               "bad_files": len(bad), "dst": str(dst)}
    details = {**summary, **({"skipped": skipped} if skipped else {})}
    title = "slimface align" + (" --face all" if args.face == "all" else "")
    emit_result(args.json, details, format_table([summary], title=title))
    return 0


def _refuse_unreadable(files: list[Path], bad: dict[Path, str]) -> list[dict[str, str]]:
    """Stop on a lone unreadable image or when none could be read; else name the skipped
    ones on stderr and return their JSON list."""
    from slimface.errors import ImageError, SlimfaceError

    if len(bad) == len(files) == 1:
        raise ImageError(str(files[0]), bad[files[0]])
    skipped = report_skipped([(str(f), problem) for f, problem in bad.items()])
    if len(bad) == len(files):
        raise SlimfaceError(f"none of the {len(files)} images could be read")
    return skipped
