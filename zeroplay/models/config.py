"""Model configuration: one dataclass for the Llama / Qwen2 / Qwen3 decoder family.

`ModelConfig.from_hf` reads a Hugging Face `config.json` dict and `to_hf` writes one back, so a
checkpoint round-trips through transformers with the same logits.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

# Families this decoder implements, keyed by Hugging Face `model_type`.
FAMILIES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class UnsupportedModelError(ValueError):
    """The checkpoint is not one of the decoder families zeroplay implements."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    family: str = "llama"  # llama | qwen2 | qwen3
    vocab_size: int = 32000
    hidden_size: int = 256
    intermediate_size: int = 1024
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    head_dim: int | None = None  # defaults to hidden_size // num_heads
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # {"rope_type": "llama3" | "linear", ...}
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q/k/v bias (Qwen2: True)
    qk_norm: bool = False  # RMSNorm on q and k per head (Qwen3)
    max_position_embeddings: int = 8192
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    # Execution switches (not part of the checkpoint).
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32
    scan_layers: bool = True
    remat: str = "none"  # none | full | dots (which activations to keep when rematerialising)

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    def num_params(self) -> int:
        """Parameter count (for FLOP accounting)."""
        h, f, d = self.hidden_size, self.intermediate_size, self.dim_per_head
        attn = h * d * (2 * self.num_heads + 2 * self.num_kv_heads)
        if self.attention_bias:
            attn += d * (self.num_heads + 2 * self.num_kv_heads)
        per_layer = attn + 3 * h * f + 2 * h + (2 * d if self.qk_norm else 0)
        emb = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + emb + h

    @classmethod
    def from_hf(cls, hf: dict, **overrides) -> "ModelConfig":
        model_type = hf.get("model_type", "")
        archs = hf.get("architectures") or []
        if model_type not in FAMILIES:
            raise UnsupportedModelError(
                f"unsupported architecture model_type={model_type!r} architectures={archs}: "
                f"zeroplay implements {sorted(FAMILIES)} (Llama, Qwen2/2.5, Qwen3)")
        rope = hf.get("rope_scaling") or hf.get("rope_parameters") or None
        theta = hf.get("rope_theta")
        if rope is not None:
            rope = dict(rope)
            theta = theta or rope.get("rope_theta")
            kind = rope.get("rope_type", rope.get("type", "default"))
            if kind not in ("default", "linear", "llama3"):
                raise UnsupportedModelError(f"unsupported rope scaling {kind!r}: zeroplay implements "
                                            "default, linear and llama3")
            if kind == "default":
                rope = None
        if model_type == "qwen2" and hf.get("use_sliding_window"):
            raise UnsupportedModelError("Qwen2 sliding-window attention is not implemented")
        num_heads = hf["num_attention_heads"]
        kw = dict(
            family=model_type,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=hf.get("head_dim"),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta or 10000.0),
            rope_scaling=rope,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=(True if model_type == "qwen2" else bool(hf.get("attention_bias", False))),
            qk_norm=model_type == "qwen3",
            max_position_embeddings=hf.get("max_position_embeddings", 8192),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
        )
        if model_type == "llama" and hf.get("mlp_bias"):
            raise UnsupportedModelError("Llama with mlp_bias=True is not implemented")
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict:
        d = self.dim_per_head
        hf = {
            "architectures": [FAMILIES[self.family]],
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": d,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "torch_dtype": "float32" if self.param_dtype == jnp.float32 else "bfloat16",
        }
        if self.rope_scaling:
            hf["rope_scaling"] = dict(self.rope_scaling)
        if self.family == "llama":
            hf["attention_bias"] = self.attention_bias
            hf["mlp_bias"] = False
        if self.family == "qwen3":
            hf["attention_bias"] = self.attention_bias
        if self.family == "qwen2":
            hf["use_sliding_window"] = False
        if self.bos_token_id is not None:
            hf["bos_token_id"] = self.bos_token_id
        if self.eos_token_id is not None:
            hf["eos_token_id"] = self.eos_token_id
        return hf


def resolve_dtype(dtype) -> Any:
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
        return _DTYPES[dtype]
    return dtype
