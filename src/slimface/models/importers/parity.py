"""Does an imported network compute what its source runtime computes? (LiteRT / ONNX Runtime)"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from slimface.errors import SlimfaceError
from slimface.models.graph import GraphNet


def source_embeddings(source: str | os.PathLike[str], model: GraphNet,
                      images_nhwc: np.ndarray) -> np.ndarray:
    """Run the source file in its own runtime on uint8/float NHWC RGB 0..255 images.

    The source's normalisation and channel order are the ones recorded at import. TFLite
    files with a fixed batch are fed that many images at a time (the last batch padded).
    """
    x = images_nhwc.astype(np.float32)
    if model.bgr:
        x = x[..., ::-1]
    mean = model.pixel_mean.flatten().numpy()
    std = model.pixel_std.flatten().numpy()
    x = np.ascontiguousarray((x - mean) / std, dtype=np.float32)
    if Path(source).suffix.lower() == ".tflite":
        return _litert(Path(source), x)
    return _onnxruntime(Path(source), np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _litert(path: Path, x: np.ndarray) -> np.ndarray:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise SlimfaceError("LiteRT is not installed: pip install ai-edge-litert") from None
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    batch = int(inp["shape"][0])
    rows = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        interp.set_tensor(inp["index"], padded)
        interp.invoke()
        rows.append(interp.get_tensor(out["index"])[:len(chunk)].copy())
    return np.concatenate(rows)


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def source_parity(source: str | os.PathLike[str], model: GraphNet,
                  images_nhwc: np.ndarray | None = None) -> float:
    """Smallest cosine between the imported module's and the source runtime's embeddings
    (random 0..255 images when none are given)."""
    if images_nhwc is None:
        h, w = model.input_size
        images_nhwc = np.random.default_rng(0).integers(0, 256, (8, h, w, 3)).astype(np.uint8)
    ref = source_embeddings(source, model, images_nhwc)
    with torch.inference_mode():
        x = torch.from_numpy(images_nhwc.astype(np.float32)).permute(0, 3, 1, 2).contiguous()
        ours = model.eval()(x).numpy()
    return float(cosines(ref, ours).min())
