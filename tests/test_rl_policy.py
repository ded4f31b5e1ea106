"""Policies (roles -> policies), references, EMA teacher, optimizer config and schedules."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from zeroplay.rl.optim import PolicyConfig, make_optimizer, make_schedule
from zeroplay.rl.policy import (Policies, concat_batches, ema_rate, ema_update, init_policies)


def test_ema_rate_schedule():
    k_total, a0, a1 = 100, 0.2, 0.01
    for k in (0, 1, 37, 50, 99, 100, 150):
        want = a1 + 0.5 * (a0 - a1) * (1 + math.cos(math.pi * min(k, k_total) / k_total))
        np.testing.assert_allclose(float(ema_rate(k, k_total, a0, a1)), want, rtol=1e-6)
    assert float(ema_rate(0, k_total, a0, a1)) == pytest.approx(a0)
    assert float(ema_rate(k_total, k_total, a0, a1)) == pytest.approx(a1)


def test_ema_update():
    rng = np.random.default_rng(0)
    teacher = {"w": rng.normal(size=(3, 4)).astype(np.float32), "b": {"x": np.ones(2, np.float32)}}
    student = jax.tree.map(lambda x: x + 1.0, teacher)
    out = ema_update(teacher, student, 0.25)
    for t, s, o in zip(jax.tree.leaves(teacher), jax.tree.leaves(student), jax.tree.leaves(out)):
        np.testing.assert_allclose(np.asarray(o), 0.75 * t + 0.25 * s, rtol=1e-6)
    bf = ema_update(jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), teacher), student, 0.5)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(bf))


def test_shared_and_separate_policies_with_reference_only_when_needed():
    cfg = ml_collections.ConfigDict({
        "roles": {"proposer": "coach", "solver": "player"},
        "policies": {"coach": {"lr": 1e-6, "kl_coef": 0.0},
                     "player": {"lr": 3e-6, "kl_coef": 0.04, "kl_estimator": "k1"}}})
    pol = Policies.from_config(cfg)
    assert pol.names == ("coach", "player")
    assert pol.config("solver").lr == 3e-6 and pol.config("proposer").lr == 1e-6
    params = {"coach": {"w": jnp.ones(3)}, "player": {"w": jnp.zeros(3)}}
    states, refs = init_policies(pol, params)
    assert set(states) == {"coach", "player"} and set(refs) == {"player"}

    azr = Policies.shared(["proposer", "solver"], PolicyConfig(lr=1e-6))
    assert azr.names == ("policy",) and azr.roles_of("policy") == ("proposer", "solver")
    states, refs = init_policies(azr, {"policy": {"w": jnp.ones(3)}})
    assert list(states) == ["policy"] and refs == {}
    with pytest.raises(ValueError, match="no config"):
        Policies(roles={"solver": "missing"}, configs={})
    with pytest.raises(KeyError, match="unknown role"):
        azr.policy_of("judge")


def test_concat_batches_for_shared_policy():
    a = {"tokens": jnp.zeros((2, 5), jnp.int32), "advantages": jnp.ones(2)}
    b = {"tokens": jnp.ones((3, 5), jnp.int32), "advantages": jnp.zeros(3)}
    out = concat_batches([a, b])
    assert out["tokens"].shape == (5, 5) and out["advantages"].shape == (5,)
    with pytest.raises(ValueError, match="different keys"):
        concat_batches([a, {"tokens": b["tokens"]}])


def test_config_keys_are_checked():
    assert PolicyConfig.from_config({"lr": 2e-6}, kl_coef=0.1).kl_coef == 0.1
    with pytest.raises(ValueError, match="unknown policy config keys"):
        PolicyConfig.from_config({"learning_rate": 1e-6})


def test_schedules():
    const = make_schedule(PolicyConfig(lr=1.0))
    assert float(const(0)) == 1.0 and float(const(500)) == 1.0
    warm = make_schedule(PolicyConfig(lr=1.0, schedule="warmup_constant", warmup_steps=10))
    np.testing.assert_allclose([float(warm(k)) for k in (0, 5, 10, 100)], [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    cos = make_schedule(PolicyConfig(lr=1.0, schedule="cosine", warmup_steps=10, total_steps=110,
                                     end_lr_ratio=0.1))
    for k in (20, 60, 110):
        want = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (k - 10) / 100))
        np.testing.assert_allclose(float(cos(k)), want, rtol=1e-5)
    np.testing.assert_allclose(float(cos(5)), 0.5, rtol=1e-6)
    lin = make_schedule(PolicyConfig(lr=1.0, schedule="linear", total_steps=100))
    np.testing.assert_allclose(float(lin(50)), 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="schedule"):
        make_schedule(PolicyConfig(schedule="step"))


def test_gradient_clipping_in_optimizer():
    """Clipping is visible in Adam's second moment: after a huge then a small gradient."""
    b2 = 0.5
    opt = make_optimizer(PolicyConfig(lr=1.0, grad_clip=1.0, b1=0.0, b2=b2, eps=0.0))
    p = {"w": jnp.zeros(2)}
    st = opt.init(p)
    g1, g2 = np.array([30.0, 40.0]), np.array([0.3, 0.4])
    _, st = opt.update({"w": jnp.asarray(g1)}, st, p)
    upd, _ = opt.update({"w": jnp.asarray(g2)}, st, p)
    g1c = g1 / np.linalg.norm(g1)  # clipped to norm 1; g2 (norm 0.5) passes unchanged
    v = (b2 * (1 - b2) * g1c ** 2 + (1 - b2) * g2 ** 2) / (1 - b2 ** 2)
    np.testing.assert_allclose(np.asarray(upd["w"]), -g2 / np.sqrt(v), rtol=1e-5)
