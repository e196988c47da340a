"""Why slimface times models in alternating blocks with ONNX Runtime's spinning off.

Times the dlib teacher's fp32 and int8 ONNX files (as written by `slimface bench int8
--model dlib-resnet`, default folder `$SLIMFACE_CACHE/export/dlib-resnet`) at batch 1 and 32,
with intra-op spinning on and off, alternating call by call and in blocks. The figures in
`src/slimface/runtime/timing.py` and `runtime/export.session` come from this script.

    slimface bench int8 --model dlib-resnet --no-lfw      # writes fp32.onnx, int8_0.onnx
    python benchmarks/ort_spin.py [FOLDER] [--threads 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from slimface.io.paths import cache_root
from slimface.runtime.export import session


def _median_ms(sess, x: np.ndarray, n: int) -> float:
    feed = {sess.get_inputs()[0].name: x}
    times = []
    for _ in range(n):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=str(cache_root() / "export" / "dlib-resnet"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    folder = Path(args.folder)
    for batch, reps in ((1, 60), (32, 8)):
        x = np.random.default_rng(0).uniform(0, 255, (batch, 3, 150, 150)).astype(np.float32)
        for spin in (True, False):
            a = session(folder / "fp32.onnx", args.threads, spin=spin)
            b = session(folder / "int8_0.onnx", args.threads, spin=spin)
            _median_ms(a, x, 3), _median_ms(b, x, 3)
            pairs = [(_median_ms(a, x, 1), _median_ms(b, x, 1)) for _ in range(reps)]
            ta, tb = np.median([p[0] for p in pairs]), np.median([p[1] for p in pairs])
            print(f"batch {batch:2d} spin={spin!s:5} call-by-call: fp32 {ta:6.1f} ms, int8 "
                  f"{tb:6.1f} ms, ratio {ta / tb:.2f}")
            ta, tb = _median_ms(a, x, reps), _median_ms(b, x, reps)
            print(f"batch {batch:2d} spin={spin!s:5} blocks:       fp32 {ta:6.1f} ms, int8 "
                  f"{tb:6.1f} ms, ratio {ta / tb:.2f}")


if __name__ == "__main__":
    main()
