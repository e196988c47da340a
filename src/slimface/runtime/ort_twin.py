"""A model's ONNX Runtime twin, loaded without PyTorch: commands that start in half a second.

Importing PyTorch is most of a short command's time (about 1.4 of the 1.9 seconds of one
``slimface verify a.jpg b.jpg``). When the embedder has chosen ONNX Runtime for a model
(:mod:`slimface.runtime.ort_embed`: the cached export agrees with PyTorch and runs faster),
:func:`record_twin` writes that choice beside the export: the model's contract attributes,
its weights' fingerprint, and stamps of the weights file (path, size, content hash, taken
before the model was loaded), of every slimface module the process had loaded (size and
modification time) and of ONNX Runtime's version. The next process that names the same
model finds the record (:func:`load_twin`), checks the stamps and embeds with the cached
export directly, as the first process did after its checks: no PyTorch, no export, no
parity check, no timing. Any mismatch (other weights, code or installation, a record or
export that is missing or unreadable, ``SLIMFACE_EMBED_RUNTIME=torch``) loads the model
the usual way, which records the twin again.

Only models named by a pretrained name or a model file are recorded; a model object handed
to the API is embedded as it is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from slimface.conventions import FlipMode
from slimface.models.embedding import embed_batches

log = logging.getLogger(__name__)

ENV_VAR = "SLIMFACE_EMBED_RUNTIME"
EMBED_RUNTIMES: tuple[str, ...] = ("auto", "onnx", "torch")
#: Model files that load as a PyTorch module, so an ONNX twin can stand in for them.
TWIN_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".tflite")
#: Attributes a twin carries for the embedder (the backbone contract and detector choice).
TWIN_ATTRS: tuple[str, ...] = ("template", "input_size", "embedding_dim", "threshold",
                               "detector", "fallback_detector")
RECORD_VERSION = 1


def requested_runtime() -> str:
    """``$SLIMFACE_EMBED_RUNTIME`` (``auto`` when unset); an unknown value is an error."""
    from slimface.errors import ConfigError

    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in EMBED_RUNTIMES:
        raise ConfigError(f"{ENV_VAR}={value!r} unknown (choose from "
                          f"{', '.join(EMBED_RUNTIMES)})")
    return value


class OrtEmbedder:
    """An ONNX Runtime session for a backbone, with ``embed_crops``'s flip handling and
    normalisation (crops and mirrors in one batch).

    ``session.run`` is thread-safe, so threads embedding different photos share one.
    """

    #: What embeds (``slimface bench photos`` reports it).
    runtime = "onnxruntime"

    def __init__(self, session: Any, embedding_dim: int, batch_size: int = 64,
                 path: Path | None = None):
        self.session = session
        self.embedding_dim = int(embedding_dim)
        self.batch_size = batch_size
        self.path = path

    def raw(self, crops: np.ndarray) -> np.ndarray:
        """Raw embeddings of uint8 NHWC crops (float32 NCHW 0..255 in, as the backbone)."""
        from slimface.runtime.ort_session import run_onnx

        return run_onnx(self.session, crops, batch_size=max(1, len(crops)))

    def embed_crops(self, crops: np.ndarray, flip: FlipMode = "none",
                    normalize: bool = True) -> np.ndarray:
        """The embeddings ``embed_crops(model, crops, flip=flip)`` gives."""
        return embed_batches(self.raw, crops, self.embedding_dim, self.batch_size, flip,
                             normalize)


class OrtTwin(OrtEmbedder):
    """A recorded model as the embedder sees it: its attributes and an ONNX session.

    ``fingerprint`` is the PyTorch model's, so galleries and thresholds see the same model.
    """

    def __init__(self, session: Any, record: dict[str, Any], path: Path):
        attrs = record["attrs"]
        super().__init__(session, int(attrs["embedding_dim"]), path=path)
        self.name = record["spec"]
        self.fingerprint = record["fingerprint"]
        for key in TWIN_ATTRS:
            value = attrs.get(key)
            setattr(self, key, tuple(value) if key == "input_size" else value)


def model_spec(spec: str | os.PathLike[str]) -> str:
    """The name a spec is recorded under: a file's absolute path, else the name as given."""
    return str(Path(spec).resolve()) if Path(spec).is_file() else str(spec)


def record_path(spec: str) -> Path:
    """Where the record of ``spec`` (see :func:`model_spec`) lives in the cache."""
    from slimface.io.paths import cache_root

    digest = hashlib.sha256(spec.encode()).hexdigest()[:20]
    return cache_root() / "onnx" / "twins" / f"{digest}.json"


def _weights_file(spec: str) -> Path | None:
    """The file whose weights ``spec`` loads: a pretrained model's, or the file itself."""
    from slimface.models.pretrained import find_card

    card = find_card(spec)
    if card is not None:
        return card.path()
    path = Path(spec)
    return path if path.suffix.lower() in TWIN_SUFFIXES and path.is_file() else None


