"""Sharding: meshes from the config, logical-axis rules, NamedShardings for every tree."""
from zeroplay.parallel.sharding import (DEFAULT_RULES, MESH_AXES, fit_to_shape, logical_to_sharding,
                                        make_mesh, param_shardings, rules_from_config)
from zeroplay.parallel.placement import (batch_divisor, batch_shardings, batch_spec, load_sharded, mesh_from_config,
                                         model_param_shardings, opt_state_shardings, param_sharding_fn, replicated,
                                         shard_batch, state_shardings)

__all__ = ["DEFAULT_RULES", "MESH_AXES", "fit_to_shape", "logical_to_sharding", "make_mesh", "param_shardings",
           "rules_from_config", "batch_divisor", "batch_shardings", "batch_spec", "load_sharded", "mesh_from_config",
           "model_param_shardings", "opt_state_shardings", "param_sharding_fn", "replicated", "shard_batch",
           "state_shardings"]
