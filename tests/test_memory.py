"""zeroplay.memory: the shape-only prediction against XLA's compiled memory analysis of the real
train step, and the full-size configs fit the devices they are written for."""
import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from zeroplay import memory, runconfig
from zeroplay.models import Decoder, abstract_params
from zeroplay.rl.optim import make_optimizer
from zeroplay.rl.policy import init_policy_state
from zeroplay.rl.train_step import make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_DEVICE = dict(data=1, fsdp=1, tensor=1)


def _config_module(name):
    spec = importlib.util.spec_from_file_location(f"memcfg_{name}", os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


azr, pasodoble, co_rewarding_ii = (_config_module(n) for n in ("azr", "pasodoble", "co_rewarding_ii"))


def _tiny_cfg(shape, remat, micro, chunk):
    c = azr.get_config("tiny")
    p = c.policies.policy
    p.model.shape = dict(azr.TINY_SHAPE, **shape)
    p.model.remat = remat
    p.train.micro_batch = micro
    p.train.logprob_chunk = chunk
    c.mesh = dict(ONE_DEVICE)
    return runconfig.parse(c)


def _xla_bytes(cfg, rows, length):
    """What the compiled step needs on its device: arguments (state + batch) + temporaries + any
    output not aliased to a donated argument (the new state is written over the donated one)."""
    spec = cfg.policies["policy"]
    mcfg = memory.model_config(spec)
    step = make_train_step(Decoder(mcfg), spec.train)
    params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), abstract_params(mcfg))
    state = jax.eval_shape(lambda p: init_policy_state(p, make_optimizer(spec.train)), params)
    per_token = {"tokens": jnp.int32, "positions": jnp.int32, "attention_mask": jnp.int32, "loss_mask": jnp.float32}
    batch = {k: jax.ShapeDtypeStruct((rows, length), dt) for k, dt in per_token.items()}
    batch.update({k: jax.ShapeDtypeStruct((rows,), jnp.float32) for k in ("advantages", "row_mask")})
    m = step.lower(state, batch).compile().memory_analysis()
    return m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes


# (shape overrides, remat, micro_batch, logprob_chunk, rows, length): long rows where the
# attention scores dominate, and short rows of a wide model where params, Adam and gradients do.
CASES = [
    (dict(hidden_size=64, intermediate_size=128), "none", None, None, 8, 256),
    (dict(hidden_size=64, intermediate_size=128), "full", 2, 64, 8, 256),
    (dict(hidden_size=256, intermediate_size=1024, vocab_size=8192), "full", None, None, 8, 16),
    (dict(hidden_size=256, intermediate_size=1024, vocab_size=8192), "full", 4, 8, 8, 16),
]


@pytest.mark.parametrize("shape,remat,micro,chunk,rows,length", CASES)
def test_train_step_prediction_matches_xla(shape, remat, micro, chunk, rows, length):
    # Apples to apples: the prediction's params + optimizer state (held) + the train step's
    # transient terms (gradients, saved activations, one layer's backward, the LM head, the batch),
    # against XLA's argument + temp (+ unaliased output) bytes of the same jitted step, one CPU
    # device, float32. Tolerance 10% (the estimate keeps the dominant terms only).
    cfg = _tiny_cfg(shape, remat, micro, chunk)
    pm = memory.policy_memory(cfg, "policy", ONE_DEVICE, train_len=length, train_rows=rows)
    predicted = pm.held_total + sum(pm.train.values())
    actual = _xla_bytes(cfg, rows, length)
    assert abs(predicted - actual) <= 0.10 * actual, (predicted, actual, pm.held, pm.train)


def test_sharding_divides_by_the_mesh():
    cfg = runconfig.parse(azr.get_config("qwen2.5-7b-coder-tpu"))
    one = memory.predict(cfg, ONE_DEVICE).policies[0]
    fsdp8 = memory.predict(cfg, dict(data=1, fsdp=8, tensor=1)).policies[0]
    # every param has an embed axis (fsdp) of 3584 = 8 * 448, except the biases and norms
    assert 7.9 < one.held["params"] / fsdp8.held["params"] <= 8.0
    assert one.held["opt_state"] == pytest.approx(2 * one.held["params"], rel=1e-6)


@pytest.mark.parametrize("module,variant,device_gb", [
    (azr, "qwen2.5-7b-coder-tpu", 95),  # v5p-64: 32 chips of 95 GB HBM
    (pasodoble, "qwen3-1.7b-gpu1", 80),  # one 80 GB GPU, two policies
    (co_rewarding_ii, "qwen3-8b-base-gpu4", 80),  # 4 x 80 GB GPUs
])
def test_full_size_configs_fit(module, variant, device_gb):
    cfg = runconfig.parse(module.get_config(variant))
    rep = memory.predict(cfg)
    assert all(not p.notes for p in rep.policies), [p.notes for p in rep.policies]
    assert rep.peak <= device_gb * memory.GB, memory.format_report(rep, device_gb * memory.GB)


def test_factorizations_and_fitting_meshes():
    assert len(list(memory.factorizations(8))) == 10
    cfg = runconfig.parse(co_rewarding_ii.get_config("qwen3-8b-base-gpu4"))
    fits = [m for m, _, ok in memory.fitting_meshes(cfg, 4, 80 * memory.GB) if ok]
    assert dict(data=1, fsdp=4, tensor=1) in fits
    assert dict(data=4, fsdp=1, tensor=1) not in fits  # unsharded params, Adam and teacher: 131 GB


def test_command_line():
    out = subprocess.run([sys.executable, "-m", "zeroplay.memory", "--config",
                          "configs/co_rewarding_ii.py:qwen3-8b-base-gpu4", "--device_gb", "80",
                          "--config.loop.sample_batch=64"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "peak per device" in out.stdout and "fits in 80 GB" in out.stdout
    assert "data=1 fsdp=4 tensor=1" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "zeroplay.memory"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert bad.returncode != 0 and "give --config" in bad.stderr
