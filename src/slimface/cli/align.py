"""``slimface align SRC DST --template NAME``: aligned face crops, mirrored folder tree.

SRC is an image file or a folder (searched recursively for .jpg/.jpeg/.png/.pgm/.ppm/.bmp/
.webp); every crop is written under DST at the same relative path (with ``--ext``'s
extension). Detection is cached (``$SLIMFACE_CACHE/crops``), so re-running is fast.
The summary counts images where the main detector found a face (detected), where only the
fallback detector did (fallback), and where none did (no-face: centre crop, skipped or error
by ``--no-face``). ``--face`` picks the face when an image holds several.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from slimface.cli._common import add_json_arg, emit_result, format_table, fraction, hidden_alias


def register(sub: Any) -> None:
    from slimface.align.templates import list_templates
    from slimface.gallery.embedder import MULTI_FACE_CHOICES

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
    face = p.add_argument("--face", choices=MULTI_FACE_CHOICES, default="largest",
                          help="several faces in one image: keep the largest (default), the "
                               "one nearest the centre, or stop (error)")
    hidden_alias(p, face, "--multi-face")
    p.add_argument("--no-face", choices=("centre", "skip", "error"), default="centre",
                   help="no face found: write a centre crop (default), skip the file, or stop")
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


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from slimface.align import align_paths, get_template
    from slimface.errors import ConfigError, MultipleFacesError

    template = get_template(args.template)
    ext = args.ext if args.ext.startswith(".") else f".{args.ext}"
    if ext.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        raise ConfigError(f"--ext {args.ext!r}: choose .png, .jpg, .bmp or .webp")
    root, files = _find_images(Path(args.src))
    dst = Path(args.dst)
    outputs = _output_paths(files, root, dst, ext)
    try:
        batch = align_paths(files, template, detector=_detector(args.detector, args.pad),
                            fallback_detector=_detector(args.fallback_detector, args.pad),
                            multi_face=args.face,
                            no_face="error" if args.no_face == "error" else "centre",
                            cache=not args.no_cache, workers=args.workers, progress=True)
    except MultipleFacesError as exc:
        raise MultipleFacesError(exc.path, f"{exc.problem.split(';')[0]}; use a photo with one "
                                           f"face, or pass --face largest or --face central"
                                 ) from None
    written = 0
    for out, crop, status in zip(outputs, batch.crops, batch.status):
        if status == "centre" and args.no_face == "skip":
            continue
        _make_folder(out.parent)
        Image.fromarray(crop).save(out, **({"quality": 95} if ext in (".jpg", ".jpeg") else {}))
        written += 1
    counts = batch.counts()
    summary = {"template": template.name, "images": len(files), "written": written,
               "detected": counts["detected"], "fallback": counts["fallback_detector"],
               "no_face": counts["centre"], "dst": str(dst)}
    emit_result(args.json, summary, format_table([summary], title="slimface align"))
    return 0
