"""Pytree helpers for checkpoints: typed PRNG keys as raw data, abstract restore targets, JSON values.

Orbax stores plain arrays; a typed key (`jax.random.key`) is stored as its `key_data` (uint32
`[..., 2]` for threefry) and rewrapped on restore. Restore targets are `jax.ShapeDtypeStruct`s
whose `.sharding` says where each restored array goes, so the same checkpoint restores onto any
mesh.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Sharding


def is_typed_key(x: Any) -> bool:
    """True for a typed PRNG key array (or its ShapeDtypeStruct)."""
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def path_str(path) -> str:
    """A key path as "a/0/b", the same for a dict, dataclass, namedtuple or list holding the leaf."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _key_impl_name(x) -> str:
    if isinstance(x, jax.Array):
        return str(jax.random.key_impl(x))
    return x.dtype._impl.name  # a ShapeDtypeStruct of keys: no public accessor


def encode_keys(tree) -> tuple[Any, dict[str, str]]:
    """(tree with every typed key replaced by its raw key data, {leaf path: key impl name})."""
    impls: dict[str, str] = {}

    def enc(path, x):
        if is_typed_key(x):
            impls[path_str(path)] = _key_impl_name(x)
            return jax.random.key_data(x)
        return x

    return jax.tree_util.tree_map_with_path(enc, tree), impls


def _key_data_struct(x: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
    """The ShapeDtypeStruct of `jax.random.key_data` for an abstract typed key."""
    data = jax.eval_shape(lambda k: jax.random.key_data(k), jax.ShapeDtypeStruct(x.shape, x.dtype))
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=getattr(x, "sharding", None))


def key_data_targets(target):
    """A restore target with typed keys replaced by the struct of their raw data."""
    def conv(x):
        if is_typed_key(x):
            return _key_data_struct(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_sharding_of(x)))
        return x
    return jax.tree.map(conv, target)


def decode_keys(tree, impls: Mapping[str, str], target=None):
    """Rewrap raw key data as typed keys: at the leaves `target` marks as keys, else at `impls` paths."""
    if target is not None:
        def dec_t(t, x):
            if is_typed_key(t):
                return jax.random.wrap_key_data(x, impl=_key_impl_name(t))
            return x
        return jax.tree.map(dec_t, target, tree)

    def dec(path, x):
        impl = impls.get(path_str(path))
        return x if impl is None else jax.random.wrap_key_data(x, impl=impl)
    return jax.tree_util.tree_map_with_path(dec, tree)


def _sharding_of(x) -> Sharding | None:
    s = getattr(x, "sharding", None)
    return s if isinstance(s, Sharding) else None


def abstract_like(tree, shardings=None):
    """ShapeDtypeStructs of `tree` (arrays or structs), placed by `shardings` (a tree or one Sharding).

    Without `shardings` each leaf keeps its own sharding; give the shardings of another mesh to
    restore a checkpoint onto it.
    """
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_sharding_of(x)), tree)
    if isinstance(shardings, Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def to_jsonable(x: Any) -> Any:
    """Plain JSON values from host state: numpy/JAX scalars and arrays, tuples, non-str dict keys."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (jax.Array, np.ndarray)):
        return np.asarray(x).tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return x  # json writes NaN / Infinity and reads them back
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"host state must be JSON-like (dict, list, str, number, bool, None, arrays); got "
                    f"{type(x).__name__}")


def nbytes(tree) -> int:
    """Total bytes of the array leaves of a tree."""
    return int(sum(np.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
                   if hasattr(x, "shape") and not is_typed_key(x)))
