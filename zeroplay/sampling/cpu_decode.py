"""The decode step and the prefill as fused CPU calls (`zeroplay/kernels/cpu_decode.cc`), and the
weight packing they share.

On a single CPU device in float32 the sampler runs each decode step as one XLA FFI call instead of
~12 XLA operations per layer (`decode_step.py`), and its prefill as the same call with every
prompt token at once (T tokens per row, in chunks of slots for long prompts): same math, same
cache slots, same masking, so the tokens and logprobs match the XLA path to float32 rounding
(`tests/test_sampler_step.py`, `tests/test_cpu_kernel.py`). Weights are re-laid once per set of
params (`pack_weights`, ~one copy of the model) into 16-column panels the kernel streams
sequentially. The cache here is one stacked (k, v) pair [L, B, KVH, S, D], updated in place
through input/output aliasing.

`use_cpu_kernel` decides: "auto" takes the kernel when it applies, "xla" never, "cpu" insists.
It applies on one CPU device when the kernel implements every feature of the model
(`kernel_supports`, the one check of the config); any other model runs the XLA step.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from zeroplay.models.config import ModelConfig
from zeroplay.models.decoder import lm_head_kernel
from zeroplay.models.layers import rope_inv_freq

PANEL = 16
DECODE_KERNELS = ("auto", "xla", "cpu")


def _ok(cfg: ModelConfig) -> str:
    return ""


def _family(cfg: ModelConfig) -> str:
    if cfg.family in KERNEL_FAMILIES:
        return ""
    return f"the kernel implements {KERNEL_FAMILIES}, not family {cfg.family!r}"


def _heads(cfg: ModelConfig) -> str:
    d = cfg.dim_per_head
    if cfg.num_kv_heads <= 0 or cfg.num_heads % cfg.num_kv_heads:
        return "num_heads must be a multiple of num_kv_heads"
    if d > 1024:
        return f"head_dim {d} is over the kernel's 1024"
    if (cfg.num_kv_heads * d) % PANEL or d % 8 or cfg.intermediate_size % 8:
        return "needs num_kv_heads * head_dim a multiple of 16, head_dim and intermediate_size multiples of 8"
    return ""


def _dtype(cfg: ModelConfig) -> str:
    dt = jnp.dtype(cfg.dtype)
    return "" if dt == jnp.float32 else f"compute dtype is {dt.name}, the kernel is float32"


# Every ModelConfig field the kernel knows, with the check of what it implements of it. Rope
# scaling of any kind is implemented (the rotary angles come from `rope_inv_freq`, computed by
# XLA), so are q/k/v biases (`has_bias`), q/k RMSNorm (`has_qk_norm`), grouped-query heads and tied
# embeddings (the head is packed from the transposed embedding); param_dtype is packed to float32.
# A field not listed here (a model feature added after the kernel) is refused unless it holds its
# default: list it here once the kernel implements it.
KERNEL_FAMILIES = ("llama", "qwen2", "qwen3")
_FEATURES = {
    "family": _family,
    "intermediate_size": _heads, "num_heads": _heads, "num_kv_heads": _heads, "head_dim": _heads,
    "dtype": _dtype,
    **{name: _ok for name in (
        "vocab_size", "hidden_size", "num_layers", "rms_norm_eps", "rope_theta", "rope_scaling",
        "tie_word_embeddings", "attention_bias", "qk_norm", "max_position_embeddings", "bos_token_id",
        "eos_token_id", "param_dtype", "scan_layers", "remat")},
}


def kernel_supports(cfg: ModelConfig) -> str:
    """'' when the fused kernel implements every feature of this model, else the reason it does not.

    The one check of the model for the kernel: anything it refuses runs the XLA step, never a
    different computation.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        check = _FEATURES.get(f.name)
        if check is None:
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            if value != default:
                return f"the kernel does not implement the model feature {f.name}={value!r}"
            continue
        why = check(cfg)
        if why:
            return why
    return ""


def _why_not(cfg: ModelConfig, mesh) -> str:
    if jax.default_backend() != "cpu":
        return f"the backend is {jax.default_backend()}, not cpu"
    if mesh is not None and mesh.size > 1:
        return "the params are sharded over a mesh of several devices"
    why = kernel_supports(cfg)
    if why:
        return why
    from zeroplay.kernels import cpu_decode_available, cpu_decode_unavailable_reason

    if not cpu_decode_available():
        return cpu_decode_unavailable_reason()
    return ""


