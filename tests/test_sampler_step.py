"""The sampler's building blocks: the in-place decode step against `Decoder.apply`, and the token
choice (top-p mask against transformers' TopPLogitsWarper, inverse-CDF draws, first argmax)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from zeroplay.models import ModelConfig, init_cache, init_params
from zeroplay.sampling import cpu_decode
from zeroplay.sampling.decode_step import decode_step, head_kernel, split_cache, unstack_layers
from zeroplay.sampling.logits_processing import first_argmax, inverse_cdf, top_p_mask

STEP_REL_TOL = 1e-5  # max |step - apply| <= tol * max |apply logit|, float32

CONFIGS = {
    "llama": ModelConfig(family="llama", vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=2,
                         num_heads=4, num_kv_heads=2, tie_word_embeddings=True,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
    "qwen2": ModelConfig(family="qwen2", vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=3,
                         num_heads=4, num_kv_heads=4, attention_bias=True),
    "qwen3": ModelConfig(family="qwen3", vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=2,
                         num_heads=4, num_kv_heads=2, head_dim=32, qk_norm=True),
}


def _xla_step(cfg, kv_mask, slot):
    return lambda p, c, t, pos: decode_step(cfg, p, unstack_layers(p, cfg), head_kernel(p, cfg), split_cache(c), t,
                                            pos, slot, kv_mask)


def _cpu_step(cfg, kv_mask, slot):
    def step(p, c, t, pos):
        logits, (k, v) = cpu_decode.decode_step(cfg, cpu_decode.pack_weights(p, cfg), cpu_decode.stack_cache(c), t,
                                                pos, jnp.int32(slot), kv_mask)
        return logits, [(k[i], v[i]) for i in range(cfg.num_layers)]
    return step


@pytest.mark.parametrize("family", sorted(CONFIGS))
@pytest.mark.parametrize("scan", [True, False])
def test_decode_step_matches_decoder_apply(family, scan, decode_kernel):
    """Both decode steps (XLA ops, and the fused CPU kernel) against the decoder's own apply."""
    cfg = CONFIGS[family].replace(scan_layers=scan)
    if decode_kernel == "cpu":
        assert cpu_decode.use_cpu_kernel("cpu", cfg, None)  # the kernel is available: this config must take it
    model, params = init_params(cfg, jax.random.PRNGKey(1))
    # Non-trivial norms and biases.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    b, s, slot = 3, 24, 10
    rs = np.random.RandomState(0)
    cache = init_cache(cfg, b, s)
    cache = {n: jnp.asarray(rs.randn(*c.shape).astype(np.float32)) for n, c in cache.items()}
    kv_mask = jnp.asarray(rs.rand(b, s) > 0.3).at[:, slot].set(True)
    tokens = jnp.asarray(rs.randint(0, cfg.vocab_size, b), jnp.int32)
    positions = jnp.asarray([7, 3, 10], jnp.int32)
    ref, ref_cache = model.apply({"params": params}, tokens[:, None], positions=positions[:, None], cache=cache,
                                 cache_index=slot, kv_mask=kv_mask)
    make = _xla_step if decode_kernel == "xla" else _cpu_step
    logits, new_cache = jax.jit(make(cfg, kv_mask, slot))(params, cache, tokens, positions)
    ref = np.asarray(ref[:, 0])
    assert np.abs(np.asarray(logits) - ref).max() <= STEP_REL_TOL * np.abs(ref).max()
    for i, (k, v) in enumerate(split_cache(ref_cache)):
        np.testing.assert_allclose(new_cache[i][0], k, atol=1e-5)
        np.testing.assert_allclose(new_cache[i][1], v, atol=1e-5)



