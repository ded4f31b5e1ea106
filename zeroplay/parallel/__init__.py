"""Sharding: meshes from the config, logical-axis rules, NamedShardings for every tree."""
from zeroplay.parallel.sharding import (DEFAULT_RULES, MESH_AXES, fit_to_shape, logical_to_sharding,
                                        make_mesh, param_shardings, rules_from_config)
