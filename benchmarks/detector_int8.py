"""Would an int8 RetinaFace pay for itself on big photos? Speed and alignment quality.

Usage: ``python benchmarks/detector_int8.py PHOTOS CALIB [--json OUT]``

Detection is about a third of a big photo's CPU time (``docs/speed-photos.md``), so the
question is whether ONNX Runtime's static int8 quantization (QOperator format, per-channel
int8 weights, uint8 activations) of the RetinaFace network keeps the alignment. The
network is calibrated on the photos of ``CALIB`` (make it with ``make_photo_folder.py
--seed`` other than the test folder's: never the photos it is judged on) at the 384 px
copy every photo is first detected on, then

* timed against the float network on the first 20 photos of ``PHOTOS`` at 384 and
  1,024 px, one thread, the two alternating;
* swapped into the pipeline for ``photos_agreement.py`` on ``PHOTOS``, whose landmark
  error and embedding agreement are printed beside the float network's.

The quantized network is written to a temporary folder and never kept: slimface does not
ship RetinaFace's weights in any form.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent


def detector_input(path: Path, side: int) -> np.ndarray:
    """The network input for ``path`` downscaled to ``side`` on the long side."""
    from slimface.align.detect.retinaface import RetinaFaceDetector
    from slimface.io.image import load_image

    image = load_image(path)
    h, w = image.shape[:2]
    f = side / max(h, w)
    small = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return RetinaFaceDetector._preprocess(small)


def quantize(calib: list[Path], out_dir: Path) -> Path:
    """RetinaFace quantized to int8, calibrated on ``calib`` at 384 px."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from slimface.align.detect.retinaface import weights_bytes

    float_path, pre_path = out_dir / "float.onnx", out_dir / "pre.onnx"
    float_path.write_bytes(weights_bytes())
    quant_pre_process(str(float_path), str(pre_path), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = iter({"input": detector_input(p, 384)} for p in calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.inputs, None)

    out = out_dir / "int8.onnx"
    quantize_static(str(pre_path), str(out), Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    return out


def session(source: Path | bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(source if isinstance(source, bytes) else str(source), opts,
                                providers=["CPUExecutionProvider"])


def time_both(float_sess: Any, int8_sess: Any, photos: list[Path]) -> dict[str, Any]:
    """ms per call of each network at 384 and 1,024 px, alternating blocks of 20 calls."""
    out: dict[str, Any] = {}
    for side in (384, 1024):
        inputs = [detector_input(p, side) for p in photos]
        best = {"float": float("inf"), "int8": float("inf")}
        for _ in range(3):
            for name, sess in (("float", float_sess), ("int8", int8_sess)):
                start = time.perf_counter()
                for x in inputs:
                    sess.run(None, {"input": x})
                best[name] = min(best[name], (time.perf_counter() - start) / len(inputs))
        out[f"{side}px"] = {k: round(v * 1e3, 2) for k, v in best.items()}
        out[f"{side}px"]["speedup"] = round(best["float"] / best["int8"], 2)
    return out


def agreement(folder: Path, int8: Path | None) -> dict[str, Any]:
    """``photos_agreement.py`` on ``folder``, with the int8 network swapped in if given."""
    import contextlib
    import io

    import slimface.align.detect.retinaface as rf

    sys.path.insert(0, str(HERE))
    import photos_agreement

    original = rf._session
    if int8 is not None:
        rf._session = functools.lru_cache(maxsize=4)(lambda threads: session(int8))
    try:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            photos_agreement.main([str(folder)])
        return json.loads(buf.getvalue())
    finally:
        rf._session = original


def summary(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("all", "small (<60 px)", "medium (60-200 px)", "large (>200 px)")
    return {"cpu_ms_per_photo_align_embed": report.get("cpu_ms_per_photo_align_embed"),
            "other_face": report.get("other_face"), "statuses": report.get("statuses"),
            **{k: {"landmark_error": report[k]["landmark_error"]["mean"],
                   "cosine_mean": report[k]["cosine"]["mean"],
                   "cosine_p10": report[k]["cosine"]["p10"]} for k in keep if k in report}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", type=Path, help="the test folder (make_photo_folder.py)")
    ap.add_argument("calib", type=Path, help="another such folder, to calibrate on")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from slimface.align.detect.retinaface import weights_bytes
    from slimface.runtime.timing import cpu_info

    photos = sorted(args.photos.glob("*.jpg"))
    calib = sorted(args.calib.glob("*.jpg"))
    if not photos or not calib:
        ap.error(f"no JPEGs in {args.photos if not photos else args.calib}")
    with tempfile.TemporaryDirectory() as tmp:
        int8 = quantize(calib, Path(tmp))
        result = {"cpu": cpu_info(), "calibration_photos": len(calib),
                  "timing_ms": time_both(session(weights_bytes()), session(int8), photos[:20]),
                  "float": summary(agreement(args.photos, None)),
                  "int8": summary(agreement(args.photos, int8))}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
