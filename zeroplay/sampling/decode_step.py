"""One-token decode step over the `Decoder`'s parameters, with the KV cache updated in place.

This is the XLA decode step: every backend and mesh. On a single CPU device in float32 the
sampler uses the fused kernel of `cpu_decode.py` instead (same math, one call per step).

`Decoder.apply` with a cache is right for prefill, but inside a decode loop on the CPU its
scanned layers copy each layer's weights and cache out of the stacked arrays every step, and its
attention einsum transposes the whole cache (measured: about 2.4x the bytes of the weights
alone). This step reads the same parameter tree, but:
- layers are unstacked once per decode call (`unstack_layers`), outside the loop, with the q/k/v
  and gate/up projections concatenated (`fuse_projections`) so each layer runs 4 matmuls instead
  of 7 (at batch 8 a small matmul costs more in fixed overhead than in bytes);
- the cache is one (k, v) pair of arrays per layer, so writing slot i is a dynamic-update-slice
  on a donated buffer, in place; they are laid out [B, KVH, S, D] (heads before slots, unlike the
  decoder's [L, B, S, KVH, D]) so the attention dots have their batch axes leading and XLA does
  not transpose the whole cache every step (measured: ~2 ms of a ~10 ms step at the peer shape);
- the LM head is one [H, V] matrix made contiguous once per call (`head_kernel`).
The math is the decoder's own: each layer is `zeroplay.models.layers.layer`, the function the
Flax `Decoder` runs, here on one token with the cache laid out heads first (`kv_heads_first`);
`tests/test_sampler_step.py` checks its logits against `Decoder.apply` for Llama, Qwen2 and Qwen3.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from zeroplay.models.config import ModelConfig
from zeroplay.models.decoder import lm_head_kernel
from zeroplay.models.layers import fuse_projections, layer, rms_norm

LayerCache = tuple  # (k, v), each [B, KVH, S, D]
CACHE_AXES = ("batch", "kv_heads", "cache_length", "head_dim")  # logical axes of one layer's k or v


def unstack_layers(params, cfg: ModelConfig) -> list[dict]:
    """One layer's params each from scanned (stacked `layers`) or unscanned (`layers_i`) params,
    with q/k/v and gate/up fused (`zeroplay.models.layers.fuse_projections`)."""
    if "layers" in params:
        per_layer = [jax.tree.map(lambda a, i=i: a[i], params["layers"]) for i in range(cfg.num_layers)]
    else:
        per_layer = [params[f"layers_{i}"] for i in range(cfg.num_layers)]
    return [fuse_projections(p) for p in per_layer]


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


def decode_step(cfg: ModelConfig, params, layers: list[dict], head: jax.Array, cache: tuple[LayerCache, ...],
                tokens: jax.Array, positions: jax.Array, slot: jax.Array, kv_mask: jax.Array):
    """tokens [B] at rotary `positions` [B] written to cache slot `slot` -> (logits f32 [B, V], cache).

    slot: one slot for every row, or [B], one per row (continuous batching).
    kv_mask [B, S]: which slots hold real keys; the query attends slots <= its slot among them.
    `layers` and `head` come from `unstack_layers` and `head_kernel` (hoisted out of the loop).
    """
    x = jnp.take(params["embed_tokens"]["embedding"], tokens, axis=0).astype(cfg.dtype)[:, None]  # [B, 1, H]
    s = kv_mask.shape[1]
    mask = (kv_mask.astype(bool) & (jnp.arange(s)[None, :] <= jnp.reshape(slot, (-1, 1))))[:, None]  # [B, 1, S]
    new_cache = []
    for p, c in zip(layers, cache):
        x, c = layer(cfg, p, x, positions[:, None], mask, c, slot, kv_heads_first=True)
        new_cache.append(c)
    x = rms_norm(x[:, 0], params["norm"]["scale"], cfg.rms_norm_eps, cfg.dtype)
    # Accumulated and returned in float32 (not rounded to a bf16 compute dtype): the logprobs come
    # from these, as the train step's come from its float32-accumulated logits (`zeroplay.rl.logprobs`).
    logits = jnp.dot(x, head, preferred_element_type=jnp.float32)
    return logits, tuple(new_cache)
