"""One-token decode step over the `Decoder`'s parameters, with the KV cache updated in place.

This is the XLA decode step: every backend and mesh. On a single CPU device in float32 the
sampler uses the fused kernel of `cpu_decode.py` instead (same math, one call per step).

`Decoder.apply` with a cache is right for prefill, but inside a decode loop on the CPU its
scanned layers copy each layer's weights and cache out of the stacked arrays every step, and its
attention einsum transposes the whole cache (measured: about 2.4x the bytes of the weights
alone). This step reads the same parameter tree, but:
- layers are unstacked once per decode call (`unstack_layers`), outside the loop, with the q/k/v
  and gate/up projections concatenated so each layer runs 4 matmuls instead of 7 (at batch 8 a
  small matmul costs more in fixed overhead than in bytes);
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
    """Per-layer fused weights from scanned (stacked `layers`) or unscanned (`layers_i`) params.

    Each: ln1, ln2 (norm scales), qkv [H, (NH + 2 KVH) D] (+ qkv_bias), q_norm / k_norm (Qwen3),
    o [NH D, H], gate_up [H, 2 F], down [F, H].
    """
    if "layers" in params:
        per_layer = [jax.tree.map(lambda a, i=i: a[i], params["layers"]) for i in range(cfg.num_layers)]
    else:
        per_layer = [params[f"layers_{i}"] for i in range(cfg.num_layers)]
    return [_fuse(p, cfg) for p in per_layer]


def _fuse(p: dict, cfg: ModelConfig) -> dict:
    a, m, h = p["self_attn"], p["mlp"], cfg.hidden_size
    proj = ("q_proj", "k_proj", "v_proj")
    out = {
        "ln1": p["input_layernorm"]["scale"],
        "ln2": p["post_attention_layernorm"]["scale"],
        "qkv": jnp.concatenate([a[n]["kernel"].reshape(h, -1) for n in proj], axis=1),
        "o": a["o_proj"]["kernel"].reshape(-1, h),
        "gate_up": jnp.concatenate([m["gate_proj"]["kernel"], m["up_proj"]["kernel"]], axis=1),
        "down": m["down_proj"]["kernel"],
    }
    if cfg.attention_bias:
        out["qkv_bias"] = jnp.concatenate([a[n]["bias"].reshape(-1) for n in proj])
    if cfg.qk_norm:
        out["q_norm"], out["k_norm"] = a["q_norm"]["scale"], a["k_norm"]["scale"]
    return out


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




def _layer(cfg: ModelConfig, p: dict, x, cache: LayerCache, positions, slot, mask, inv_freq):
    d, nh, nkv = cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads
    b = x.shape[0]
    h = _rms(x, p["ln1"], cfg.rms_norm_eps, cfg.dtype)
    qkv = jnp.dot(h, p["qkv"].astype(cfg.dtype))
    if cfg.attention_bias:
        qkv = qkv + p["qkv_bias"].astype(cfg.dtype)
    q = qkv[:, :nh * d].reshape(b, nh, d)
    k = qkv[:, nh * d:(nh + nkv) * d].reshape(b, nkv, d)
    v = qkv[:, (nh + nkv) * d:].reshape(b, nkv, d)
    if cfg.qk_norm:
        q = _rms(q, p["q_norm"], cfg.rms_norm_eps, cfg.dtype)
        k = _rms(k, p["k_norm"], cfg.rms_norm_eps, cfg.dtype)
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
    x = x + jnp.dot(out, p["o"].astype(cfg.dtype))
    h = _rms(x, p["ln2"], cfg.rms_norm_eps, cfg.dtype)
    gate, up = jnp.split(jnp.dot(h, p["gate_up"].astype(cfg.dtype)), 2, axis=-1)
    x = x + jnp.dot(jax.nn.silu(gate) * up, p["down"].astype(cfg.dtype))
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
