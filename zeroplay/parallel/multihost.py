"""Host data across the processes of a multi-host run (`jax.distributed`), for the loop.

    if is_multihost():
        parts = allgather_objects(my_rows)      # [rows of process 0, rows of process 1, ...]
        state = broadcast_object(state)         # process 0's value on every process
        stop = any_process(stop)

Python objects travel pickled, as uint8 arrays through `jax.experimental.multihost_utils`
(`process_allgather`, `broadcast_one_to_all`): the same collectives as the devices' (gloo on CPU,
ICI/DCN on TPU), no transport of our own. Every process must make the same calls in the same
order; a single process returns its argument untouched (no copy, no pickling).
"""
from __future__ import annotations

import pickle
from typing import Any

import jax
import numpy as np


def is_multihost() -> bool:
    return jax.process_count() > 1


def _to_bytes(obj: Any) -> np.ndarray:
    return np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)


def allgather_objects(obj: Any) -> list[Any]:
    """Every process's `obj`, in process order, on every process."""
    if not is_multihost():
        return [obj]
    from jax.experimental import multihost_utils

    data = _to_bytes(obj)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([data.size], np.int32))).reshape(-1)
    buf = np.zeros((max(int(sizes.max()), 1),), np.uint8)
    buf[:data.size] = data
    got = np.asarray(multihost_utils.process_allgather(buf))
    return [pickle.loads(got[i, :int(n)].tobytes()) for i, n in enumerate(sizes)]


def broadcast_object(obj: Any) -> Any:
    """Process 0's `obj` on every process (the others' arguments are ignored)."""
    if not is_multihost():
        return obj
    from jax.experimental import multihost_utils

    first = jax.process_index() == 0
    data = _to_bytes(obj) if first else np.zeros((0,), np.uint8)
    size = int(np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(data.size, np.int32))))
    buf = np.zeros((max(size, 1),), np.uint8)
    if first:
        buf[:size] = data
    got = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return pickle.loads(got[:size].tobytes())


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on any of them."""
    if not is_multihost():
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.asarray([int(bool(flag))], np.int32))).any())
