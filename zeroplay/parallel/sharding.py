"""Logical axis names -> mesh axes -> `NamedSharding`: the one place where sharding is decided.

Models annotate every parameter with logical names (`embed`, `heads`, `mlp`, ...). A config
holds the mesh shape (`{"data": 1, "fsdp": -1, "tensor": 1}`, -1 fills the remaining devices)
and the rules mapping logical names to mesh axes; these helpers turn both into shardings.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Logical name -> mesh axis (or tuple of axes, or None = replicated).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("cache_length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("layers", None),
)


def make_mesh(shape: Mapping[str, int] | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh with axes (data, fsdp, tensor); one size may be -1 to take the remaining devices."""
    devices = list(devices if devices is not None else jax.devices())
    shape = dict(shape or {"data": 1, "fsdp": -1, "tensor": 1})
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; use {MESH_AXES}")
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {shape}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh {shape} does not divide {len(devices)} devices")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, "
                         f"have {len(devices)}")
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def rules_from_config(rules) -> tuple[tuple[str, Any], ...]:
    """Rules from a config (list of pairs, or a mapping); None gives the defaults."""
    if rules is None:
        return DEFAULT_RULES
    items = rules.items() if hasattr(rules, "items") else rules
    return tuple((str(k), tuple(v) if isinstance(v, list) else v) for k, v in items)


def logical_to_sharding(logical_specs, mesh: Mesh, rules=None):
    """Map a pytree of logical PartitionSpecs to NamedShardings on `mesh`.

    A logical axis whose mesh axes do not divide the dimension is left to XLA by the caller's
    `fit_to_shape`; here the mapping is purely by name.
    """
    return nn.logical_to_mesh_sharding(logical_specs, mesh, rules_from_config(rules))


def fit_to_shape(sharding: NamedSharding, shape: Sequence[int]) -> NamedSharding:
    """Drop mesh axes from dimensions they do not divide (e.g. 3 KV heads over tensor=2)."""
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    out = []
    for dim, axes in zip(shape, spec):
        if axes is None:
            out.append(None)
            continue
        names = axes if isinstance(axes, tuple) else (axes,)
        size = int(np.prod([sharding.mesh.shape[a] for a in names]))
        out.append(axes if dim % size == 0 else None)
    return NamedSharding(sharding.mesh, PartitionSpec(*out))


def param_shardings(params_shapes, logical_specs, mesh: Mesh, rules=None):
    """NamedShardings for a param tree (shapes from arrays or ShapeDtypeStructs)."""
    named = logical_to_sharding(logical_specs, mesh, rules)
    return jax.tree.map(lambda s, x: fit_to_shape(s, x.shape), named, params_shapes,
                        is_leaf=lambda x: isinstance(x, NamedSharding))
