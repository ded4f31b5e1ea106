"""The decoder: one pure-functional Flax module for Llama, Qwen2/Qwen2.5 and Qwen3.

Used purely functionally: `model.apply({"params": params}, input_ids)` -> float32 logits
`[B, T, V]`. Every parameter carries logical axis names (`vocab`, `embed`, `heads`, `kv_heads`,
`head_dim`, `mlp`, and `layers` when the layers are scanned); `zeroplay.parallel` maps them to a
mesh, so the model itself knows nothing of sharding.

Incremental decoding passes an explicit KV cache (see `init_cache`): `cache_index` is the slot
where the new tokens are written and `kv_mask` marks which slots hold real keys, so ragged
(left-padded) prompts attend exactly as unpadded ones would.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zeroplay.models.config import ModelConfig

Cache = dict  # {"k": [L, B, S, KVH, D], "v": [L, B, S, KVH, D]}


def _init(names, scale=0.02):
    return nn.with_logical_partitioning(nn.initializers.normal(scale), names)


class RMSNorm(nn.Module):
    eps: float
    dtype: Any
    param_dtype: Any
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
                           (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (scale.astype(self.dtype) * x32.astype(self.dtype))


def rope_inv_freq(cfg: ModelConfig) -> jnp.ndarray:
    """Inverse frequencies, with Llama 3 / linear scaling as in transformers."""
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


def apply_rope(x, positions, inv_freq):
    """x: [B, T, H, D]; positions: [B, T]. Half-split rotation (HF `rotate_half`) in float32."""
    ang = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, D/2]
    cos, sin = jnp.cos(ang)[:, :, None, :], jnp.sin(ang)[:, :, None, :]
    x32 = x.astype(jnp.float32)
    x1, x2 = jnp.split(x32, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


class Attention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, positions, mask, layer_cache, cache_index):
        cfg = self.cfg
        d, nh, nkv = cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads
        dense = functools.partial(nn.DenseGeneral, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        bias_init = lambda names: nn.with_logical_partitioning(nn.initializers.zeros, names)
        q = dense((nh, d), use_bias=cfg.attention_bias, name="q_proj",
                  kernel_init=_init(("embed", "heads", "head_dim")),
                  bias_init=bias_init(("heads", "head_dim")))(x)
        k = dense((nkv, d), use_bias=cfg.attention_bias, name="k_proj",
                  kernel_init=_init(("embed", "kv_heads", "head_dim")),
                  bias_init=bias_init(("kv_heads", "head_dim")))(x)
        v = dense((nkv, d), use_bias=cfg.attention_bias, name="v_proj",
                  kernel_init=_init(("embed", "kv_heads", "head_dim")),
                  bias_init=bias_init(("kv_heads", "head_dim")))(x)
        if cfg.qk_norm:
            q = RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, "head_dim", name="q_norm")(q)
            k = RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, "head_dim", name="k_norm")(k)
        inv_freq = rope_inv_freq(cfg)
        q = apply_rope(q, positions, inv_freq)
        k = apply_rope(k, positions, inv_freq)
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "head_dim"))

        new_cache = None
        if layer_cache is not None:
            ck = jax.lax.dynamic_update_slice_in_dim(layer_cache["k"], k.astype(layer_cache["k"].dtype),
                                                     cache_index, axis=1)
            cv = jax.lax.dynamic_update_slice_in_dim(layer_cache["v"], v.astype(layer_cache["v"].dtype),
                                                     cache_index, axis=1)
            new_cache = {"k": ck, "v": cv}
            k, v = ck.astype(cfg.dtype), cv.astype(cfg.dtype)

        b, t = q.shape[:2]
        qg = q.reshape(b, t, nkv, nh // nkv, d)
        scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32)
        scores = scores * (1.0 / math.sqrt(d))
        scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(cfg.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(b, t, nh, d)
        out = nn.DenseGeneral(cfg.hidden_size, axis=(-2, -1), use_bias=False, dtype=cfg.dtype,
                              param_dtype=cfg.param_dtype, name="o_proj",
                              kernel_init=_init(("heads", "head_dim", "embed")))(out)
        return out, new_cache


class MLP(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        dense = functools.partial(nn.Dense, use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        gate = dense(cfg.intermediate_size, name="gate_proj", kernel_init=_init(("embed", "mlp")))(x)
        up = dense(cfg.intermediate_size, name="up_proj", kernel_init=_init(("embed", "mlp")))(x)
        h = nn.with_logical_constraint(jax.nn.silu(gate) * up, ("batch", "length", "mlp"))
        return dense(cfg.hidden_size, name="down_proj", kernel_init=_init(("mlp", "embed")))(h)


class DecoderLayer(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, layer_cache, positions, mask, cache_index):
        cfg = self.cfg
        norm = functools.partial(RMSNorm, cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype)
        h, new_cache = Attention(cfg, name="self_attn")(norm(name="input_layernorm")(x), positions, mask,
                                                       layer_cache, cache_index)
        x = x + h
        x = x + MLP(cfg, name="mlp")(norm(name="post_attention_layernorm")(x))
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        return x, new_cache


def _remat_policy(name):
    return {
        "full": jax.checkpoint_policies.nothing_saveable,
        "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    }[name]


class Decoder(nn.Module):
    """Causal LM. Without a cache: `apply(vars, ids)` -> logits. With one: (logits, new_cache)."""
    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        self.embed_tokens = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.dtype,
                                     param_dtype=cfg.param_dtype,
                                     embedding_init=_init(("vocab", "embed")))
        layer = DecoderLayer
        if cfg.remat != "none":
            layer = nn.remat(layer, policy=_remat_policy(cfg.remat), prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            self.layers = nn.scan(layer, variable_axes={"params": 0}, split_rngs={"params": True},
                                  in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
                                  length=cfg.num_layers,
                                  metadata_params={nn.PARTITION_NAME: "layers"})(cfg, name="layers")
        else:
            self.layers = [layer(cfg, name=f"layers_{i}") for i in range(cfg.num_layers)]
        self.norm = RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Dense(cfg.vocab_size, use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                    kernel_init=_init(("embed", "vocab")))

    def __call__(self, input_ids, positions=None, attention_mask=None, cache: Cache | None = None,
                 cache_index=None, kv_mask=None, return_hidden: bool = False):
        """input_ids int32 [B, T].

        positions: [B, T] rotary positions (default 0..T-1).
        attention_mask: [B, T] bool, valid tokens (no cache only; default all valid).
        cache, cache_index, kv_mask: KV cache [L, B, S, KVH, D] pair, the slot of input_ids[:, 0],
            and [B, S] validity of every slot after this call's writes.
        return_hidden: return the final-norm hidden states instead of logits.
        """
        b, t = input_ids.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        if cache is None:
            causal = jnp.tril(jnp.ones((t, t), dtype=bool))
            valid = jnp.ones((b, t), bool) if attention_mask is None else attention_mask.astype(bool)
            mask = causal[None] & valid[:, None, :]
            cache_index = 0
        else:
            s = cache["k"].shape[2]
            q_slot = cache_index + jnp.arange(t)
            mask = (jnp.arange(s)[None, :] <= q_slot[:, None])[None] & kv_mask.astype(bool)[:, None, :]
        x = self.embed_tokens(input_ids.astype(jnp.int32))
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        if self.cfg.scan_layers:
            x, new_cache = self.layers(x, cache, positions, mask, cache_index)
        else:
            per_layer = []
            for i, layer in enumerate(self.layers):
                lc = None if cache is None else {"k": cache["k"][i], "v": cache["v"][i]}
                x, c = layer(x, lc, positions, mask, cache_index)
                per_layer.append(c)
            new_cache = None if cache is None else {
                "k": jnp.stack([c["k"] for c in per_layer]), "v": jnp.stack([c["v"] for c in per_layer])}
        x = self.norm(x)
        out = x if return_hidden else self.logits(x)
        return out if cache is None else (out, new_cache)

    def logits(self, hidden):
        if self.cfg.tie_word_embeddings:
            logits = self.embed_tokens.attend(hidden)
        else:
            logits = self.lm_head(hidden)
        return logits.astype(jnp.float32)


def lm_head_kernel(params, cfg: ModelConfig):
    """The [H, V] output projection (the transposed embedding when tied)."""
    if cfg.tie_word_embeddings:
        return params["embed_tokens"]["embedding"].T
    return params["lm_head"]["kernel"]


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> Cache:
    shape = (cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.dim_per_head)
    dtype = dtype or cfg.dtype
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


CACHE_LOGICAL_AXES = ("layers", "batch", "cache_length", "kv_heads", "head_dim")


def init_params(cfg: ModelConfig, rng, seq_len: int = 8):
    """Random parameters (plain arrays) for a model of this config."""
    model = Decoder(cfg)
    variables = jax.jit(model.init)(rng, jnp.zeros((1, seq_len), jnp.int32))
    return model, nn.unbox(variables)["params"]


def logical_axes(cfg: ModelConfig):
    """A pytree like params whose leaves are PartitionSpecs of logical axis names."""
    model = Decoder(cfg)
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))
    return nn.get_partition_spec(abstract)["params"]
