"""zeroplay.checkpoint: round trips, keep-last-N, restore onto another mesh, exact resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from zeroplay.checkpoint import CheckpointNotFoundError, Checkpointer, abstract_like, replicated, trim_jsonl
from zeroplay.checkpoint.trees import path_str
from zeroplay.models import Decoder, ModelConfig, logical_axes
from zeroplay.parallel.sharding import make_mesh, param_shardings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESUME_RUN = os.path.join(ROOT, "tests", "resume_run.py")
TINY = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)


@struct.dataclass
class State:  # shaped like zeroplay.rl's PolicyState
    params: dict
    opt_state: optax.OptState
    step: jax.Array


def tiny_state(seed: int = 0) -> State:
    model = Decoder(TINY)
    params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(seed), jnp.zeros((1, 4), jnp.int32)))["params"]
    opt_state = optax.adamw(1e-3).init(params)
    # a non-trivial optimizer state: moments that are not all zero
    opt_state = jax.tree.map(lambda x: x + 0.5 if jnp.issubdtype(x.dtype, jnp.floating) else x + 7, opt_state)
    return State(params, opt_state, jnp.int32(11))


def assert_trees_equal(a, b):
    ta, tb = jax.tree.structure(a), jax.tree.structure(b)
    assert ta == tb, (ta, tb)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert y.dtype == x.dtype
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bit-exact


def test_round_trip_trees_keys_host_state(tmp_path):
    state, ema = tiny_state(0), tiny_state(1).params
    rng = jax.random.split(jax.random.key(3), 2)  # typed keys, batch of 2
    host = {"buffer": [[1, 2], [3]], "pos": np.int64(5), "ratio": np.float32(0.25), "cfg": {"lr": 1e-3},
            "pair": (1, "a"), "nan": float("nan")}
    with Checkpointer(tmp_path / "ck", async_save=True) as ckpt:
        assert ckpt.latest_step() is None
        assert ckpt.save(7, {"policy/solver": state, "ema": ema, "rng": rng}, host)
        ckpt.wait()
        assert ckpt.latest_step() == 7 and ckpt.tree_names() == ["ema", "policy/solver", "rng"]
        trees, got_host = ckpt.restore(targets={"policy/solver": abstract_like(state), "ema": ema, "rng": rng})
    assert isinstance(trees["policy/solver"], State)
    assert_trees_equal(trees["policy/solver"], state)
    assert_trees_equal(trees["ema"], ema)
    assert_trees_equal(trees["rng"], rng)
    assert got_host["buffer"] == [[1, 2], [3]] and got_host["pos"] == 5 and got_host["ratio"] == 0.25
    assert got_host["cfg"] == {"lr": 1e-3} and got_host["pair"] == [1, "a"] and np.isnan(got_host["nan"])
    # A fresh manager, no targets: saved structure as dicts/lists, keys still typed.
    ckpt = Checkpointer(tmp_path / "ck")
    trees, _ = ckpt.restore(names=["rng", "ema"])
    assert sorted(trees) == ["ema", "rng"]
    assert_trees_equal(trees["rng"], rng)
    assert_trees_equal(trees["ema"], ema)
    only, _ = ckpt.restore(7, names=["policy/solver"])
    np.testing.assert_array_equal(only["policy/solver"]["opt_state"][0]["mu"]["norm"]["scale"],
                                  state.opt_state[0].mu["norm"]["scale"])
    with pytest.raises(CheckpointNotFoundError):
        ckpt.restore(6)
    with pytest.raises(KeyError, match="no trees"):
        ckpt.restore(names=["policy/proposer"])
    ckpt.close()


def test_keep_last_n_interval_and_force(tmp_path):
    x = {"w": jnp.arange(4.0)}
    with Checkpointer(tmp_path / "ck", keep=2, save_interval_steps=2) as ckpt:
        saved = [s for s in range(1, 7) if ckpt.save(s, {"x": jax.tree.map(lambda a: a + s, x)}, {"s": s})]
        assert saved == [1, 2, 4, 6]  # multiples of the interval, and the first save of a directory
        assert ckpt.save(7, {"x": x}, {"s": 7}, force=True)
        assert not ckpt.save(7, {"x": x}, {"s": 7}, force=True)  # a step is written once
        ckpt.wait()
        assert ckpt.all_steps() == [6, 7]
        trees, host = ckpt.restore(6, targets={"x": x})
        np.testing.assert_array_equal(trees["x"]["w"], np.arange(4.0) + 6)
        assert host == {"s": 6}
    assert sorted(os.listdir(tmp_path / "ck")) == ["6", "7"]


def test_bad_tree_names(tmp_path):
    with Checkpointer(tmp_path / "ck") as ckpt:
        for bad in ["host", "zeroplay_meta", "a.b", "/a", ""]:
            with pytest.raises(ValueError):
                ckpt.save(1, {bad: {"w": jnp.ones(2)}}, force=True)
        with pytest.raises(TypeError, match="JSON-like"):
            ckpt.save(1, {"x": {"w": jnp.ones(2)}}, {"obj": object()}, force=True)


def sharded_state(mesh):
    """The tiny state with params (and Adam moments) sharded by their logical axes on `mesh`."""
    state = tiny_state(0)
    return jax.device_put(state, state_shardings(state, mesh))


def state_shardings(state: State, mesh):
    """The same layout rule as `sharded_state`, as a tree of shardings for `state`."""
    shard = param_shardings(state.params, logical_axes(TINY), mesh)
    rep = replicated(mesh)
    adam = state.opt_state[0]
    adam_sh = adam._replace(count=rep, mu=shard, nu=shard)
    rest = jax.tree.map(lambda _: rep, state.opt_state[1:])
    return State(shard, (adam_sh,) + tuple(rest), rep)


RESTORE_ON_ONE_DEVICE = textwrap.dedent("""
    import sys, numpy as np, jax, jax.numpy as jnp
    assert jax.device_count() == 1, jax.devices()
    sys.path.insert(0, sys.argv[2])
    from test_checkpoint import tiny_state, state_shardings, abstract_like, path_str
    from zeroplay.checkpoint import Checkpointer
    from zeroplay.parallel.sharding import make_mesh
    mesh = make_mesh({"fsdp": 1}, jax.devices())
    like = jax.eval_shape(lambda: tiny_state(0))
    target = abstract_like(like, state_shardings(like, mesh))
    trees, host = Checkpointer(sys.argv[1]).restore(targets={"policy/solver": target, "rng": jax.random.key(0)})
    ref = np.load(sys.argv[1] + "/ref.npz")
    for path, x in jax.tree_util.tree_leaves_with_path(trees["policy/solver"]):
        np.testing.assert_array_equal(np.asarray(x), ref[path_str(path)])
        assert x.sharding.mesh.devices.size == 1, x.sharding
    np.testing.assert_array_equal(jax.random.key_data(trees["rng"]), ref["rng"])
    assert host == {"saved_on": 8}
    print("RESTORED_ON_ONE_DEVICE", len(jax.tree.leaves(trees["policy/solver"])))
