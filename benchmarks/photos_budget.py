"""Where a big photo's decode and detection time goes, call by call, against the floor.

Usage: ``python benchmarks/photos_budget.py FOLDER [--model M] [--limit N] [--json OUT]``

``slimface bench photos`` splits a photo's time by stage; this splits the two big stages by
call, on one thread, through the same ``FaceMatcher(model, face="largest",
no_face="centre")``:

* **decode** calls by DCT scale, the first one (the detection level) apart from the later
  ones (a finer level for a small face, asked for by the refinement or the warp);
* **detect** calls by the long side of the detector's input (the 384 px pass every photo
  takes, the larger copies tried when it finds no face, the refinement regions);
* the **floor**: the whole folder decoded once by libjpeg-turbo (``simplejpeg``) at each DCT
  scale, the cost of reading the entropy-coded data with nothing else.

All figures are milliseconds of one thread per photo of the folder, so they compare
directly with the stage columns of ``bench photos``. The JSON records the CPU and commit.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

def _who_asked(frames: list[str]) -> str:
    if "redetect_around" in frames:
        return "refine"
    if "crop_photo" in frames:
        return "warp"
    return "other"


def count_calls(matcher: Any, files: list[Path]) -> dict[str, dict[str, Any]]:
    """Per-call counts and mean ms of decodes and detections while ``matcher`` embeds the
    largest face of every file (wrapping the two functions for the run only)."""
    import slimface.io.decode as decode
    from slimface.align.detect.retinaface import RetinaFaceDetector

    calls: dict[str, list[float]] = collections.defaultdict(list)
    real_decode, real_detect = decode.decode_scaled, RetinaFaceDetector.detect

    def timed(key: Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            calls[key(out, *args, **kwargs)].append(time.perf_counter() - start)
            return out
        return wrapper

    def decode_key(out: Any, path: Any, factor: int = 1, **kwargs: Any) -> str:
        if not kwargs.get("checked"):
            return f"decode first 1/{out.factor}"
        frames = [f.name for f in traceback.extract_stack()]
        return f"decode again 1/{out.factor} ({_who_asked(frames)})"

    def detect_key(out: Any, self: Any, image: Any, **kwargs: Any) -> str:
        side = max(image.shape[:2])
        kind = "region" if kwargs.get("pad") == 0.0 else "copy"
        return f"detect {kind} {side // 128 * 128}-{side // 128 * 128 + 127} px"

    decode.decode_scaled = timed(decode_key, real_decode)
    RetinaFaceDetector.detect = timed(detect_key, real_detect)
    try:
        for path in files:
            matcher.embed_face(str(path))
    finally:
        decode.decode_scaled, RetinaFaceDetector.detect = real_decode, real_detect
    n = len(files)
    return {k: {"calls": len(v), "ms_per_call": 1e3 * sum(v) / len(v),
                "ms_per_photo": 1e3 * sum(v) / n} for k, v in sorted(calls.items())}


def decode_floor(files: list[Path]) -> dict[str, float]:
    """ms per photo to decode every file once at each DCT scale with libjpeg-turbo."""
    import simplejpeg

    from slimface.io.decode import FACTORS

    data = [p.read_bytes() for p in files]
    out = {}
    for scale in sorted(FACTORS, reverse=True):
        start = time.perf_counter()
        for blob in data:
            h, w, _, _ = simplejpeg.decode_jpeg_header(blob)
            simplejpeg.decode_jpeg(blob, min_height=max(1, h // scale),
                                   min_width=max(1, w // scale))
        out[f"1/{scale}"] = 1e3 * (time.perf_counter() - start) / len(data)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", default="slimface-mobile")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    import cv2
    import torch

    from slimface._provenance import git_commit
    from slimface.api import FaceMatcher
    from slimface.cli.bench_photos import photo_files
    from slimface.runtime.timing import cpu_info

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    files = [p for p in photo_files(args.folder, args.limit) if p.suffix.lower() in
             (".jpg", ".jpeg")]
    matcher = FaceMatcher(args.model, face="largest", no_face="centre")
    matcher.embed_face(str(files[0]))  # load the model and the detector untimed
    result = {"folder": str(args.folder), "photos": len(files), "model": args.model,
              "cpu": cpu_info(), "commit": git_commit(),
              "calls": count_calls(matcher, files), "decode_floor_ms": decode_floor(files)}
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    rows = [f"{k:<40} {v['calls']:>5} calls {v['ms_per_call']:7.1f} ms each "
            f"{v['ms_per_photo']:6.2f} ms/photo" for k, v in result["calls"].items()]
    rows += [f"floor: whole folder decoded at {k:<5} {v:6.2f} ms/photo"
             for k, v in result["decode_floor_ms"].items()]
    print("\n".join(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
