"""The train step on 8 simulated devices (fsdp=4, tensor=2) equals the 1-device step."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding

from zeroplay.models import ModelConfig, init_params
from zeroplay.parallel.placement import (batch_shardings, mesh_from_config, opt_state_shardings, shard_batch,
                                         state_shardings)
from zeroplay.rl.optim import PolicyConfig
from zeroplay.rl.train_step import create_state, make_train_step

CFG = ModelConfig(family="qwen2", vocab_size=128, hidden_size=64, intermediate_size=96, num_layers=2,
                  num_heads=4, num_kv_heads=2, attention_bias=True)


def make_batch(b=8, t=12, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((b, t), np.float32)
    mask[:, 6:] = 1
    mask[3, 9:] = 0
    return dict(tokens=rng.integers(0, CFG.vocab_size, (b, t)).astype(np.int32), loss_mask=mask,
                advantages=rng.normal(size=b).astype(np.float32),
                old_logprobs=(-4.8 + 0.1 * rng.normal(size=(b, t))).astype(np.float32))


def test_mesh_from_config():
    assert len(jax.devices()) == 8, "tests/conftest.py should simulate 8 CPU devices"
    cfg = ml_collections.ConfigDict({"mesh": {"data": 1, "fsdp": -1, "tensor": 2}})
    mesh = mesh_from_config(cfg)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 2}
    assert dict(mesh_from_config(None).shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    with pytest.raises(ValueError):
        mesh_from_config({"fsdp": 3, "tensor": 2})


@pytest.mark.parametrize("micro_batch", [4, pytest.param(None, marks=pytest.mark.slow)])
def test_sharded_step_equals_single_device(micro_batch):
    _, params = init_params(CFG, jax.random.PRNGKey(0))
    model = init_params(CFG, jax.random.PRNGKey(0))[0]
    # Adam's step lr*g/(|g|+eps) has slope lr/eps near g = 0: with eps 1e-8 it turns the ~1e-10
    # reduction-order noise of gradients that cancel to ~eps into ~1e-6 param differences, a
    # property of Adam, not of sharding. eps 1e-4 keeps the slope at 10 so params compare tightly.
    pc = PolicyConfig(lr=1e-3, eps=1e-4, kl_coef=0.05, micro_batch=micro_batch)
    ref_params = jax.tree.map(lambda x: x * 0.99, params)

    single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    on_one = lambda tree: jax.device_put(tree, single)
    step1 = make_train_step(model, pc)
    s1 = create_state(on_one(params), pc)
    mesh = mesh_from_config({"data": 1, "fsdp": 4, "tensor": 2})
    step8 = make_train_step(model, pc, mesh=mesh)
    s8 = create_state(params, pc, CFG, mesh)
    ref8 = jax.device_put(ref_params, step8.param_shardings)
    for i in range(2):
        s1, m1 = step1(s1, on_one({k: jnp.asarray(v) for k, v in make_batch(seed=i).items()}), on_one(ref_params))
        s8, m8 = step8(s8, shard_batch(make_batch(seed=i), mesh), ref8)
        for k in ("loss", "grad_norm", "ratio_mean"):
            np.testing.assert_allclose(float(m8[k]), float(m1[k]), rtol=1e-5, err_msg=k)
        # KL ~ d^2/2 with d = ref - logp of two ~-5 logprobs, each exact to ~5e-7 in float32.
        np.testing.assert_allclose(float(m8["kl"]), float(m1["kl"]), rtol=1e-5, atol=1e-9)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
    assert int(s8.step) == 2

    # Really sharded: params and Adam moments split over fsdp x tensor, counts replicated.
    gate = s8.params["layers"]["mlp"]["gate_proj"]["kernel"]  # [layers, embed, mlp]
    assert isinstance(gate.sharding, NamedSharding)
    assert tuple(gate.sharding.spec) == (None, "fsdp", "tensor")
    assert len({s.device for s in gate.addressable_shards}) == 8
    assert gate.addressable_shards[0].data.shape == (2, 64 // 4, 96 // 2)
    emb = s8.params["embed_tokens"]["embedding"]  # [vocab, embed]
    assert tuple(emb.sharding.spec) == ("tensor", "fsdp")
    mu = s8.opt_state[1][0].mu["layers"]["mlp"]["gate_proj"]["kernel"]
    assert mu.sharding == gate.sharding
    assert s8.opt_state[1][0].count.sharding.is_fully_replicated


def test_placement_helpers():
    mesh = mesh_from_config({"fsdp": 4, "tensor": 2})
    _, params = init_params(CFG, jax.random.PRNGKey(0))
    pc = PolicyConfig()
    state = create_state(params, pc, CFG, mesh)
    sh = state_shardings(state, CFG, mesh)
    for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(sh, is_leaf=lambda x: isinstance(x, NamedSharding))):
        assert x.sharding.is_equivalent_to(s, x.ndim)
    p_sh = sh.params
    o_sh = opt_state_shardings(state.opt_state, p_sh, mesh)
    assert jax.tree.structure(o_sh, is_leaf=lambda x: isinstance(x, NamedSharding)) == \
        jax.tree.structure(state.opt_state)
    b_sh = batch_shardings({"tokens": np.zeros((8, 3)), "odd": np.zeros((6, 2))}, mesh)
    assert tuple(b_sh["tokens"].spec)[0] == ("data", "fsdp")
    assert tuple(b_sh["odd"].spec)[0] is None  # 6 rows do not split 4 ways: replicated
