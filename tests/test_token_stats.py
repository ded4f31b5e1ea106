"""`generate(..., token_stats=True)`: per-token entropy and self-certainty from the logits the
sampler already computes, against NumPy on teacher-forced `model.apply` logits, on both decode
steps ("xla" and the fused CPU kernel, `decode_kernel` fixture); the default path is unchanged."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zeroplay.models import ModelConfig, init_params
from zeroplay.sampling import generate
from zeroplay.sampling.logits_processing import token_stats

TOL = 1e-4  # float32, nats: |sampler statistic - NumPy on teacher-forced logits|
SHAPE = dict(family="qwen2", vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4,
             num_kv_heads=2, tie_word_embeddings=False, attention_bias=True, max_position_embeddings=256)


@pytest.fixture(scope="module")
def tiny():
    model, params = init_params(ModelConfig(**SHAPE), jax.random.PRNGKey(3))
    # Sharper logits than the init's near-uniform ones, so entropies differ across tokens.
    params = jax.tree.map(lambda x: x * 3.0 if x.ndim == 2 else x, params)
    return model, params


def np_stats(logits):
    x = np.asarray(logits, np.float64)
    lp = x - x.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    p = np.exp(lp)
    entropy = -(p * lp).sum(-1)
    v = x.shape[-1]
    self_certainty = (-np.log(v) - lp).mean(-1)  # sum_v (1/V) log((1/V) / p_v)
    return entropy, self_certainty


def test_token_stats_function_on_hand_cases():
    logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, -4.0]])
    h, sc = token_stats(logits)
    ref_h, ref_sc = np_stats(logits)
    np.testing.assert_allclose(h[:1], [np.log(4)], atol=1e-6)  # uniform: H = log V, KL(U||U) = 0
    np.testing.assert_allclose(sc[:1], [0.0], atol=1e-6)
    np.testing.assert_allclose(h, ref_h, atol=1e-5)
    np.testing.assert_allclose(sc, ref_sc, atol=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_stats_match_teacher_forced_logits(tiny, decode_kernel, temperature):
    model, params = tiny
    prompts = [[5, 6, 7, 8, 9], [11, 12], [3]]
    kw = dict(max_new_tokens=12, num_samples=2, temperature=temperature, eos_token_ids=(2,),
              rng=jax.random.PRNGKey(7), decode_kernel=decode_kernel)
    out = generate(model, params, prompts, token_stats=True, **kw)
    plain = generate(model, params, prompts, **kw)
    assert plain.entropy is None and plain.self_certainty is None
    # The statistics change nothing else.
    np.testing.assert_array_equal(out.tokens, plain.tokens)
    np.testing.assert_array_equal(out.lengths, plain.lengths)
    np.testing.assert_array_equal(out.logprobs, plain.logprobs)
    assert out.entropy.shape == out.self_certainty.shape == out.tokens.shape
    assert out.entropy.dtype == out.self_certainty.dtype == np.float32
    for i, prompt in enumerate(prompts):
        for g in range(2):
            k = int(out.lengths[i, g])
            seq = np.asarray(prompt + list(out.tokens[i, g, :k]), np.int32)[None]
            logits = np.asarray(model.apply({"params": params}, jnp.asarray(seq)))[0]
            ref_h, ref_sc = np_stats(logits[len(prompt) - 1:len(prompt) - 1 + k])
            np.testing.assert_allclose(out.entropy[i, g, :k], ref_h, atol=TOL, rtol=0)
            np.testing.assert_allclose(out.self_certainty[i, g, :k], ref_sc, atol=TOL, rtol=0)
            assert not out.entropy[i, g, k:].any() and not out.self_certainty[i, g, k:].any()
    assert np.ptp(out.entropy[out.lengths[..., None] > np.arange(12)]) > 1e-3  # not all equal


def test_rent_and_intuitor_rewards_from_sampler_stats(tiny):
    """The RENT and Intuitor rewards of a sampled completion equal NumPy's on the same logits."""
    from zeroplay.games import intuitor, rent

    model, params = tiny
    out = generate(model, params, [[4, 5, 6]], max_new_tokens=8, num_samples=3, token_stats=True,
                   rng=jax.random.PRNGKey(1), decode_kernel="xla")
    for g in range(3):
        k = int(out.lengths[0, g])
        seq = jnp.asarray([[4, 5, 6] + list(out.tokens[0, g, :k])], jnp.int32)
        ref_h, ref_sc = np_stats(np.asarray(model.apply({"params": params}, seq))[0, 2:2 + k])
        np.testing.assert_allclose(rent.reward(out.entropy[0, g, :k]), -ref_h.mean(), atol=TOL)
        np.testing.assert_allclose(intuitor.reward(out.self_certainty[0, g, :k]), ref_sc.mean(), atol=TOL)
