"""Chunked per-token logprobs / entropies against the full log_softmax of model.apply logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zeroplay.models import ModelConfig, init_params
from zeroplay.rl.logprobs import logprobs_from_hidden, token_logprobs

TOL = 1e-5


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def tiny(request):
    cfg = ModelConfig(family="llama", vocab_size=301, hidden_size=32, intermediate_size=64, num_layers=2,
                      num_heads=4, num_kv_heads=2, tie_word_embeddings=request.param)
    model, params = init_params(cfg, jax.random.PRNGKey(1))
    tokens = jax.random.randint(jax.random.PRNGKey(2), (3, 13), 0, cfg.vocab_size)
    return model, params, tokens


def reference(model, params, tokens, positions=None, attention_mask=None):
    logits = np.asarray(model.apply({"params": params}, tokens, positions=positions,
                                    attention_mask=attention_mask), np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    tok = np.asarray(tokens)
    lp = np.zeros(tok.shape)
    lp[:, 1:] = np.take_along_axis(logp[:, :-1], tok[:, 1:, None], -1)[..., 0]
    ent = np.zeros(tok.shape)
    ent[:, 1:] = -(np.exp(logp[:, :-1]) * logp[:, :-1]).sum(-1)
    return lp, ent


@pytest.mark.parametrize("chunk", [None, 4, 5])
def test_chunked_matches_full_log_softmax(tiny, chunk):
    model, params, tokens = tiny
    lp, ent = jax.jit(lambda p, t: token_logprobs(model, p, t, chunk_size=chunk, with_entropy=True))(
        params, tokens)
    want_lp, want_ent = reference(model, params, tokens)
    np.testing.assert_allclose(np.asarray(lp), want_lp, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(np.asarray(ent), want_ent, rtol=TOL, atol=TOL)


def test_left_padded_positions_and_mask(tiny):
    model, params, tokens = tiny
    mask = np.ones(tokens.shape, bool)
    mask[0, :3] = False
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0).astype(np.int32)
    lp, _ = token_logprobs(model, params, tokens, positions=pos, attention_mask=mask, chunk_size=4)
    want, _ = reference(model, params, tokens, pos, mask)
    np.testing.assert_allclose(np.asarray(lp)[mask], want[mask], rtol=TOL, atol=TOL)


def test_chunked_gradient_matches_full():
    """Recomputing chunk logits in the backward pass changes nothing in the gradient."""
    rng = np.random.default_rng(0)
    hidden = jnp.asarray(rng.normal(size=(2, 9, 16)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(16, 50)) * 0.3, jnp.float32)
    tokens = jnp.asarray(rng.integers(0, 50, (2, 9)), jnp.int32)

    def f(h, k, chunk):
        lp, ent = logprobs_from_hidden(h, k, tokens, chunk_size=chunk, with_entropy=True)
        return jnp.sum(lp * jnp.arange(9)) + jnp.sum(ent)

    full = jax.grad(f, argnums=(0, 1))(hidden, kernel, None)
    chunked = jax.grad(f, argnums=(0, 1))(hidden, kernel, 4)
    for a, b in zip(full, chunked):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=TOL, atol=TOL)


def test_chunked_never_materialises_full_logits():
    """In the compiled chunked gradient no buffer is as large as [B, T, V] float32."""
    b, t, h, v = 2, 256, 16, 4096
    hidden = jax.ShapeDtypeStruct((b, t, h), jnp.float32)
    kernel = jax.ShapeDtypeStruct((h, v), jnp.float32)
    tokens = jax.ShapeDtypeStruct((b, t), jnp.int32)

    def f(hd, k, tk, chunk):
        return jnp.sum(logprobs_from_hidden(hd, k, tk, chunk_size=chunk)[0])

    def temp_bytes(chunk):
        g = jax.jit(jax.grad(lambda hd, k, tk: f(hd, k, tk, chunk), argnums=(0, 1)))
        return g.lower(hidden, kernel, tokens).compile().memory_analysis().temp_size_in_bytes

    full_logits = b * t * v * 4
    assert temp_bytes(None) >= full_logits
    assert temp_bytes(16) < full_logits / 2