""")


def test_restore_onto_other_meshes(tmp_path):
    assert jax.device_count() == 8
    mesh8 = make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
    state = sharded_state(mesh8)
    q = state.params["layers"]["self_attn"]["q_proj"]["kernel"]
    assert len(q.sharding.device_set) == 8 and q.addressable_shards[0].data.shape != q.shape  # really sharded
    rng = jax.device_put(jax.random.key(5), replicated(mesh8))
    ck = tmp_path / "ck"
    with Checkpointer(ck) as ckpt:
        ckpt.save(1, {"policy/solver": state, "rng": rng}, {"saved_on": 8})
    np.savez(ck / "ref.npz", rng=np.asarray(jax.random.key_data(rng)),
             **{path_str(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state)})

    # Same process, other layouts: one device, and 8 devices the other way round (tensor=4, fsdp=2).
    for mesh in [make_mesh({"fsdp": 1}, jax.devices()[:1]), make_mesh({"data": 1, "fsdp": 2, "tensor": 4})]:
        shardings = state_shardings(state, mesh)
        trees, _ = Checkpointer(ck).restore(targets={"policy/solver": abstract_like(state, shardings),
                                                     "rng": abstract_like(rng, replicated(mesh))})
        assert_trees_equal(trees["policy/solver"], state)
        for x, s in zip(jax.tree.leaves(trees["policy/solver"]), jax.tree.leaves(shardings)):
            assert x.sharding == s, (x.sharding, s)
        assert trees["rng"].sharding == replicated(mesh)

    # A process that has only one device.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", RESTORE_ON_ONE_DEVICE, str(ck), os.path.join(ROOT, "tests")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RESTORED_ON_ONE_DEVICE" in out.stdout


def test_trim_jsonl(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps({"step": s, "loss": s / 3}) + "\n" for s in range(1, 5)) + '{"step": 5, "lo')
    assert trim_jsonl(p, 2) == 2
    assert [json.loads(line)["step"] for line in p.read_text().splitlines()] == [1, 2]
    assert trim_jsonl(p, None) == 0 and p.read_text() == ""
    assert trim_jsonl(tmp_path / "missing.jsonl", 3) == 0


# -- exact resume: subprocesses running tests/resume_run.py ----------------------------------

@pytest.fixture(scope="module")
def run_env(tmp_path_factory):
    """Subprocess env sharing one persistent compilation cache, so only the first run compiles."""
    cache = tmp_path_factory.mktemp("jax_cache")
    return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
                JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def run(env, workdir, steps, *flags):
    return subprocess.run([sys.executable, RESUME_RUN, "--workdir", str(workdir), "--steps", str(steps), *flags],
                          env=env, capture_output=True, text=True, timeout=300)


def metrics(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(run_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    out = run(run_env, workdir, 4)
    assert out.returncode == 0, out.stderr[-3000:]
    m = metrics(workdir)
    assert [r["step"] for r in m] == [1, 2, 3, 4]
    assert len({r["params_sha1"] for r in m}) == 4  # the state really changes every step
    assert len({json.dumps(r["buffer"]) for r in m}) == 4 and len({tuple(r["rng"]) for r in m}) == 4
    return m


@pytest.mark.parametrize("sync", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["async", "sync"])
def test_exact_resume_after_sigkill(run_env, uninterrupted, tmp_path, sync):
    flags = ["--sync"] if sync else []
    killed = run(run_env, tmp_path, 4, "--kill-after", "2", *flags)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [r["step"] for r in metrics(tmp_path)] == [1, 2]
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [1, 2]
    resumed = run(run_env, tmp_path, 4, *flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 2" in resumed.stderr
    # Same program, same inputs: steps 3 and 4 are bit-identical to the uninterrupted run.
    assert metrics(tmp_path) == uninterrupted


def test_sigkill_during_async_save_resumes_from_last_complete_step(run_env, uninterrupted, tmp_path):
    killed = run(run_env, tmp_path, 4, "--kill-during-save", "3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "pending at kill: ['3.orbax-checkpoint-tmp" in killed.stderr  # killed mid-write
    leftovers = sorted(os.listdir(tmp_path / "checkpoints"))
    assert leftovers[:2] == ["1", "2"] and leftovers[2].startswith("3.orbax-checkpoint-tmp"), leftovers
    assert [r["step"] for r in metrics(tmp_path)] == [1, 2, 3]  # step 3 logged, not committed
    resumed = run(run_env, tmp_path, 4)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 2" in resumed.stderr
    assert metrics(tmp_path) == uninterrupted
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "4"]  # keep=2, leftovers removed


def test_compressed_and_uncompressed_formats(tmp_path):
    zeros = {"w": jnp.zeros((256, 1024), jnp.float32)}  # 1 MiB that zstd shrinks to almost nothing
    sizes = {}
    for compress in [True, False]:
        d = tmp_path / f"ck_{compress}"
        with Checkpointer(d, compress=compress) as ckpt:
            ckpt.save(1, {"x": zeros})
        sizes[compress] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        trees, _ = Checkpointer(d, compress=not compress).restore(targets={"x": zeros})  # either reads both
        assert_trees_equal(trees["x"], zeros)
    assert sizes[True] < 0.1 * sizes[False] and sizes[False] > 2**20, sizes


def test_async_save_survives_donation_of_the_saved_arrays(tmp_path):
    """The train step donates its state right after `save` returns; the pending write must not see it."""
    x = {"w": jax.random.normal(jax.random.PRNGKey(0), (2048, 2048))}  # 16 MB: the write outlives the call
    ref = np.array(x["w"])
    target = abstract_like(x)
    overwrite = jax.jit(lambda t: jax.tree.map(lambda a: a * 0 + 1, t), donate_argnums=0)
    with Checkpointer(tmp_path / "ck", async_save=True) as ckpt:
        ckpt.save(1, {"s": x})
        y = jax.block_until_ready(overwrite(x))
        ckpt.wait()
        trees, _ = ckpt.restore(targets={"s": target})
    np.testing.assert_array_equal(np.asarray(trees["s"]["w"]), ref)
    assert float(y["w"][0, 0]) == 1.0
