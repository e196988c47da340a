"""``slimface bench photos DIR``: photos per second through the public API, split by stage.

Every image file under DIR (sorted; ``--limit N`` keeps the first N) goes through
``FaceMatcher(model, face="largest", no_face="centre").embed_face``, the same path as
``slimface embed`` and the gallery. ``--threads T`` photos are in flight at once, each on one
thread (PyTorch, OpenCV and ONNX Runtime run single-threaded inside a photo), so T is the
number of cores used; ``--threads 1`` is a plain serial loop.

The split into decode (file to pixels, at whatever scale the pipeline asks for), detect,
align (the warp onto the model's template) and embed comes from the pipeline's own stage
marks (``slimface.align.stages``); ``other`` is the rest of each call. Stage figures are
milliseconds of one thread per photo, so with T threads they add up to about T times the
wall time per photo. ``cpu_ms_per_photo`` is the process's CPU time per photo: on a shared
machine it says more about the code than photos/s does. The JSON records the CPU model and
instruction set, the commit, and the load average before and after.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from slimface.cli._common import (add_json_arg, add_model_arg, emit_result, format_table,
                                  positive_int)

FACE_CHOICES = ("largest", "central", "error")
NO_FACE_CHOICES = ("centre", "error")


def register(sub: Any) -> None:
    p = sub.add_parser("photos", help="photos/s of a folder through FaceMatcher, by stage",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="DIR", type=Path, help="folder of photos (searched "
                                                            "recursively)")
    add_model_arg(p, help="registry name or model file (default: the default model)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N files only")
    p.add_argument("--threads", type=positive_int, default=2,
                   help="photos in flight at once, one thread each (default 2)")
    p.add_argument("--face", choices=FACE_CHOICES, default="largest",
                   help="several faces in a photo: take the largest (default), the central "
                        "one, or count the photo as failed")
    p.add_argument("--no-face", choices=NO_FACE_CHOICES, default="centre",
                   help="no face found: the centre crop (default) or count the photo as failed")
    p.add_argument("--warmup", type=int, default=2,
                   help="photos embedded untimed first (model and detector loading)")
    add_json_arg(p)
    p.set_defaults(func=run)


def photo_files(folder: Path, limit: int | None = None) -> list[Path]:
    """Image files under ``folder`` (by extension, recursive, sorted), the first ``limit``."""
    from slimface.errors import SlimfaceError
    from slimface.io.image import IMAGE_EXTENSIONS, image_files

    if not folder.is_dir():
        raise SlimfaceError(f"{folder}: not a folder")
    files = image_files(folder)
    if not files:
        raise SlimfaceError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files[:limit] if limit else files


def _megapixels(path: Path) -> float | None:
    from slimface.errors import SlimfaceError
    from slimface.io.decode import read_header

    try:
        w, h = read_header(path).size
    except SlimfaceError:  # a bad file is counted as failed by the run itself
        return None
    return w * h / 1e6


def _clock() -> float:
    from slimface.runtime import timing

    return timing.time.perf_counter()  # the clock tests replace with ``fake_clock``


def time_photos(matcher: Any, files: Sequence[Path], threads: int) -> dict[str, Any]:
    """Embed every file through ``matcher`` with ``threads`` in flight; times and statuses."""
    from concurrent.futures import ThreadPoolExecutor

    from slimface.align.stages import record_stages
    from slimface.errors import SlimfaceError

    def one(path: Path) -> tuple[dict[str, float], float, str, str | None]:
        with record_stages(_clock) as rec:
            start = _clock()
            try:
                status, error = matcher.embed_face(path).status, None
            except SlimfaceError as exc:
                status, error = "failed", str(exc)
            total = _clock() - start
        return dict(rec.seconds), total, status, error

    cpu_start, wall_start = time.process_time(), _clock()
    if threads == 1:
        results = [one(p) for p in files]
    else:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, files))
    wall = _clock() - wall_start
    cpu = time.process_time() - cpu_start
    return summarise(results, wall, cpu)


def summarise(results: Sequence[tuple[dict[str, float], float, str, str | None]],
              wall_s: float, cpu_s: float) -> dict[str, Any]:
    """photos/s, mean milliseconds per stage and photo, latency, statuses, first errors."""
    from slimface.align.stages import STAGES

    n = len(results)
    stage_ms = {s: 1e3 * sum(r[0].get(s, 0.0) for r in results) / n for s in STAGES}
    totals = [r[1] * 1e3 for r in results]
    stage_ms["other"] = max(0.0, statistics.fmean(totals) - sum(stage_ms.values()))
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r[2]] = statuses.get(r[2], 0) + 1
    errors = [r[3] for r in results if r[3] is not None]
    return {"photos": n, "wall_s": round(wall_s, 4), "photos_per_s": round(n / wall_s, 3),
            "cpu_s": round(cpu_s, 3), "cpu_ms_per_photo": round(1e3 * cpu_s / n, 2),
            "stages_ms": {k: round(v, 3) for k, v in stage_ms.items()},
            "latency_ms": {"median": round(statistics.median(totals), 3),
                           "p95": round(sorted(totals)[min(n - 1, int(0.95 * n))], 3)},
            "statuses": statuses, "failed": len(errors), "errors": errors[:5]}


def run(args: argparse.Namespace) -> int:
    import cv2
    import torch

    from slimface._provenance import git_commit
    from slimface.api import FaceMatcher
    from slimface.runtime.timing import cpu_info

    files = photo_files(args.folder, args.limit)
    torch.set_num_threads(1)  # one thread per photo; --threads photos at once
    cv2.setNumThreads(1)
    matcher = FaceMatcher(args.model, face=args.face, no_face=args.no_face,
                          threads=args.threads)
    runner = matcher.embedder.runner  # model loading, not a photo's time (ONNX export)
    for path in files[:max(0, args.warmup)]:
        try:
            matcher.embed_face(path)
        except Exception:  # noqa: BLE001 - warm-up only; the timed run reports failures
            pass
    mp = [m for m in (_megapixels(p) for p in files) if m is not None]
    load_before = list(os.getloadavg())
    result = time_photos(matcher, files, args.threads)
    cpu = cpu_info()
    result = {"folder": str(args.folder), "model": matcher.embedder.model_name,
              "detector": matcher.embedder.detector_name,
              "embed_runtime": getattr(runner, "runtime", "torch"),
              "face": args.face,
              "no_face": args.no_face, "threads": args.threads, **result,
              "megapixels": {"mean": round(statistics.fmean(mp), 2) if mp else None,
                             "min": round(min(mp), 2) if mp else None,
                             "max": round(max(mp), 2) if mp else None},
              "cpu": cpu, "commit": git_commit(), "load_average_before": load_before,
              "load_average": list(os.getloadavg())}
    total = sum(result["stages_ms"].values())
    rows = [{"stage": k, "ms_per_photo": v, "share": f"{100 * v / total:.0f}%" if total else "-"}
            for k, v in result["stages_ms"].items()]
    title = (f"{result['photos']} photos ({result['megapixels']['mean']} MP mean), "
             f"{result['model']}, {args.threads} thread(s): {result['photos_per_s']:.1f} "
             f"photos/s, {result['cpu_ms_per_photo']:.1f} CPU ms/photo; {cpu['label']}; "
             f"load {load_before[0]:.2f}")
    failed = format_table([{"error": e} for e in result["errors"]],
                          title=f"{result['failed']} photos failed (first "
                                f"{len(result['errors'])})") if result["failed"] else None
    emit_result(args.json, result, format_table(rows, title=title), failed)
    return 0