def use_cpu_kernel(choice: str, cfg: ModelConfig, mesh) -> bool:
    """Whether the sampler runs the fused CPU step for this model and placement."""
    if choice not in DECODE_KERNELS:
        raise ValueError(f"decode_kernel must be one of {DECODE_KERNELS}, got {choice!r}")
    if choice == "xla":
        return False
    why = _why_not(cfg, mesh)
    if choice == "cpu" and why:
        raise ValueError(f"decode_kernel='cpu' is not available: {why}")
    return not why


def _require_kernel():
    from zeroplay.kernels import cpu_decode_available, cpu_decode_unavailable_reason

    if not cpu_decode_available():  # builds and registers the targets on first use
        raise RuntimeError(f"the fused CPU decode step is unavailable: {cpu_decode_unavailable_reason()}")


def _panels(w: jax.Array, transposed: bool = False) -> jax.Array:
    """[L, K, N] (or W^T [L, N, K] when transposed) -> [L, ceil(N / 16), K, 16], zero-padded."""
    from zeroplay.kernels import CPU_PACK_TARGET

    n, k = (w.shape[1], w.shape[2]) if transposed else (w.shape[2], w.shape[1])
    out = jax.ShapeDtypeStruct((w.shape[0], -(-n // PANEL), k, PANEL), jnp.float32)
    return jax.ffi.ffi_call(CPU_PACK_TARGET, out)(w.astype(jnp.float32), transposed=bool(transposed))


def _gate_up_panels(gate: jax.Array, up: jax.Array) -> jax.Array:
    """gate, up [L, K, F] -> [L, F / 8, K, 16]: panel j = gate features 8j..8j+7, then up's."""
    from zeroplay.kernels import CPU_PACK_GATE_UP_TARGET

    nl, k, f = gate.shape
    out = jax.ShapeDtypeStruct((nl, f // 8, k, PANEL), jnp.float32)
    return jax.ffi.ffi_call(CPU_PACK_GATE_UP_TARGET, out)(gate.astype(jnp.float32), up.astype(jnp.float32))


def pack_weights(params, cfg: ModelConfig) -> dict:
    """The kernel's weights from scanned or unscanned decoder params (jit it; ~one model copy).

    q, k and v are packed separately and joined along the panel axis (a contiguous join), which
    needs their widths to be multiples of 16 (`use_cpu_kernel` checks it).
    """
    _require_kernel()
    if "layers" in params:
        lay = params["layers"]
    else:
        lay = jax.tree.map(lambda *xs: jnp.stack(xs), *[params[f"layers_{i}"] for i in range(cfg.num_layers)])
    f32 = lambda x: x.astype(jnp.float32)
    a, m = lay["self_attn"], lay["mlp"]
    nl, h = cfg.num_layers, cfg.hidden_size
    proj = ("q_proj", "k_proj", "v_proj")
    empty = jnp.zeros((nl, 0), jnp.float32)
    if cfg.tie_word_embeddings:  # the head is the embedding [V, H] read transposed: no XLA transpose
        head = _panels(params["embed_tokens"]["embedding"][None], transposed=True)[0]
    else:
        head = _panels(lm_head_kernel(params, cfg)[None])[0]
    return {
        "embed": params["embed_tokens"]["embedding"],
        "ln1": f32(lay["input_layernorm"]["scale"]),
        "qkv": jnp.concatenate([_panels(a[n]["kernel"].reshape(nl, h, -1)) for n in proj], axis=1),
        "qkv_bias": (jnp.concatenate([f32(a[n]["bias"]).reshape(nl, -1) for n in proj], axis=-1)
                     if cfg.attention_bias else empty),
        "q_norm": f32(a["q_norm"]["scale"]) if cfg.qk_norm else empty,
        "k_norm": f32(a["k_norm"]["scale"]) if cfg.qk_norm else empty,
        "o": _panels(a["o_proj"]["kernel"].reshape(nl, -1, h)),
        "ln2": f32(lay["post_attention_layernorm"]["scale"]),
        "gate_up": _gate_up_panels(m["gate_proj"]["kernel"], m["up_proj"]["kernel"]),
        "down": _panels(m["down_proj"]["kernel"]),
        "norm": f32(params["norm"]["scale"]),
        "head": head,
    }


def stack_cache(cache: dict) -> tuple[jax.Array, jax.Array]:
    """A decoder cache {"k", "v"} [L, B, S, KVH, D] as the kernel's (k, v), each [L, B, KVH, S, D]."""
    return tuple(jnp.swapaxes(cache[n], 2, 3).astype(jnp.float32) for n in ("k", "v"))


def _fused_call(cfg: ModelConfig, packed: dict, cache, tokens: jax.Array, positions: jax.Array, slot,
                kv_mask: jax.Array):
    """tokens, positions [B, T]: T new tokens per row at cache slots slot..slot+T-1 (`slot` one
    scalar for every row, or [B], one per row); returns the logits f32 [B, V] of each row's last
    token and the updated cache."""
    _require_kernel()
    b, t = tokens.shape
    embeds = jnp.take(packed["embed"], tokens.reshape(-1), axis=0).astype(jnp.float32)
    ang = positions.reshape(-1).astype(jnp.float32)[:, None] * rope_inv_freq(cfg)
    call = jax.ffi.ffi_call(
        "zp_cpu_decode_step",
        (jax.ShapeDtypeStruct((b, cfg.vocab_size), jnp.float32), jax.ShapeDtypeStruct(cache[0].shape, jnp.float32),
         jax.ShapeDtypeStruct(cache[1].shape, jnp.float32)),
        input_output_aliases={16: 1, 17: 2})
    logits, k, v = call(
        embeds, jnp.cos(ang), jnp.sin(ang), kv_mask.astype(jnp.uint8), jnp.reshape(slot, (-1,)).astype(jnp.int32),
        packed["ln1"], packed["qkv"], packed["qkv_bias"], packed["q_norm"], packed["k_norm"], packed["o"],
        packed["ln2"], packed["gate_up"], packed["down"], packed["norm"], packed["head"], cache[0], cache[1],
        eps=np.float32(cfg.rms_norm_eps), num_heads=np.int64(cfg.num_heads),
        num_kv_heads=np.int64(cfg.num_kv_heads), has_bias=bool(cfg.attention_bias), has_qk_norm=bool(cfg.qk_norm))
    return logits, (k, v)


def decode_step(cfg: ModelConfig, packed: dict, cache: tuple[jax.Array, jax.Array], tokens: jax.Array,
                positions: jax.Array, slot: jax.Array, kv_mask: jax.Array):
    """Same contract as `decode_step.decode_step`: (logits f32 [B, V], cache) for tokens [B]."""
    return _fused_call(cfg, packed, cache, tokens[:, None], positions[:, None], slot, kv_mask)


PREFILL_CHUNK_ROWS = 2048  # tokens (rows x prompt slots) per kernel call: bounds the activations


def prefill(cfg: ModelConfig, packed: dict, ids: jax.Array, positions: jax.Array, kv_mask: jax.Array):
    """Prompts ids [B, P] (left-padded: kv_mask [B, P] marks the real tokens, positions [B, P]) into
    a fresh cache, as the decoder's prefill: (logits f32 [B, V] of slot P - 1, (k, v) [L, B, KVH,
    P, D]). Long prompts go in chunks of slots, one call each."""
    b, p = ids.shape
    shape = (cfg.num_layers, b, cfg.num_kv_heads, p, cfg.dim_per_head)
    cache = (jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))
    chunk = max(1, PREFILL_CHUNK_ROWS // b)
    for start in range(0, p, chunk):
        end = min(p, start + chunk)
        logits, cache = _fused_call(cfg, packed, cache, ids[:, start:end], positions[:, start:end],
                                    jnp.int32(start), kv_mask)
    return logits, cache


def fan_out(cache: tuple[jax.Array, jax.Array], num_samples: int, cache_len: int) -> tuple[jax.Array, jax.Array]:
    """A prefilled cache [L, N, KVH, P, D] as the decode cache [L, N G, KVH, cache_len, D]: row
    n G + j is prompt n's, the slots past P empty. One pass on huge pages (XLA's repeat + pad: two)."""
    from zeroplay.kernels import CPU_FAN_OUT_TARGET

    _require_kernel()
    nl, n, kvh, _, d = cache[0].shape
    out = jax.ShapeDtypeStruct((nl, n * num_samples, kvh, cache_len, d), jnp.float32)
    return tuple(jax.ffi.ffi_call(CPU_FAN_OUT_TARGET, out)(c) for c in cache)
