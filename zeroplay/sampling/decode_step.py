"""One-token decode step over the `Decoder`'s parameters, with the KV cache updated in place.

`Decoder.apply` with a cache is right for prefill, but inside a decode loop on the CPU its
scanned layers copy each layer's weights and cache out of the stacked arrays every step, and its
attention einsum transposes the whole cache (measured: about 2.4x the bytes of the weights
alone). This step reads the same parameter tree, but:
- layers are unstacked once per decode call (`unstack_layers`), outside the loop;
- the cache is one (k, v) pair of arrays per layer, so writing slot i is a dynamic-update-slice
  on a donated buffer, in place; they are laid out [B, KVH, S, D] (heads before slots, unlike the
  decoder's [L, B, S, KVH, D]) so the attention dots have their batch axes leading and XLA does
  not transpose the whole cache every step (measured: ~2 ms of a ~10 ms step at the peer shape);
- the LM head is one [H, V] matrix made contiguous once per call (`head_kernel`).
The math is the decoder's (same RMSNorm, RoPE, GQA, masking); `tests/test_sampler_step.py` checks
its logits against `Decoder.apply` for Llama, Qwen2 and Qwen3 configurations.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from zeroplay.models.config import ModelConfig
from zeroplay.models.decoder import apply_rope, lm_head_kernel, rope_inv_freq

LayerCache = tuple  # (k, v), each [B, KVH, S, D]
CACHE_AXES = ("batch", "kv_heads", "cache_length", "head_dim")  # logical axes of one layer's k or v


def unstack_layers(params, cfg: ModelConfig) -> list[dict]:
    """Per-layer parameter dicts from scanned (stacked `layers`) or unscanned (`layers_i`) params."""
    if "layers" in params:
        return [jax.tree.map(lambda a, i=i: a[i], params["layers"]) for i in range(cfg.num_layers)]
    return [params[f"layers_{i}"] for i in range(cfg.num_layers)]


def head_kernel(params, cfg: ModelConfig) -> jax.Array:
    """The [H, V] output projection (the transposed embedding when tied).

    Call it in its own jit, outside the decode program: its output is then a contiguous [H, V]
    array, and the per-step dot reads it row-major (1.8 ms against 2.4 ms through a transposed
    layout, 8 x 256 x 32000 float32 on the 2-core CPU).
    """
    return lm_head_kernel(params, cfg).astype(cfg.dtype)


def split_cache(cache: dict) -> tuple[LayerCache, ...]:
    """A decoder cache {"k", "v"} [L, B, S, KVH, D] as one (k, v) pair per layer, [B, KVH, S, D]."""
    k, v = (jnp.swapaxes(cache[n], 2, 3) for n in ("k", "v"))
    return tuple((k[i], v[i]) for i in range(k.shape[0]))


def _rms(x, scale, eps, dtype):
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return scale.astype(dtype) * x32.astype(dtype)


def _dense(x, kernel, bias=None):
    """x [B, In] with a kernel [In, ...out] (and bias [...out]) -> [B, ...out]."""
    out = jnp.dot(x, kernel.reshape(kernel.shape[0], -1).astype(x.dtype)).reshape(x.shape[0], *kernel.shape[1:])
    return out if bias is None else out + bias.astype(x.dtype)


def _layer(cfg: ModelConfig, p: dict, x, cache: LayerCache, positions, slot, mask, inv_freq):
    d, nh, nkv = cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads
    b = x.shape[0]
    a = p["self_attn"]
    h = _rms(x, p["input_layernorm"]["scale"], cfg.rms_norm_eps, cfg.dtype)
    bias = (lambda name: a[name]["bias"]) if cfg.attention_bias else (lambda name: None)
    q = _dense(h, a["q_proj"]["kernel"], bias("q_proj"))  # [B, NH, D]
    k = _dense(h, a["k_proj"]["kernel"], bias("k_proj"))  # [B, KVH, D]
    v = _dense(h, a["v_proj"]["kernel"], bias("v_proj"))
    if cfg.qk_norm:
        q = _rms(q, a["q_norm"]["scale"], cfg.rms_norm_eps, cfg.dtype)
        k = _rms(k, a["k_norm"]["scale"], cfg.rms_norm_eps, cfg.dtype)
    q = apply_rope(q[:, None], positions[:, None], inv_freq)[:, 0]
    k = apply_rope(k[:, None], positions[:, None], inv_freq)[:, 0]
    ck, cv = cache
    ck = jax.lax.dynamic_update_slice(ck, k[:, :, None].astype(ck.dtype), (0, 0, slot, 0))
    cv = jax.lax.dynamic_update_slice(cv, v[:, :, None].astype(cv.dtype), (0, 0, slot, 0))
    qg = q.reshape(b, nkv, nh // nkv, d)
    scores = jnp.einsum("bkgd,bksd->bkgs", qg, ck.astype(cfg.dtype), preferred_element_type=jnp.float32)
    scores = scores * (1.0 / math.sqrt(d))
    scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(cfg.dtype)
    out = jnp.einsum("bkgs,bksd->bkgd", probs, cv.astype(cfg.dtype)).reshape(b, nh * d)
    x = x + jnp.dot(out, a["o_proj"]["kernel"].reshape(nh * d, -1).astype(cfg.dtype))
    m = p["mlp"]
    h = _rms(x, p["post_attention_layernorm"]["scale"], cfg.rms_norm_eps, cfg.dtype)
    gate = _dense(h, m["gate_proj"]["kernel"])
    up = _dense(h, m["up_proj"]["kernel"])
    x = x + _dense(jax.nn.silu(gate) * up, m["down_proj"]["kernel"])
    return x, (ck, cv)


def decode_step(cfg: ModelConfig, params, layers: list[dict], head: jax.Array, cache: tuple[LayerCache, ...],
                tokens: jax.Array, positions: jax.Array, slot: jax.Array, kv_mask: jax.Array):
    """tokens [B] at rotary `positions` [B] written to cache slot `slot` -> (logits f32 [B, V], cache).

    kv_mask [B, S]: which slots hold real keys; the query attends slots <= slot among them.
    `layers` and `head` come from `unstack_layers` and `head_kernel` (hoisted out of the loop).
    """
    x = jnp.take(params["embed_tokens"]["embedding"], tokens, axis=0).astype(cfg.dtype)
    s = kv_mask.shape[1]
    mask = kv_mask.astype(bool) & (jnp.arange(s)[None, :] <= slot)
    inv_freq = rope_inv_freq(cfg)
    new_cache = []
    for p, c in zip(layers, cache):
        x, c = _layer(cfg, p, x, c, positions, slot, mask, inv_freq)
        new_cache.append(c)
    x = _rms(x, params["norm"]["scale"], cfg.rms_norm_eps, cfg.dtype)
    logits = jnp.dot(x, head).astype(jnp.float32)
    return logits, tuple(new_cache)
