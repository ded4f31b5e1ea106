"""The decoder's layer math, written once as pure functions over plain arrays.

    x, cache = layer(cfg, p, x, positions, mask, cache, cache_index)

Both forward passes call these: the Flax `Decoder` (`decoder.py`: training, scoring, prefill)
declares its parameters from `layer_params(cfg)` and runs `layer` on them, and the XLA decode
step (`zeroplay/sampling/decode_step.py`) runs the same `layer` on the same tree with q/k/v and
gate/up fused (`fuse_projections`). A new model family changes this file (and `hf.py`'s tables).

Shapes: B rows, T new tokens, S key slots (S = T without a cache), H hidden, NH query heads,
KVH key/value heads, G = NH / KVH queries per kv head, D head dim, F MLP width.

One layer (pre-norm, Llama / Qwen2 / Qwen3), every norm an `rms_norm`:
    h  = norm_1(x)
    q  = h Wq + bq,  k = h Wk + bk,  v = h Wv + bv          (biases: Qwen2; otherwise 0)
    q  = norm_q(q),  k = norm_k(k)                           (per head over D: Qwen3)
    q  = rope(q, p),  k = rope(k, p)                         (p: each token's position)
    x  = x + attention(q, k, v, mask) Wo
    x  = x + gated_mlp(norm_2(x))
Statistics (norm, rope angles, softmax) run in float32; matmuls in the compute dtype `cfg.dtype`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from zeroplay.models.config import ModelConfig

KVCache = tuple  # (k, v) of one layer: [B, S, KVH, D] each, or [B, KVH, S, D] with kv_heads_first


def rms_norm(x: jax.Array, scale: jax.Array, eps: float, dtype: Any) -> jax.Array:
    """RMSNorm over the last axis:

        y = scale * x / sqrt(mean(x^2) + eps)

    mean and rsqrt in float32; the normalised x and the scale are cast to `dtype` before the
    product (as transformers' LlamaRMSNorm).
    """
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return scale.astype(dtype) * x32.astype(dtype)


def rope_inv_freq(cfg: ModelConfig) -> jax.Array:
    """Rotary inverse frequencies [D / 2], with the checkpoint's rope scaling (as transformers):

        f_i = theta^(-2i / D)
        linear:  f_i / factor
        llama3:  with wavelength w_i = 2 pi / f_i, L = original_max_position_embeddings,
                 lo / hi = low_freq_factor / high_freq_factor:
                 w_i > L / lo        ->  f_i / factor                      (long waves: scaled)
                 w_i < L / hi        ->  f_i                               (short waves: kept)
                 otherwise           ->  (1 - s) f_i / factor + s f_i,  s = (L / w_i - lo) / (hi - lo)
    """
    d = cfg.dim_per_head
    inv = 1.0 / (cfg.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    rs = cfg.rope_scaling
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    factor = float(rs["factor"])
    if kind == "linear":
        return inv / factor
    # llama3
    low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
    old_len = float(rs["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    inv_l = jnp.where(wavelen > old_len / low, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return jnp.where(medium, smoothed, inv_l)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotary embedding, half-split (transformers' `rotate_half`), in float32:

        a = position * inv_freq                       [..., D / 2]
        rope(x) = [x1 cos a - x2 sin a,  x2 cos a + x1 sin a]      with x = [x1, x2] halves of D

    x: [..., heads, D]; positions: x.shape[:-2] (e.g. [B, T]). Returns x's dtype.
    """
    ang = positions.astype(jnp.float32)[..., None] * inv_freq  # [..., D/2]
    cos, sin = jnp.cos(ang)[..., None, :], jnp.sin(ang)[..., None, :]
    x32 = x.astype(jnp.float32)
    x1, x2 = jnp.split(x32, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def linear(x: jax.Array, p: dict, dtype: Any, axes: int = 1) -> jax.Array:
    """y = x W + b (as nn.Dense / nn.DenseGeneral), in `dtype`.

    Contracts the last `axes` axes of x with the first `axes` of p["kernel"]; adds p["bias"]
    where the tree has one (broadcast over x's leading axes).
    """
    w = p["kernel"].astype(dtype)
    x = x.astype(dtype)
    y = jax.lax.dot_general(x, w, ((tuple(range(x.ndim - axes, x.ndim)), tuple(range(axes))), ((), ())))
    if "bias" in p:
        y = y + p["bias"].astype(dtype)
    return y


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, dtype: Any, *,
              kv_heads_first: bool = False) -> jax.Array:
    """Masked grouped-query attention:

        out[t, j] = sum_s softmax_s(q[t, j] . k[s, j // G] / sqrt(D), masked) v[s, j // G]

    query head j reads kv head j // G (G = NH / KVH; G = 1 is multi-head attention); slots with
    mask False get float32 min before the softmax. Scores and softmax in float32, the probabilities
    cast to `dtype` for the product with v.

    q: [B, T, NH, D]; k, v: [B, S, KVH, D], or [B, KVH, S, D] with `kv_heads_first` (the decode
    step's cache layout: its dots then need no transpose of the cache); mask: [B, T, S] bool.
    Returns [B, T, NH, D].
    """
    b, t, nh, d = q.shape
    nkv = k.shape[1] if kv_heads_first else k.shape[2]
    kv = "bksd" if kv_heads_first else "bskd"
    qg = q.reshape(b, t, nkv, nh // nkv, d)
    scores = jnp.einsum(f"btkgd,{kv}->bkgts", qg, k, preferred_element_type=jnp.float32)
    scores = scores * (1.0 / math.sqrt(d))
    scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
    return jnp.einsum(f"bkgts,{kv}->btkgd", probs, v).reshape(b, t, nh, d)


def gated_mlp(p: dict, x: jax.Array, dtype: Any) -> jax.Array:
    """SwiGLU MLP:

        mlp(x) = (silu(x W_gate) * (x W_up)) W_down,     silu(z) = z sigmoid(z)

    p: {"gate_proj", "up_proj", "down_proj"} ({"kernel": [H, F]} / [F, H]), or with gate and up
    fused as "gate_up_proj" {"kernel": [H, 2F]} (`fuse_projections`).
    """
    if "gate_up_proj" in p:
        gate, up = jnp.split(linear(x, p["gate_up_proj"], dtype), 2, axis=-1)
    else:
        gate, up = linear(x, p["gate_proj"], dtype), linear(x, p["up_proj"], dtype)
    h = nn.with_logical_constraint(jax.nn.silu(gate) * up, ("batch", "length", "mlp"))
    return linear(h, p["down_proj"], dtype)


def _write_cache(c: jax.Array, new: jax.Array, index, axis: int) -> jax.Array:
    """new written into c along its slot `axis` from `index`: one index for every row, or [B] indices,
    one per row (the sampler's continuous batching, where rows are at different slots)."""
    if jnp.ndim(index) == 0:
        return jax.lax.dynamic_update_slice_in_dim(c, new, index, axis=axis)
    return jax.vmap(lambda ci, ni, i: jax.lax.dynamic_update_slice_in_dim(ci, ni, i, axis=axis - 1))(c, new, index)


def self_attention(cfg: ModelConfig, p: dict, x: jax.Array, positions: jax.Array, mask: jax.Array,
                   cache: KVCache | None = None, cache_index=0, *, kv_heads_first: bool = False):
    """The attention block on normalised x [B, T, H] -> (out [B, T, H], new cache or None).

    q, k, v projections (+ biases), q/k RMSNorm (cfg.qk_norm), rope at `positions` [B, T], then
    `attention` over the cache after writing this call's k, v at slots cache_index..+T-1 (without a
    cache: over this call's own k, v); cache_index is one slot for every row or [B], one per row.
    p: {"q_proj", "k_proj", "v_proj" (or fused "qkv_proj"), "o_proj", "q_norm", "k_norm"}, kernels
    [H, heads, D] and [NH, D, H].
    """
    dt, nh, nkv = cfg.dtype, cfg.num_heads, cfg.num_kv_heads
    if "qkv_proj" in p:
        qkv = linear(x, p["qkv_proj"], dt)  # [B, T, NH + 2 KVH, D]
        q, k, v = qkv[:, :, :nh], qkv[:, :, nh:nh + nkv], qkv[:, :, nh + nkv:]
    else:
        q, k, v = (linear(x, p[n], dt) for n in ("q_proj", "k_proj", "v_proj"))
    if cfg.qk_norm:
        q = rms_norm(q, p["q_norm"]["scale"], cfg.rms_norm_eps, dt)
        k = rms_norm(k, p["k_norm"]["scale"], cfg.rms_norm_eps, dt)
    inv_freq = rope_inv_freq(cfg)
    q = apply_rope(q, positions, inv_freq)
    k = apply_rope(k, positions, inv_freq)
    q = nn.with_logical_constraint(q, ("batch", "length", "heads", "head_dim"))
    new_cache = None
    if cache is not None:
        axis = 2 if kv_heads_first else 1
        ck, cv = (_write_cache(c, (jnp.swapaxes(n, 1, 2) if kv_heads_first else n).astype(c.dtype), cache_index, axis)
                  for c, n in zip(cache, (k, v)))
        new_cache = (ck, cv)
        k, v = ck.astype(dt), cv.astype(dt)
    elif kv_heads_first:
        k, v = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)
    out = attention(q, k, v, mask, dt, kv_heads_first=kv_heads_first)
    return linear(out, p["o_proj"], dt, axes=2), new_cache


def layer(cfg: ModelConfig, p: dict, x: jax.Array, positions: jax.Array, mask: jax.Array,
          cache: KVCache | None = None, cache_index=0, *, kv_heads_first: bool = False):
    """One decoder layer (see the module docstring) -> (x [B, T, H], new cache or None).

        x = x + self_attention(rms_norm(x, input_layernorm))
        x = x + gated_mlp(rms_norm(x, post_attention_layernorm))

    p: one layer's params as `layer_params(cfg)` declares them (or `fuse_projections` of them);
    x [B, T, H]; positions [B, T]; mask [B, T, S] (query t may read slot s); cache (k, v) of this
    layer, written at slots cache_index..cache_index+T-1.
    """
    eps, dt = cfg.rms_norm_eps, cfg.dtype
    h, new_cache = self_attention(cfg, p["self_attn"], rms_norm(x, p["input_layernorm"]["scale"], eps, dt),
                                  positions, mask, cache, cache_index, kv_heads_first=kv_heads_first)
    x = x + h
    x = x + gated_mlp(p["mlp"], rms_norm(x, p["post_attention_layernorm"]["scale"], eps, dt), dt)
    return nn.with_logical_constraint(x, ("batch", "length", "embed")), new_cache


def fuse_projections(p: dict) -> dict:
    """One layer's params with q/k/v and gate/up each joined into one matmul (same values):

        qkv_proj.kernel = [Wq | Wk | Wv]  [H, NH + 2 KVH, D]   (and the biases likewise)
        gate_up_proj.kernel = [W_gate | W_up]  [H, 2F]

    `layer` computes the same function from either form; the fused one runs 4 matmuls per layer
    instead of 7, which pays where a matmul's fixed cost dominates (decoding a few rows).
    """
    a, m = dict(p["self_attn"]), dict(p["mlp"])
    proj = [a.pop(n) for n in ("q_proj", "k_proj", "v_proj")]
    a["qkv_proj"] = {name: jnp.concatenate([w[name] for w in proj], axis=-2) for name in proj[0]}
    gate, up = m.pop("gate_proj"), m.pop("up_proj")
    m["gate_up_proj"] = {"kernel": jnp.concatenate([gate["kernel"], up["kernel"]], axis=-1)}
    return {**p, "self_attn": a, "mlp": m}


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One parameter: shape, logical axis names (for `zeroplay.parallel`), initializer."""
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    init: str = "normal"  # normal (std 0.02) | ones | zeros

    def initializer(self) -> Callable:
        init = {"normal": nn.initializers.normal(0.02), "ones": nn.initializers.ones,
                "zeros": nn.initializers.zeros}[self.init]
        return nn.with_logical_partitioning(init, self.axes)


def layer_params(cfg: ModelConfig) -> dict:
    """One layer's parameter tree {module: {param: ParamSpec}}, names as in Hugging Face checkpoints.

    The order within a module is the creation order (kernel before bias), which fixes the random
    init of each parameter.
    """
    h, f, d, nh, nkv = cfg.hidden_size, cfg.intermediate_size, cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads

    def dense(shape, axes, bias_axes=None):
        spec = {"kernel": ParamSpec(shape, axes)}
        if bias_axes is not None:
            spec["bias"] = ParamSpec(shape[len(shape) - len(bias_axes):], bias_axes, "zeros")
        return spec

    def norm(n, axis):
        return {"scale": ParamSpec((n,), (axis,), "ones")}

    bias = cfg.attention_bias
    attn = {
        "q_proj": dense((h, nh, d), ("embed", "heads", "head_dim"), ("heads", "head_dim") if bias else None),
        "k_proj": dense((h, nkv, d), ("embed", "kv_heads", "head_dim"), ("kv_heads", "head_dim") if bias else None),
        "v_proj": dense((h, nkv, d), ("embed", "kv_heads", "head_dim"), ("kv_heads", "head_dim") if bias else None),
    }
    if cfg.qk_norm:
        attn["q_norm"] = norm(d, "head_dim")
        attn["k_norm"] = norm(d, "head_dim")
    attn["o_proj"] = dense((nh, d, h), ("heads", "head_dim", "embed"))
    return {
        "input_layernorm": norm(h, "embed"),
        "self_attn": attn,
        "post_attention_layernorm": norm(h, "embed"),
        "mlp": {
            "gate_proj": dense((h, f), ("embed", "mlp")),
            "up_proj": dense((h, f), ("embed", "mlp")),
            "down_proj": dense((f, h), ("mlp", "embed")),
        },
    }
