"""Models: the Flax decoder (Llama / Qwen2 / Qwen3), Hugging Face and GGUF import, export.

    model, params = load_pretrained("smollm2-135m-instruct")
    logits = model.apply({"params": params}, input_ids)
    save_pretrained(model, params, "out/")
    tokenizer = load_tokenizer("smollm2-135m-instruct")

The layer math is `zeroplay.models.layers` (pure functions, shared with the sampler's decode
step). This package imports no other zeroplay package: meshes and sharding rules are
`zeroplay.parallel`'s, which computes shardings from the logical axes models give it (loaders take
them as a `shardings` function; `zeroplay.parallel.load_sharded(name, mesh, rules)` loads onto a mesh).
"""
from __future__ import annotations

import jax.numpy as jnp

from zeroplay.models.config import ModelConfig, UnsupportedModelError
from zeroplay.models.decoder import (CACHE_LOGICAL_AXES, Decoder, abstract_params, init_cache, init_params,
                                     lm_head_kernel, logical_axes)
from zeroplay.models.embedded import EMBEDDED_NAME, EmbeddedModelMissing, embedded_dir
from zeroplay.models.hf import ModelLoadError, load_hf, save_hf
from zeroplay.models.tokenizer import load_tokenizer


def load_pretrained(name_or_path: str, dtype=jnp.float32, *, param_dtype=None, scan_layers: bool = True,
                    remat: str = "none", shardings=None):
    """(model, params) from a Hugging Face folder or the embedded name "smollm2-135m-instruct".

    dtype: compute dtype (and parameter dtype unless `param_dtype` is given). Placement:
    `shardings`, a function (abstract_params, logical_axes) -> tree of Shardings (see `load_hf`;
    `zeroplay.parallel.param_sharding_fn(mesh, rules)` is one); every parameter is then created
    directly with its sharding.
    """
    if name_or_path == EMBEDDED_NAME:
        try:
            name_or_path = embedded_dir()
        except EmbeddedModelMissing as e:
            raise ModelLoadError(str(e)) from None
    return load_hf(name_or_path, dtype=dtype, param_dtype=param_dtype, scan_layers=scan_layers,
                   remat=remat, shardings=shardings)


def save_pretrained(model, params, out_dir: str, **kw) -> None:
    """A folder that `transformers.AutoModelForCausalLM.from_pretrained` loads with the same logits."""
    save_hf(model, params, out_dir, **kw)


__all__ = ["ModelConfig", "Decoder", "load_pretrained", "save_pretrained", "load_tokenizer", "init_cache",
           "init_params", "lm_head_kernel", "logical_axes", "abstract_params", "ModelLoadError",
           "UnsupportedModelError", "EMBEDDED_NAME", "CACHE_LOGICAL_AXES"]
