"""Checkpoints: Orbax, asynchronous, keep-last-N, restore onto any mesh, exact resume.

    from zeroplay.checkpoint import Checkpointer, abstract_like

    ckpt = Checkpointer(workdir + "/checkpoints", keep=3, save_interval_steps=1, async_save=True)
    start = ckpt.latest_step() or 0
    if start:
        trees, host = ckpt.restore(targets={"policy/solver": abstract_like(state), "rng": rng})
        state, rng = trees["policy/solver"], trees["rng"]
    ...
    ckpt.save(step, {"policy/solver": state, "ema": ema, "rng": rng},
              {"buffer": buffer, "data_pos": pos, "config": cfg.to_dict()})
    ckpt.close()

- `save(step, trees, host_state, force=False) -> bool`: `trees` maps names ("policy/solver",
  "policy/proposer", "ema", "reference", "rng") to pytrees of arrays (flax.struct dataclasses,
  optax states and typed PRNG keys included); `host_state` is a JSON-like dict.
- `restore(step=None, *, targets=None, names=None) -> (trees, host_state)`: targets are pytrees
  of arrays or `jax.ShapeDtypeStruct`s whose `.sharding` may lie on a different mesh than the
  one saved from (`abstract_like(tree, shardings)` builds them).
- `latest_step()`, `all_steps()`, `tree_names(step)`, `wait()`, `close()`.
- `trim_jsonl(path, last_step)`: drop metrics lines written after the restored step.

A step killed mid-save is never visible: Orbax finalises a step by renaming its temporary
directory, and the next `Checkpointer` on the directory deletes leftovers.
"""
from zeroplay.checkpoint.manager import CheckpointNotFoundError, Checkpointer
from zeroplay.checkpoint.resume import trim_jsonl
from zeroplay.checkpoint.trees import abstract_like
from zeroplay.parallel.placement import replicated

__all__ = ["Checkpointer", "CheckpointNotFoundError", "abstract_like", "replicated", "trim_jsonl"]