def weights_stamp(spec: str) -> dict[str, Any] | None:
    """The weights file of ``spec`` (see :func:`model_spec`) by path, size and content hash
    (a few milliseconds for these files), or None when ``spec`` has no such file. Taken
    before a model is loaded, so a record never pairs a file with weights read before it
    was replaced."""
    path = _weights_file(spec)
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "size": path.stat().st_size,
            "sha256": digest.hexdigest()}


def _package_root() -> Path:
    return Path(__file__).resolve().parents[1]


def code_stamp() -> dict[str, Any]:
    """Every slimface module this process has loaded (size and modification time, relative
    to the package): what built, exported and checked the model. An edit or an upgrade of
    any of them, or another installation of slimface, makes a record stale."""
    root = _package_root()
    files = {}
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if not name or not getattr(module, "__name__", "").startswith("slimface"):
            continue
        path = Path(name).resolve()
        if path.is_relative_to(root):
            stat = path.stat()
            files[str(path.relative_to(root))] = [stat.st_size, stat.st_mtime_ns]
    return {"root": str(root), "files": dict(sorted(files.items()))}


def _code_unchanged(recorded: dict[str, Any]) -> bool:
    root = _package_root()
    if recorded.get("root") != str(root) or not recorded.get("files"):
        return False
    for rel, (size, mtime_ns) in recorded["files"].items():
        stat = (root / rel).stat()
        if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
            return False
    return True


def _onnxruntime_version() -> str:
    import onnxruntime

    return f"{onnxruntime.__version__}/{RECORD_VERSION}"


def _attrs(model: Any) -> dict[str, Any]:
    """The model's twin attributes as JSON values; None when one is not plain data."""
    attrs = {}
    for key in TWIN_ATTRS:
        value = getattr(model, key, None)
        if key == "template" and value is not None and not isinstance(value, str):
            value = getattr(value, "name", None)
        if key == "input_size" and value is not None:
            value = [int(v) for v in value]
        attrs[key] = value
    try:
        json.dumps(attrs)
    except (TypeError, ValueError):
        return {}
    return attrs if attrs["template"] and attrs["embedding_dim"] else {}


def record_twin(spec: str, model: Any, embedder: OrtEmbedder, fingerprint: str,
                chosen_by: str, weights: dict[str, Any] | None) -> Path | None:
    """Record that ``spec`` embeds with ``embedder``'s export (see the module docstring);
    ``weights`` is :func:`weights_stamp` as taken before the model was loaded: nothing is
    written when the file has changed since. The record's path, or None when there is none.
    Never raises: a cache that cannot be written only costs the next process its fast
    start."""
    from slimface.io.atomic import atomic_write_text

    try:
        attrs = _attrs(model)
        if weights is None or not attrs or embedder.path is None:
            return None
        if weights_stamp(spec) != weights:
            log.debug("%s: the weights file changed since it was loaded; no twin", spec)
            return None
        record = {"spec": spec, "weights": weights, "code": code_stamp(),
                  "onnxruntime": _onnxruntime_version(), "onnx": embedder.path.name,
                  "fingerprint": fingerprint, "chosen_by": chosen_by, "attrs": attrs}
        path = record_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1))
        return path
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.debug("%s: no ONNX Runtime twin recorded (%s)", spec, exc)
        return None


def load_twin(spec: str | os.PathLike[str],
              weights: dict[str, Any] | None = None) -> OrtTwin | None:
    """The twin recorded for ``spec`` when its stamps still hold and the runtime requested
    allows it, else None (load the model the usual way). ``weights``: the file's
    :func:`weights_stamp` when the caller has taken it already."""
    runtime = requested_runtime()
    if runtime == "torch":
        return None
    name = model_spec(spec)
    try:
        path = record_path(name)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        if runtime == "auto" and record.get("chosen_by") != "auto":
            return None  # ONNX Runtime was forced, not measured faster
        if (record.get("spec") != name
                or record.get("onnxruntime") != _onnxruntime_version()
                or not _code_unchanged(record["code"])
                or record.get("weights") != (weights or weights_stamp(name))):
            return None
        onnx = path.parent.parent / record["onnx"]
        if not onnx.is_file():
            return None
        from slimface.runtime.ort_session import session

        twin = OrtTwin(session(onnx, threads=1, spin=False), record, onnx)
    except Exception as exc:  # noqa: BLE001 - any doubt loads the model itself
        log.debug("%s: ONNX Runtime twin not used (%s)", spec, exc)
        return None
    log.debug("embedding %s with its recorded ONNX Runtime twin %s", name, onnx)
    return twin
