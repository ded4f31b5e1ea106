"""The layer math (`zeroplay.models.layers`) against its formulas, and the two forms of one layer
(separate and fused projections, cache slots before or after the kv heads) against each other.
The whole forward pass against transformers is tests/test_models.py; the decode step against the
decoder, tests/test_sampler_step.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zeroplay.models import ModelConfig, init_params
from zeroplay.models.decoder import abstract_params
from zeroplay.models import layers

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32}
CONFIGS = {
    "llama": ModelConfig(family="llama", vocab_size=61, hidden_size=32, intermediate_size=48, num_layers=2,
                         num_heads=4, num_kv_heads=2, rope_scaling=LLAMA3_ROPE, tie_word_embeddings=True),
    "qwen2": ModelConfig(family="qwen2", vocab_size=61, hidden_size=32, intermediate_size=48, num_layers=2,
                         num_heads=4, num_kv_heads=4, attention_bias=True),
    "qwen3": ModelConfig(family="qwen3", vocab_size=61, hidden_size=32, intermediate_size=48, num_layers=2,
                         num_heads=4, num_kv_heads=2, head_dim=16, qk_norm=True),
}


def _rand(seed, *shape):
    return jnp.asarray(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def test_rms_norm_formula():
    x, scale = _rand(0, 3, 5, 16), _rand(1, 16)
    want = np.asarray(scale) * np.asarray(x) / np.sqrt(np.mean(np.asarray(x) ** 2, -1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(layers.rms_norm(x, scale, 1e-5, jnp.float32), want, rtol=1e-5, atol=1e-6)
    assert layers.rms_norm(x, scale, 1e-5, jnp.bfloat16).dtype == jnp.bfloat16


def test_rope_formula_and_inv_freq():
    cfg = ModelConfig(hidden_size=64, num_heads=4, rope_theta=500.0)  # D = 16
    inv = np.asarray(layers.rope_inv_freq(cfg))
    np.testing.assert_allclose(inv, 500.0 ** (-np.arange(0, 16, 2) / 16), rtol=1e-6)
    np.testing.assert_allclose(layers.rope_inv_freq(cfg.replace(rope_scaling={"rope_type": "linear", "factor": 4.0})),
                               inv / 4, rtol=1e-6)
    x, pos = _rand(2, 2, 3, 4, 16), jnp.asarray([[0, 1, 7], [2, 30, 5]])
    out = np.asarray(layers.apply_rope(x, pos, jnp.asarray(inv)))
    a = np.asarray(pos, np.float64)[..., None, None] * inv  # [B, T, 1, D/2]
    x1, x2 = np.asarray(x)[..., :8], np.asarray(x)[..., 8:]
    want = np.concatenate([x1 * np.cos(a) - x2 * np.sin(a), x2 * np.cos(a) + x1 * np.sin(a)], -1)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out[0, 0], np.asarray(x)[0, 0], atol=1e-7)  # position 0: identity
    # The same call rotates one token per row ([B, heads, D] with positions [B]).
    np.testing.assert_allclose(layers.apply_rope(x[:, 1], pos[:, 1], jnp.asarray(inv)), out[:, 1], atol=1e-6)


def test_llama3_rope_scaling_bands():
    cfg = ModelConfig(hidden_size=128, num_heads=2, rope_theta=10000.0, rope_scaling=LLAMA3_ROPE)  # D = 64
    plain = np.asarray(layers.rope_inv_freq(cfg.replace(rope_scaling=None)))
    scaled = np.asarray(layers.rope_inv_freq(cfg))
    wave = 2 * np.pi / plain
    long, short = wave > 32 / 1.0, wave < 32 / 4.0
    np.testing.assert_allclose(scaled[long], plain[long] / 8, rtol=1e-6)
    np.testing.assert_allclose(scaled[short], plain[short], rtol=1e-6)
    mid = ~long & ~short
    s = (32 / wave[mid] - 1) / 3
    np.testing.assert_allclose(scaled[mid], (1 - s) * plain[mid] / 8 + s * plain[mid], rtol=1e-5)
    assert long.any() and short.any() and mid.any()


def _reference_attention(q, k, v, mask):
    """Plain multi-head attention with each kv head repeated for its G query heads, in numpy."""
    q, k, v, mask = (np.asarray(a, np.float64) for a in (q, k, v, mask))
    g = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)
    s = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    s = np.where(mask[:, None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", p, v)


@pytest.mark.parametrize("kv_heads", [1, 2, 6])
def test_attention_gqa_and_mask(kv_heads):
    b, t, s, nh, d = 2, 3, 7, 6, 8
    q, k, v = _rand(0, b, t, nh, d), _rand(1, b, s, kv_heads, d), _rand(2, b, s, kv_heads, d)
    mask = np.random.RandomState(3).rand(b, t, s) > 0.4
    mask[..., 0] = True
    want = _reference_attention(q, k, v, mask)
    out = layers.attention(q, k, v, jnp.asarray(mask), jnp.float32)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    heads_first = layers.attention(q, jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2), jnp.asarray(mask), jnp.float32,
                                   kv_heads_first=True)
    np.testing.assert_allclose(heads_first, out, rtol=1e-6, atol=1e-6)


def test_gated_mlp_formula_and_fused():
    x = _rand(0, 2, 3, 16)
    p = {"gate_proj": {"kernel": _rand(1, 16, 24)}, "up_proj": {"kernel": _rand(2, 16, 24)},
         "down_proj": {"kernel": _rand(3, 24, 16)}}
    g, u, dn = (np.asarray(p[n]["kernel"], np.float64) for n in ("gate_proj", "up_proj", "down_proj"))
    xg = np.asarray(x, np.float64) @ g
    want = (xg / (1 + np.exp(-xg)) * (np.asarray(x, np.float64) @ u)) @ dn
    np.testing.assert_allclose(layers.gated_mlp(p, x, jnp.float32), want, rtol=1e-4, atol=1e-4)
    fused = {"gate_up_proj": {"kernel": jnp.concatenate([p["gate_proj"]["kernel"], p["up_proj"]["kernel"]], -1)},
             "down_proj": p["down_proj"]}
    np.testing.assert_allclose(layers.gated_mlp(fused, x, jnp.float32), layers.gated_mlp(p, x, jnp.float32),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_layer_params_declare_the_decoder_tree(family):
    """`layer_params` is the per-layer tree of the decoder's params (shapes and logical axes), and
    `abstract_params` the shapes and dtypes of the whole tree, without initialising it."""
    from zeroplay.models import logical_axes

    scan = family == "qwen3"
    cfg = CONFIGS[family].replace(scan_layers=scan, param_dtype=jnp.bfloat16 if scan else jnp.float32)
    _, params = init_params(cfg, jax.random.PRNGKey(0))
    abstract = abstract_params(cfg)
    assert jax.tree.structure(abstract) == jax.tree.structure(params)
    for a, p in zip(jax.tree.leaves(abstract), jax.tree.leaves(params)):
        assert isinstance(a, jax.ShapeDtypeStruct) and a.shape == p.shape and a.dtype == p.dtype
    one, axes = (params["layers"], logical_axes(cfg)["layers"]) if scan else (params["layers_0"],
                                                                              logical_axes(cfg)["layers_0"])
    specs = layers.layer_params(cfg)
    is_spec = lambda x: isinstance(x, layers.ParamSpec)
    assert jax.tree.structure(specs, is_leaf=is_spec) == jax.tree.structure(one)
    for path, spec in jax.tree_util.tree_flatten_with_path(specs, is_leaf=is_spec)[0]:
        p, ax = one, axes
        for k in path:
            p, ax = p[k.key], ax[k.key]
        want = ((cfg.num_layers,) + spec.shape, ("layers",) + spec.axes) if scan else (spec.shape, spec.axes)
        assert (p.shape, tuple(ax)) == want, path
    assert ("bias" in one["self_attn"]["q_proj"]) == cfg.attention_bias
    assert ("q_norm" in one["self_attn"]) == cfg.qk_norm


def _layer_from_specs(cfg, seed=0):
    """Random params of one layer straight from `layer_params` (norm scales near 1)."""
    is_spec = lambda x: isinstance(x, layers.ParamSpec)
    specs, tree = jax.tree.flatten(layers.layer_params(cfg), is_leaf=is_spec)
    rs = np.random.RandomState(seed)
    values = [float(s.init == "ones") + 0.1 * rs.randn(*s.shape) for s in specs]
    return jax.tree.unflatten(tree, [jnp.asarray(v.astype(np.float32)) for v in values])


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_fused_heads_first_layer_equals_plain_layer(family):
    """One layer with fused projections and a heads-first cache (the decode step's form) computes
    what the plain form (the decoder's) does, cache writes included."""
    cfg = CONFIGS[family]
    p = _layer_from_specs(cfg)
    b, t, s, at = 2, 3, 9, 4
    x = _rand(0, b, t, cfg.hidden_size)
    pos = jnp.asarray([[4, 5, 6], [0, 1, 2]])
    kv_mask = jnp.asarray(np.random.RandomState(1).rand(b, s) > 0.3).at[:, at:at + t].set(True)
    mask = kv_mask[:, None, :] & (jnp.arange(s)[None, :] <= at + jnp.arange(t)[:, None])[None]
    shape = (b, s, cfg.num_kv_heads, cfg.dim_per_head)
    cache = (_rand(2, *shape), _rand(3, *shape))

    @jax.jit
    def both(p, x, cache):
        plain = layers.layer(cfg, p, x, pos, mask, cache, at)
        fused = layers.layer(cfg, layers.fuse_projections(p), x, pos, mask,
                             tuple(jnp.swapaxes(c, 1, 2) for c in cache), at, kv_heads_first=True)
        return plain, fused

    (y, (ck, cv)), (y2, (ck2, cv2)) = both(p, x, cache)
    np.testing.assert_allclose(y2, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jnp.swapaxes(ck2, 1, 2), ck, atol=1e-6)
    np.testing.assert_allclose(jnp.swapaxes(cv2, 1, 2), cv, atol=1e-6)
    np.testing.assert_array_equal(ck[:, :at], cache[0][:, :at])  # only slots at..at+T-1 written
    np.testing.assert_array_equal(ck[:, at + t:], cache[0][:, at + t:])
