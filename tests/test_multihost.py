"""Multi-host self-play (`jax.distributed`, gloo on the CPU): `configs/azr.py:tiny` run as two
processes by `python -m zeroplay.launch_local` agrees with the same config run as one process.

Both runs take the same two overrides: `loop.sample_batch=2`, so that a sampler call has several
chunks and both processes sample some (process p samples chunks p, p + 2, ...), and
`train.entropy_coef=0.01`, so that the update moves the params although every reward of the
untrained random model is -1 (zero advantages); without it the final params would be the initial
ones and their agreement would say nothing. Both also evaluate (greedy, 4 reasoning-gym items)
before the first step and after each: configs/azr.py has no `loop.eval_*` keys for
`--config.loop.eval_...` to set, so the runs take a config file that adds them to its tiny variant.

Agreement (the sampled tokens are the same, so rewards, counts, lengths and game state are):
- every metrics row equal (timings aside), except the floats computed on the devices from the
  params: the train step's metrics (one device against two, the batch split over them) and the
  per-role entropy (mean -logprob, from params that differ in the last bits after the first
  update), within rtol 1e-5 + atol 1e-6 (measured: relative 2e-7);
- every leaf of the final policy state (params, Adam moments) within atol 2e-6 + rtol 1e-5
  (measured: max abs 2.2e-7):
  float32 sums in another order differ by ~1e-7 relative, and Adam's first steps (lr 1e-3,
  update ~lr * g / |g|) amplify that only for gradients near its epsilon;
- the game state and host RNG in the last checkpoint equal;
- one evaluation report per evaluated step (process 0 writes it), the same in both runs but for
  the seconds it took.
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
ARGS = ["--config.steps=2", "--config.loop.sample_batch=2", "--config.policies.policy.train.entropy_coef=0.01"]
EVAL = "rg:basic_arithmetic"
CONFIG = f"""import importlib.util

_spec = importlib.util.spec_from_file_location("zeroplay_configs_azr", {os.path.join(ROOT, "configs", "azr.py")!r})
_azr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_azr)


def get_config(arg=None):
    c = _azr.get_config(arg)
    c.loop.update(dict(eval_benchmarks=({EVAL!r},), eval_every=1, eval_limit=4, eval_max_new_tokens=8))
    return c
"""
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


def _run(cmd, workdir, config):
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")  # one device per process, as users run it
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(k, None)
    proc = subprocess.run(cmd + ["--config", f"{config}:tiny"] + ARGS + ["--workdir", workdir], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200)
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


def _reports(workdir):
    """{step: the evaluation report without its timings} of every report file."""
    out = {}
    for name in os.listdir(os.path.join(workdir, "eval")):
        with open(os.path.join(workdir, "eval", name)) as f:
            rep = json.load(f)
        for b in rep["benchmarks"].values():
            b.pop("seconds")
        assert name == f"eval_{rep['step']}.json", name
        out[rep["step"]] = rep
    return out


def test_loop_evaluator_writes_from_process_0_only(tmp_path, monkeypatch):
    """Every process evaluates (the sampling is collective); process 0 alone writes the report."""
    import types

    from zeroplay.evaluation import loop_evaluator
    from zeroplay.games import Completion

    def sample(role, prompts, n, sampling):
        done = Completion(tokens=[1], logprobs=np.zeros(1, np.float32), text="0", finished=True)
        return [[done] * n for _ in prompts]

    ctx = types.SimpleNamespace(sample=sample, chat=None, encode=lambda s: list(s.encode()))
    ev = loop_evaluator([EVAL], limit=2, report_dir=str(tmp_path))
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert list(ev(3, ctx)) == [EVAL] and not os.listdir(tmp_path)
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    assert list(ev(3, ctx)) == [EVAL] and os.listdir(tmp_path) == ["eval_3.json"]


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    reason = _gloo_unavailable()
    if reason:
        pytest.skip(reason)
    one, two, config = str(tmp_path / "one"), str(tmp_path / "two"), tmp_path / "azr_eval.py"
    config.write_text(CONFIG)
    rc, out = _run([sys.executable, "-m", "zeroplay.launch_local", "--num_processes", "2", "--"], two, config)
    assert rc == 0, out
    assert "[p0] steps 1..2" in out and "[p1]" in out  # the summary from process 0 only
    assert "[p1] steps" not in out
    rc, out1 = _run([sys.executable, "-m", "zeroplay.train"], one, config)
    assert rc == 0, out1

    rows1, rows2 = _rows(one), _rows(two)
    assert [r["step"] for r in rows2] == [0, 1, 2] == [r["step"] for r in rows1]
    assert all(f"eval/{EVAL}" in r for r in rows1 + rows2)
    assert all(r["num_processes"] == 2 for r in rows2) and all("num_processes" not in r for r in rows1)
    for r1, r2 in zip(rows1, rows2):
        keys = {k for k in r1 if not k.startswith(("time/", "verify/"))}
        assert keys == {k for k in r2 if not k.startswith(("time/", "verify/"))} - {"num_processes"}
        exact = {k: r1[k] for k in keys if not (k.startswith("policy/") or k.endswith("/entropy"))}
        assert exact == {k: r2[k] for k in exact}, r1["step"]
        for k in keys - set(exact):
            np.testing.assert_allclose(r2[k], r1[k], rtol=FLOAT_RTOL, atol=FLOAT_ATOL, err_msg=k)
    assert rows1[1]["policy/grad_norm"] > 0  # the update moved the params (entropy term)
    reports1, reports2 = _reports(one), _reports(two)
    assert sorted(reports2) == [0, 1, 2] and reports1 == reports2
    assert reports1[2]["benchmarks"][EVAL]["n"] == 4

    (p1, host1), (p2, host2) = _params(one), _params(two)
    assert p1.keys() == p2.keys()
    for k in p1:
        np.testing.assert_allclose(p2[k], p1[k], atol=PARAM_ATOL, rtol=PARAM_RTOL, err_msg=k)
    assert host1["game"] == host2["game"] and host1["rng"] == host2["rng"]
