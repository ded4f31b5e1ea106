"""The jitted train step against a hand-written reference (model.apply + log_softmax + optax)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zeroplay.models import ModelConfig, init_params
from zeroplay.rl.losses import policy_loss
from zeroplay.rl.optim import PolicyConfig
from zeroplay.rl.train_step import create_state, make_train_step

CFG = ModelConfig(family="qwen2", vocab_size=96, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=4, num_kv_heads=2, attention_bias=True)


@pytest.fixture(scope="module")
def tiny():
    return init_params(CFG, jax.random.PRNGKey(0))


def make_batch(b=4, prompt=5, completion=6, seed=0, adv_per_token=False):
    """Left-padded prompts then right-padded completions, as the sampler lays them out."""
    rng = np.random.default_rng(seed)
    t = prompt + completion
    tokens = rng.integers(1, CFG.vocab_size, (b, t)).astype(np.int32)
    attn = np.ones((b, t), np.float32)
    loss_mask = np.zeros((b, t), np.float32)
    for i in range(b):
        pad_left = i % 3
        n_comp = completion - (i % 4)
        attn[i, :pad_left] = 0
        attn[i, prompt + n_comp:] = 0
        loss_mask[i, prompt:prompt + n_comp] = 1
        tokens[i, attn[i] == 0] = 0
    positions = np.maximum(np.cumsum(attn, 1) - 1, 0).astype(np.int32)
    old = np.where(loss_mask > 0, rng.normal(-4.6, 0.2, (b, t)), 0).astype(np.float32)
    adv = rng.normal(size=(b, t) if adv_per_token else (b,)).astype(np.float32)
    return dict(tokens=tokens, positions=positions, attention_mask=attn, loss_mask=loss_mask,
                old_logprobs=old, advantages=adv)


def ref_logprobs(model, params, batch):
    logits = model.apply({"params": params}, batch["tokens"], positions=batch["positions"],
                         attention_mask=batch["attention_mask"])
    logp = jax.nn.log_softmax(logits, axis=-1)
    lp = jnp.take_along_axis(logp[:, :-1], batch["tokens"][:, 1:, None], -1)[..., 0]
    return jnp.pad(lp, ((0, 0), (1, 0)))


def to_jnp(batch):
    return {k: jnp.asarray(v) for k, v in batch.items()}


# Adam's step lr*g/(|g|+eps) has slope lr/eps near g = 0: with eps 1e-8, the ~1e-10 reduction-order
# noise of a gradient that cancels to ~eps moves a param by ~1e-6, a property of Adam, not of the
# step. Tests comparing params after an update use eps 1e-4 (slope 10) so the comparison is tight.
EPS = 1e-4


def test_step_matches_reference_update(tiny):
    model, params = tiny
    pc = PolicyConfig(lr=1e-3, eps=EPS, grad_clip=0.5, weight_decay=0.01, clip_high=0.28, kl_coef=0.05,
                      aggregation="seq_mean_token_mean")
    batch = make_batch()
    ref_params = jax.tree.map(lambda x: x + 0.01, params)

    def ref_loss(p):
        lp = ref_logprobs(model, p, batch)
        rlp = ref_logprobs(model, ref_params, batch)
        return policy_loss(lp, batch["old_logprobs"], batch["advantages"], batch["loss_mask"],
                           ref_logprobs=rlp, clip_high=0.28, kl_coef=0.05,
                           aggregation="seq_mean_token_mean")[0]

    loss_want, grads = jax.jit(jax.value_and_grad(ref_loss))(params)
    opt = optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(1e-3, eps=EPS, weight_decay=0.01))
    updates, _ = opt.update(grads, opt.init(params), params)
    params_want = optax.apply_updates(params, updates)

    state, metrics = make_train_step(model, pc)(create_state(params, pc), to_jnp(batch), ref_params)
    np.testing.assert_allclose(float(metrics["loss"]), float(loss_want), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(metrics["grad_norm"]), float(optax.global_norm(grads)), rtol=1e-5)
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(params_want)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert int(state.step) == 1 and int(state.skipped) == 0
    assert float(metrics["kl"]) > 0


@pytest.mark.parametrize("aggregation,adv_per_token", [("token_mean", False), ("seq_mean_token_mean", True)])
def test_micro_batches_accumulate_to_the_full_batch(tiny, aggregation, adv_per_token):
    model, params = tiny
    batch = to_jnp(make_batch(b=6, seed=1, adv_per_token=adv_per_token))
    out = {}
    for mb in (None, 2):
        pc = PolicyConfig(lr=1e-3, eps=EPS, aggregation=aggregation, micro_batch=mb, logprob_chunk=4)
        out[mb] = make_train_step(model, pc)(create_state(params, pc), batch)
    (s1, m1), (s2, m2) = out[None], out[2]
    for k in ("loss", "grad_norm", "clip_frac", "ratio_mean", "ratio_max", "tokens"):
        np.testing.assert_allclose(float(m2[k]), float(m1[k]), rtol=1e-5, atol=1e-7, err_msg=k)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)


def test_non_finite_skips_the_update(tiny):
    model, params = tiny
    pc = PolicyConfig(lr=1e-3, micro_batch=2)
    step = make_train_step(model, pc)
    state = create_state(params, pc)
    before = jax.tree.map(np.asarray, (state.params, state.opt_state))
    bad = make_batch(seed=2)
    bad["advantages"][1] = np.nan
    state, m = step(state, to_jnp(bad))
    assert int(state.skipped) == 1 and int(state.step) == 0 and float(m["finite"]) == 0.0
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves((state.params, state.opt_state))):
        np.testing.assert_array_equal(np.asarray(b), a)
    inf = make_batch(seed=3)
    inf["old_logprobs"][0, 7] = -np.inf  # ratio overflows to inf on a trained token
    state, m = step(state, to_jnp(inf))
    assert int(state.skipped) == 2 and int(state.step) == 0
    state, m = step(state, to_jnp(make_batch(seed=4)))
    assert int(state.skipped) == 2 and int(state.step) == 1 and float(m["finite"]) == 1.0
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))


def test_shape_errors_at_trace_time(tiny):
    model, params = tiny
    pc = PolicyConfig()
    step = make_train_step(model, pc)
    batch = to_jnp(make_batch())
    with pytest.raises(ValueError, match="advantages"):
        step(create_state(params, pc), {**batch, "advantages": jnp.zeros((5,))})
    with pytest.raises(ValueError, match="old_logprobs"):
        step(create_state(params, pc), {**batch, "old_logprobs": jnp.zeros((4, 3))})
    with pytest.raises(ValueError, match="loss_mask"):
        step(create_state(params, pc), {k: v for k, v in batch.items() if k != "loss_mask"})
    with pytest.raises(ValueError, match="micro-batches"):
        make_train_step(model, pc.replace(micro_batch=3))(create_state(params, pc), batch)
    with pytest.raises(ValueError, match="ref_params"):
        make_train_step(model, pc.replace(kl_coef=0.1))(create_state(params, pc), batch)


def count_dots(model, pc, params, batch, ref=None):
    step = make_train_step(model, pc, donate=False)
    args = (create_state(params, pc), batch) + ((ref,) if ref is not None else ())
    return str(jax.make_jaxpr(step)(*args)).count("dot_general")


def test_reference_forward_only_when_kl_is_on(tiny):
    model, params = tiny
    batch = to_jnp(make_batch())
    off = count_dots(model, PolicyConfig(kl_coef=0.0), params, batch, ref=params)
    on = count_dots(model, PolicyConfig(kl_coef=0.1), params, batch, ref=params)
    assert on > off
    # With the KL off, the reference is never read: NaN reference params change nothing.
    nan_ref = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
    pc = PolicyConfig(kl_coef=0.0)
    _, m = make_train_step(model, pc)(create_state(params, pc), batch, nan_ref)
    assert float(m["finite"]) == 1.0
    # Precomputed reference logprobs replace the reference forward.
    pc = PolicyConfig(kl_coef=0.1, kl_estimator="k2")
    ref_params = jax.tree.map(lambda x: x * 1.01, params)
    rlp = ref_logprobs(model, ref_params, batch)
    _, m1 = make_train_step(model, pc)(create_state(params, pc), batch, ref_params)
    _, m2 = make_train_step(model, pc)(create_state(params, pc), {**batch, "ref_logprobs": rlp})
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-5)


def test_bf16_compute_keeps_fp32_master_weights(tiny):
    model, params = tiny
    batch = to_jnp(make_batch())
    f32 = PolicyConfig(lr=1e-3)
    bf16 = f32.replace(compute_dtype="bfloat16", logprob_chunk=4)
    s32, m32 = make_train_step(model, f32)(create_state(params, f32), batch)
    s16, m16 = make_train_step(model, bf16)(create_state(params, bf16), batch)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((s16.params, s16.opt_state))
               if jnp.issubdtype(x.dtype, jnp.floating))
    np.testing.assert_allclose(float(m16["loss"]), float(m32["loss"]), rtol=5e-2, atol=5e-3)
    np.testing.assert_allclose(float(m16["grad_norm"]), float(m32["grad_norm"]), rtol=5e-2)


def test_on_policy_without_old_logprobs(tiny):
    """No old_logprobs: ratio 1, gradient of -A logprob (the REINFORCE / first GRPO step)."""
    model, params = tiny
    batch = make_batch()
    batch.pop("old_logprobs")
    pc = PolicyConfig()
    _, m = make_train_step(model, pc)(create_state(params, pc), to_jnp(batch))
    assert float(m["ratio_mean"]) == 1.0 and float(m["clip_frac"]) == 0.0


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_padding_rows_with_row_mask_change_nothing(tiny, aggregation):
    """Rows that only pad a batch to a static size (row_mask 0, empty loss mask) leave the loss
    and the update exactly as without them: per-sequence normalisers count real rows only."""
    model, params = tiny
    real = make_batch(b=3, seed=2)
    padded = {k: np.concatenate([v, np.zeros((2,) + v.shape[1:], v.dtype)]) for k, v in real.items()}
    padded["row_mask"] = np.array([1, 1, 1, 0, 0], np.float32)
    pc = PolicyConfig(lr=1e-3, eps=EPS, aggregation=aggregation, max_tokens=11)
    s1, m1 = make_train_step(model, pc)(create_state(params, pc), to_jnp(real))
    s2, m2 = make_train_step(model, pc)(create_state(params, pc), to_jnp(padded))
    np.testing.assert_allclose(float(m2["loss"]), float(m1["loss"]), rtol=1e-5, atol=1e-7)  # as micro-batching
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
