"""Multi-host self-play (`jax.distributed`, gloo on the CPU): `configs/azr.py:tiny` run as two
processes by `python -m zeroplay.launch_local` agrees with the same config run as one process.

Both runs take the same two overrides: `loop.sample_batch=2`, so that a sampler call has several
chunks and both processes sample some (process p samples chunks p, p + 2, ...), and
`train.entropy_coef=0.01`, so that the update moves the params although every reward of the
untrained random model is -1 (zero advantages); without it the final params would be the initial
ones and their agreement would say nothing.

Agreement (the sampled tokens are the same, so rewards, counts, lengths and game state are):
- every metrics row equal (timings aside), except the floats computed on the devices from the
  params: the train step's metrics (one device against two, the batch split over them) and the
  per-role entropy (mean -logprob, from params that differ in the last bits after the first
  update), within rtol 1e-5 + atol 1e-6 (measured: relative 2e-7);
- every leaf of the final policy state (params, Adam moments) within atol 2e-6 + rtol 1e-5
  (measured: max abs 2.2e-7):
  float32 sums in another order differ by ~1e-7 relative, and Adam's first steps (lr 1e-3,
  update ~lr * g / |g|) amplify that only for gradients near its epsilon;
- the game state and host RNG in the last checkpoint equal.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from zeroplay.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config", "configs/azr.py:tiny", "--config.steps=2", "--config.loop.sample_batch=2",
        "--config.policies.policy.train.entropy_coef=0.01"]
FLOAT_RTOL, FLOAT_ATOL = 1e-5, 1e-6  # train-step metrics (policy/...) and */entropy
PARAM_ATOL, PARAM_RTOL = 2e-6, 1e-5


def _gloo_unavailable() -> str | None:
    try:
        from jax._src import xla_bridge  # noqa: F401
        from jax._src.lib import _jax

        if not hasattr(_jax, "make_gloo_tcp_collectives"):
            return "this jaxlib has no gloo CPU collectives"
    except Exception as e:  # noqa: BLE001
        return f"cannot probe the CPU collectives: {e}"
    return None


def _run(cmd, workdir):
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")  # one device per process, as users run it
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(k, None)
    proc = subprocess.run(cmd + ARGS + ["--workdir", workdir], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1200)
    return proc.returncode, proc.stdout


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _params(workdir):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    trees, host = ckpt.restore(ckpt.latest_step(), names=["policy/policy"])
    ckpt.close()
    flat = jax.tree_util.tree_flatten_with_path(trees["policy/policy"])[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}, host


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    reason = _gloo_unavailable()
    if reason:
        pytest.skip(reason)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    rc, out = _run([sys.executable, "-m", "zeroplay.launch_local", "--num_processes", "2", "--"], two)
    assert rc == 0, out
    assert "[p0] steps 1..2" in out and "[p1]" in out  # the summary from process 0 only
    assert "[p1] steps" not in out
    rc, out1 = _run([sys.executable, "-m", "zeroplay.train"], one)
    assert rc == 0, out1

    rows1, rows2 = _rows(one), _rows(two)
    assert [r["step"] for r in rows2] == [1, 2] == [r["step"] for r in rows1]
    assert all(r["num_processes"] == 2 for r in rows2) and all("num_processes" not in r for r in rows1)
    for r1, r2 in zip(rows1, rows2):
        keys = {k for k in r1 if not k.startswith(("time/", "verify/"))}
        assert keys == {k for k in r2 if not k.startswith(("time/", "verify/"))} - {"num_processes"}
        exact = {k: r1[k] for k in keys if not (k.startswith("policy/") or k.endswith("/entropy"))}
        assert exact == {k: r2[k] for k in exact}, r1["step"]
        for k in keys - set(exact):
            np.testing.assert_allclose(r2[k], r1[k], rtol=FLOAT_RTOL, atol=FLOAT_ATOL, err_msg=k)
    assert rows1[0]["policy/grad_norm"] > 0  # the update moved the params (entropy term)

    (p1, host1), (p2, host2) = _params(one), _params(two)
    assert p1.keys() == p2.keys()
    for k in p1:
        np.testing.assert_allclose(p2[k], p1[k], atol=PARAM_ATOL, rtol=PARAM_RTOL, err_msg=k)
    assert host1["game"] == host2["game"] and host1["rng"] == host2["rng"]
