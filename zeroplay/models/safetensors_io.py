"""Safetensors files read through numpy memory maps, and written back, without torch.

The format is an 8-byte little-endian header length, a JSON header of
`{name: {"dtype", "shape", "data_offsets"}}`, then the raw bytes. Reading it by hand gives true
memory maps (nothing is read until a slice is taken) and bfloat16 through `ml_dtypes`, which the
`safetensors.numpy` helpers do not offer.
"""
from __future__ import annotations

import json
import os
import struct

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


class SafetensorsError(ValueError):
    pass


def open_safetensors(path: str) -> dict[str, np.ndarray]:
    """{name: read-only memory-mapped array} for one .safetensors file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                raise SafetensorsError(f"{path}: corrupt safetensors header")
            header = json.loads(f.read(n))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SafetensorsError(f"{path}: not a readable safetensors file ({e})") from None
    header.pop("__metadata__", None)
    out = {}
    base = 8 + n
    for name, info in header.items():
        if info["dtype"] not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(_DTYPES[info["dtype"]])
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - start != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise SafetensorsError(f"{path}: tensor {name} has inconsistent size")
        if end == start:
            out[name] = np.zeros(shape, dtype)
            continue
        out[name] = np.memmap(path, dtype=dtype, mode="r", offset=base + start, shape=shape)
    return out


def save_safetensors(tensors: dict[str, np.ndarray], path: str, metadata: dict | None = None) -> None:
    """Write {name: array} as one safetensors file (atomically: temp file then rename)."""
    header, offset, arrays = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype not in _NAMES:
            raise SafetensorsError(f"cannot store dtype {a.dtype} of {name}")
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())
    os.replace(tmp, path)
