"""Orbax item handlers for array trees, with zstd compression on or off.

Orbax compresses every array with zstd by default. On a host with few cores that dominates the
save: 540 MB of float32 SmolLM2 params take ~4 s compressed against ~0.3 s uncompressed on the
2-core build machine, for 35% fewer bytes on disk (see docs/performance.md, "Checkpoints"). Both
formats restore through the same handler (the codec is recorded in each array's metadata).
"""
from __future__ import annotations

import dataclasses

import orbax.checkpoint as ocp


class UncompressedTreeHandler(ocp.PyTreeCheckpointHandler):
    """PyTree handler writing OCDBT without compression."""

    def __init__(self):
        super().__init__(use_compression=False)


class CompressedTreeHandler(ocp.PyTreeCheckpointHandler):
    """PyTree handler writing OCDBT with zstd compression (Orbax's default)."""

    def __init__(self):
        super().__init__(use_compression=True)


@ocp.args.register_with_handler(UncompressedTreeHandler, for_save=True)
@dataclasses.dataclass
class UncompressedTreeSave(ocp.args.PyTreeSave):
    pass


@ocp.args.register_with_handler(CompressedTreeHandler, for_save=True)
@dataclasses.dataclass
class CompressedTreeSave(ocp.args.PyTreeSave):
    pass


@ocp.args.register_with_handler(UncompressedTreeHandler, for_restore=True)
@dataclasses.dataclass
class TreeRestore(ocp.args.PyTreeRestore):
    """Restores either format."""


@ocp.args.register_with_handler(CompressedTreeHandler, for_restore=True)
@dataclasses.dataclass
class CompressedTreeRestore(ocp.args.PyTreeRestore):
    """Orbax wants a restore args type per handler; `TreeRestore` is the one used."""


def tree_save(tree, compress: bool) -> ocp.args.PyTreeSave:
    """Save args for one array tree."""
    return (CompressedTreeSave if compress else UncompressedTreeSave)(tree)


def tree_restore(abstract) -> ocp.args.PyTreeRestore:
    """Restore args placing every leaf as its ShapeDtypeStruct (shape, dtype, sharding) says."""
    return TreeRestore(abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))
