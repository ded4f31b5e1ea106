"""Placing training trees on a mesh: params, optimizer states, policy states, batches.

    mesh = mesh_from_config(config)                     # config.mesh, e.g. {"fsdp": -1}
    sh = state_shardings(state, model_cfg, mesh, rules) # PolicyState of NamedShardings
    state = jax.device_put(state, sh)
    batch = shard_batch(batch, mesh, rules)

Optimizer states follow their params: any subtree of the optax state with the structure of the
param tree (Adam's mu and nu) gets the param shardings, every other leaf (counts) is replicated.
The same code runs on 1 CPU, simulated CPU devices, a GPU or a TPU slice. Parallel depends on
models (for a model's logical axes), never the other way round: a loader that should place its
tensors takes `param_sharding_fn(mesh, rules)`.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zeroplay.models.decoder import logical_axes
from zeroplay.parallel.sharding import fit_to_shape, make_mesh, param_shardings, rules_from_config


def mesh_from_config(config: Any = None, devices=None) -> Mesh:
    """The mesh from `config.mesh` (or a mapping of axis sizes); None gives all devices on fsdp."""
    shape = getattr(config, "mesh", config) if config is not None else None
    if hasattr(shape, "to_dict"):
        shape = shape.to_dict()
    return make_mesh(shape, devices)


def replicated(mesh: Mesh) -> NamedSharding:
    """The fully replicated sharding on `mesh` (RNG keys, counters, small trees)."""
    return NamedSharding(mesh, PartitionSpec())


def model_param_shardings(params_shapes, model_cfg, mesh: Mesh, rules=None):
    """NamedShardings of a decoder param tree from its logical axes."""
    return param_shardings(params_shapes, logical_axes(model_cfg), mesh, rules)


def param_sharding_fn(mesh: Mesh, rules=None):
    """The `shardings` argument of `zeroplay.models.load_hf` / `load_pretrained` for `mesh`:
    (abstract params, logical axes) -> NamedShardings (`param_shardings` with these rules)."""
    def shardings(params_shapes, logical_specs):
        return param_shardings(params_shapes, logical_specs, mesh, rules)
    return shardings


def load_sharded(name_or_path: str, mesh: Mesh, rules=None, **kw):
    """`zeroplay.models.load_pretrained` with every parameter created directly with its
    NamedSharding on `mesh` (logical-axis `rules`)."""
    from zeroplay.models import load_pretrained

    return load_pretrained(name_or_path, shardings=param_sharding_fn(mesh, rules), **kw)


def opt_state_shardings(opt_state_shapes, params_shardings, mesh: Mesh):
    """Shardings of an optax state: param-shaped subtrees like the params, the rest replicated."""
    pdef = jax.tree.structure(params_shardings)

    def like_params(x) -> bool:
        try:
            return jax.tree.structure(x) == pdef
        except Exception:  # noqa: BLE001 - unusual nodes are simply not param trees
            return False

    def place(x):
        if like_params(x):
            return params_shardings
        return replicated(mesh)

    return jax.tree.map(place, opt_state_shapes, is_leaf=like_params)


def state_shardings(state, model_cfg, mesh: Mesh, rules=None):
    """A PolicyState (or shapes of one) -> the same structure of NamedShardings."""
    p_sh = model_param_shardings(state.params, model_cfg, mesh, rules)
    return state.replace(params=p_sh, opt_state=opt_state_shardings(state.opt_state, p_sh, mesh),
                         step=replicated(mesh), skipped=replicated(mesh))


def batch_spec(ndim: int, rules=None) -> PartitionSpec:
    """Leading dim on the mesh axes of the logical "batch" axis, the rest replicated."""
    axes = dict(rules_from_config(rules)).get("batch")
    return PartitionSpec(axes, *([None] * (ndim - 1)))


def batch_shardings(batch: Mapping[str, Any], mesh: Mesh, rules=None):
    """NamedShardings for a dict of [B, ...] arrays (leading dims that do not divide: replicated)."""
    return {k: fit_to_shape(NamedSharding(mesh, batch_spec(np.ndim(v), rules)), np.shape(v))
            for k, v in batch.items()}


def batch_divisor(mesh: Mesh, rules=None) -> int:
    """How many ways the batch dimension is split on `mesh`."""
    axes = dict(rules_from_config(rules)).get("batch")
    if axes is None:
        return 1
    names = axes if isinstance(axes, tuple) else (axes,)
    return int(np.prod([mesh.shape[a] for a in names]))


def shard_batch(batch: Mapping[str, Any], mesh: Mesh, rules=None):
    """Place a host batch on the mesh. Multi-process: each process passes its local rows."""
    sh = batch_shardings(batch, mesh, rules)
    if jax.process_count() > 1:
        return {k: jax.make_array_from_process_local_data(sh[k], np.asarray(v)) for k, v in batch.items()}
    return {k: jax.device_put(v, sh[k]) for k, v in batch.items()}
