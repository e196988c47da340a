"""The ``.slim`` container: one file format for every model slimface writes.

A ``.slim`` file is a plain safetensors file (so ``safetensors`` tools can inspect it and it
loads without pickle). Tensors hold weights, packed bits (uint8), codebooks, indices and
scales; the safetensors metadata key ``"slimface"`` holds one JSON document describing the
architecture, the quantization scheme of each layer, the alignment template and the calibrated
threshold. ``format_version`` lets later readers refuse files they do not understand.

A second metadata key, ``"slimface_crc32"``, holds a CRC-32 of that JSON text and of every
tensor (name and bytes, in name order), written by :func:`save_slim` and checked by
:func:`load_slim`: a flipped byte in the weights would otherwise load silently and give
slightly or badly wrong embeddings. Header damage and truncation are caught by
:func:`check_layout` before that. Files written before the checksum existed (the bundled
weights among them) have no such key and load unchecked; older readers ignore the key.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from slimface.errors import ModelFileError
from slimface.io.atomic import atomic_path

FORMAT_NAME = "slimface"
FORMAT_VERSION = 1
_META_KEY = "slimface"
_CHECKSUM_KEY = "slimface_crc32"
#: Largest JSON header read (safetensors' own limit).
MAX_HEADER_BYTES = 100_000_000
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _as_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.ascontiguousarray(t)


def save_slim(path: str | os.PathLike[str], tensors: Mapping[str, Any],
              metadata: Mapping[str, Any]) -> Path:
    """Write tensors (numpy or torch) and JSON-serialisable metadata atomically."""
    from safetensors.numpy import save_file

    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **metadata}
    arrays = {k: _as_numpy(v) for k, v in tensors.items()}
    text = json.dumps(meta)
    header = {_META_KEY: text, _CHECKSUM_KEY: checksum(text, arrays)}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=header)
    return Path(path)


def checksum(meta_text: str, tensors: Mapping[str, np.ndarray]) -> str:
    """CRC-32 (8 hex digits) of the metadata text, then each tensor's name and little-endian
    bytes in name order. Computed from the tensors, not from the file, so that it does not
    depend on where safetensors places them and can go into the header it writes. CRC-32
    runs at memory speed (a few ms for a few MB): loading stays fast."""
    crc = zlib.crc32(meta_text.encode("utf-8"))
    for name in sorted(tensors):
        crc = zlib.crc32(name.encode("utf-8"), crc)
        crc = zlib.crc32(_little_endian_bytes(tensors[name]), crc)
    return f"{crc:08x}"


def _little_endian_bytes(array: np.ndarray) -> np.ndarray:
    """The bytes safetensors stores for ``array`` (it writes little-endian), as uint8."""
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.reshape(-1).view(np.uint8)


def read_slim_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the JSON header: cheap, for ``slimface info`` and model-compatibility checks."""
    from safetensors import safe_open

    _check_exists(path)
    check_layout(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(f"{path}: not a slimface model file ({exc})") from None
    return _parse_meta(path, raw)


def load_slim(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read every tensor and the metadata; raises :class:`ModelFileError` naming the file."""
    from safetensors import safe_open

    _check_exists(path)
    check_layout(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise ModelFileError(f"{path}: not a slimface model file or corrupt ({exc})") from None
    raw = header.get(_META_KEY)
    _verify(path, raw, tensors, header.get(_CHECKSUM_KEY))
    return tensors, _parse_meta(path, raw)


def _verify(path: str | os.PathLike[str], raw: str | None, tensors: Mapping[str, np.ndarray],
            stored: str | None) -> None:
    """Compare the recorded checksum with the contents; nothing to compare in files written
    before checksums (or without slimface metadata, which :func:`_parse_meta` refuses)."""
    if stored is None or raw is None:
        return
    found = checksum(raw, tensors)
    if found != stored:
        raise ModelFileError(f"{path}: damaged model file: its contents do not match the "
                             f"checksum written with it (CRC-32 {found}, recorded {stored:.16}); "
                             f"get a fresh copy, or write it again")


def check_layout(path: str | os.PathLike[str]) -> None:
    """Refuse a file whose header lies about its tensors, before anything is allocated.

    Reads only the 8-byte header length and the JSON header: every tensor's dtype must be
    known, its shape non-negative, its byte range inside the file and exactly as long as
    shape x dtype say.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path}: not a slimface model file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise ModelFileError(f"{path}: not a slimface model file or corrupt (header "
                                 f"claims {n} bytes, the file has {size})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{path}: corrupt model file header ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: corrupt model file header (not a JSON object)")
    data_bytes = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            ok = (dtype in _DTYPE_BYTES and isinstance(shape, list)
                  and all(isinstance(d, int) and d >= 0 for d in shape)
                  and all(isinstance(o, int) for o in (begin, end)))
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ModelFileError(f"{path}: corrupt entry for tensor {name!r} ({info!r:.200})")
        claimed = math.prod(shape) * _DTYPE_BYTES[dtype]
        if not 0 <= begin <= end <= data_bytes or end - begin != claimed:
            raise ModelFileError(
                f"{path}: tensor {name!r} claims shape {shape} {dtype} ({claimed} bytes) at "
                f"bytes {begin}..{end}, but the file holds {data_bytes} bytes of data; "
                f"corrupt or truncated model file")


def _check_exists(path: str | os.PathLike[str]) -> None:
    if not Path(path).is_file():
        raise ModelFileError(f"{path}: model file not found")


def _parse_meta(path: str | os.PathLike[str], raw: str | None) -> dict[str, Any]:
    if raw is None:
        raise ModelFileError(f"{path}: safetensors file without slimface metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: corrupt slimface metadata ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a slimface model file")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: written by a newer slimface (format "
                             f"{meta['format_version']} > {FORMAT_VERSION}); upgrade slimface")
    return meta
