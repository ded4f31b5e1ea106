"""The decoder: one pure-functional Flax module for Llama, Qwen2/Qwen2.5 and Qwen3.

Used purely functionally: `model.apply({"params": params}, input_ids)` -> float32 logits
`[B, T, V]`. Each layer declares its parameters from `layers.layer_params` and computes
`layers.layer` on them: the layer math lives in `layers.py`, shared with the sampler's decode
step. Every parameter carries logical axis names (`vocab`, `embed`, `heads`, `kv_heads`,
`head_dim`, `mlp`, and `layers` when the layers are scanned); `zeroplay.parallel` maps them to a
mesh, so the model itself knows nothing of sharding.

Incremental decoding passes an explicit KV cache (see `init_cache`): `cache_index` is the slot
where the new tokens are written and `kv_mask` marks which slots hold real keys, so ragged
(left-padded) prompts attend exactly as unpadded ones would.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zeroplay.models.config import ModelConfig
from zeroplay.models.layers import ParamSpec, layer, layer_params, rms_norm
from zeroplay.models.layers import apply_rope, rope_inv_freq  # noqa: F401  (their old home)

Cache = dict  # {"k": [L, B, S, KVH, D], "v": [L, B, S, KVH, D]}


def _init(names, scale=0.02):
    return nn.with_logical_partitioning(nn.initializers.normal(scale), names)


class RMSNorm(nn.Module):
    """`layers.rms_norm` with its scale parameter (the final norm)."""
    eps: float
    dtype: Any
    param_dtype: Any
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
                           (x.shape[-1],), self.param_dtype)
        return rms_norm(x, scale, self.eps, self.dtype)


class _Params(nn.Module):
    """Declares a tree of `ParamSpec`s in this scope (sub-dicts as child scopes) and returns it."""
    specs: Any
    param_dtype: Any

    @nn.compact
    def __call__(self):
        return _declare(self, self.specs, self.param_dtype)


def _declare(module: nn.Module, specs, param_dtype) -> dict:
    return {name: (module.param(name, s.initializer(), s.shape, param_dtype) if isinstance(s, ParamSpec)
                   else _Params(s, param_dtype, name=name)())
            for name, s in specs.items()}


class DecoderLayer(nn.Module):
    """Declares one layer's params (`layers.layer_params`) and runs `layers.layer` on them."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, layer_cache, positions, mask, cache_index):
        cfg = self.cfg
        p = _declare(self, layer_params(cfg), cfg.param_dtype)
        cache = None if layer_cache is None else (layer_cache["k"], layer_cache["v"])
        x, new_cache = layer(cfg, p, x, positions, mask, cache, cache_index)
        return x, (None if new_cache is None else {"k": new_cache[0], "v": new_cache[1]})


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


def _abstract_variables(cfg: ModelConfig):
    """The boxed (logically partitioned) parameter shapes, without allocating them."""
    return jax.eval_shape(Decoder(cfg).init, jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))["params"]


def abstract_params(cfg: ModelConfig):
    """A pytree like params whose leaves are jax.ShapeDtypeStructs (cfg.param_dtype); no allocation."""
    return nn.unbox(_abstract_variables(cfg))


def logical_axes(cfg: ModelConfig):
    """A pytree like params whose leaves are PartitionSpecs of logical axis names."""
    return nn.get_partition_spec(_abstract_variables(cfg))