@pytest.mark.parametrize("family", sorted(CONFIGS))
@pytest.mark.parametrize("chunk_rows", [None, 24])
def test_cpu_prefill_matches_decoder_apply(family, chunk_rows, monkeypatch, cpu_kernel):
    """The kernel's prefill (T tokens per row in one call, or in chunks of slots) against the
    decoder's own prefill on ragged left-padded prompts: the last slot's logits, and the cache at
    every real token (padding slots are never read). 5 rows x 40 slots = 200 matmul rows, so the
    kernel's 96-row chunks and a remainder are both on the path."""
    cfg = CONFIGS[family]
    if chunk_rows is not None:
        monkeypatch.setattr(cpu_decode, "PREFILL_CHUNK_ROWS", chunk_rows)  # 5 rows: 4 slots per call
    model, params = init_params(cfg, jax.random.PRNGKey(1))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    lengths = [40, 1, 17, 33, 8]
    b, p, extra = len(lengths), 40, 6
    rs = np.random.RandomState(3)
    ids = np.zeros((b, p), np.int32)
    mask = np.zeros((b, p), bool)
    for i, n in enumerate(lengths):
        ids[i, p - n:] = rs.randint(0, cfg.vocab_size, n)
        mask[i, p - n:] = True
    positions = jnp.maximum(jnp.cumsum(jnp.asarray(mask, jnp.int32), axis=1) - 1, 0)
    hidden, ref_cache = model.apply({"params": params}, jnp.asarray(ids), positions=positions,
                                    cache=init_cache(cfg, b, p), cache_index=0, kv_mask=jnp.asarray(mask),
                                    return_hidden=True)
    ref = np.asarray(hidden[:, -1] @ head_kernel(params, cfg))
    logits, (k, v) = jax.jit(lambda prm: cpu_decode.prefill(cfg, cpu_decode.pack_weights(prm, cfg), jnp.asarray(ids),
                                                            positions, jnp.asarray(mask)))(params)
    assert k.shape == (cfg.num_layers, b, cfg.num_kv_heads, p, cfg.dim_per_head)
    assert np.abs(np.asarray(logits) - ref).max() <= STEP_REL_TOL * np.abs(ref).max()
    for got, name in ((k, "k"), (v, "v")):
        want = np.swapaxes(np.asarray(ref_cache[name]), 2, 3)  # [L, B, KVH, S, D]
        real = np.broadcast_to(mask[None, :, None, :, None], want.shape)
        np.testing.assert_allclose(np.asarray(got)[real], want[real], atol=1e-5)
    # Fan-out to 3 samples per prompt and `extra` empty decode slots, exactly.
    fk, fv = jax.jit(lambda c: cpu_decode.fan_out(c, 3, p + extra))((k, v))
    for got, src in ((fk, k), (fv, v)):
        want = np.pad(np.repeat(np.asarray(src), 3, axis=1), ((0, 0), (0, 0), (0, 0), (0, extra), (0, 0)))
        np.testing.assert_array_equal(np.asarray(got), want)


def hf_top_p_keep(logits: np.ndarray, top_p: float) -> np.ndarray:
    warper = transformers.TopPLogitsWarper(top_p=top_p)
    out = warper(None, torch.tensor(logits)).numpy()
    return np.isfinite(out)


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_top_p_mask_equals_transformers(top_p, scale):
    logits = np.random.RandomState(int(top_p * 100)).randn(6, 1000).astype(np.float32) * scale
    probs = jax.nn.softmax(jnp.asarray(logits), axis=-1)
    ours = np.asarray(top_p_mask(probs, jnp.float32(top_p)))
    np.testing.assert_array_equal(ours, hf_top_p_keep(logits, top_p))


@pytest.mark.parametrize("k", [50, 1000, 1001])
def test_inverse_cdf_frequencies(k):
    rs = np.random.RandomState(k)
    w = rs.rand(2, k).astype(np.float32) ** 3
    w[:, rs.rand(k) < 0.3] = 0.0  # zero weights must never be drawn
    n = 20000
    u = (np.arange(n) + 0.5) / n  # a regular grid: counts must match the weights within 1/n each
    idx = np.asarray(jax.jit(jax.vmap(lambda u: inverse_cdf(jnp.asarray(w), jnp.full((2,), u))))(jnp.asarray(u)))
    for r in range(2):
        counts = np.bincount(idx[:, r], minlength=k) / n
        p = w[r] / w[r].sum()
        assert np.abs(counts - p).max() <= 2.0 / n + 1e-6
        assert counts[w[r] == 0].sum() == 0


def test_first_argmax_ties_and_values():
    x = np.random.RandomState(0).randn(5, 3000).astype(np.float32)
    x[1, [7, 2000]] = 9.0  # a tie: the first index wins, as numpy and torch
    np.testing.assert_array_equal(np.asarray(first_argmax(jnp.asarray(x))), np.argmax(x, axis=-1))
