"""ONNX Runtime sessions and runs for embedding models, without PyTorch.

Split from :mod:`slimface.runtime.export` (which needs PyTorch to write the files) so that a
command that only runs an exported model never imports PyTorch
(:mod:`slimface.runtime.ort_twin`).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from slimface.errors import ModelError, ModelFileError


def session(path: str | os.PathLike[str], threads: int = 2,
            optimization: str = "all", spin: bool = True) -> Any:
    """An ONNX Runtime CPU session; ``optimization`` in basic/extended/all/disable.

    ``spin`` lets idle intra-op threads busy-wait for the next call (ONNX Runtime's default):
    lowest latency for one session at batch 1, but a spinning pool burns the cores *another*
    session needs (``benchmarks/ort_spin.py``); see ``runtime/timing.py`` for how the
    benchmarks deal with it.
    """
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if optimization not in levels:
        raise ModelError(f"optimization {optimization!r} unknown (choose from {list(levels)})")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = levels[optimization]
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelFileError(f"{path}: ONNX Runtime cannot load it ({exc})") from None


def run_onnx(sess: Any, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Raw embeddings of uint8 NHWC crops through an ONNX session (backbone contract)."""
    name = sess.get_inputs()[0].name
    out = []
    for start in range(0, len(crops), batch_size):
        x = np.ascontiguousarray(crops[start:start + batch_size].transpose(0, 3, 1, 2),
                                 np.float32)
        out.append(sess.run(None, {name: x})[0])
    return np.concatenate(out).astype(np.float32)
