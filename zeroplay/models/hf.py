"""Hugging Face checkpoints in and out, without torch.

Import reads `config.json` and the safetensors weights (one file, or shards listed in
`model.safetensors.index.json`) through numpy memory maps and renames them with one explicit
table per family. Given shardings (computed by the caller from the logical axes: models know no
mesh) each tensor is built directly with its target sharding: every device reads only its own
slice of the mapped file, never a full host copy per device.
Export writes safetensors and a `config.json` that `transformers` loads with the same logits.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from zeroplay.models.config import ModelConfig, UnsupportedModelError, resolve_dtype
from zeroplay.models.decoder import Decoder, abstract_params, logical_axes
from zeroplay.models.safetensors_io import SafetensorsError, open_safetensors, save_safetensors


class ModelLoadError(ValueError):
    """A checkpoint could not be loaded; the message says what to do."""


# How a Hugging Face tensor becomes a Flax one (and back). `cfg` gives head counts.
def _to_heads(n):  # [n*D, H] -> [H, n, D]
    return lambda w, c: w.T.reshape(w.shape[1], n(c), c.dim_per_head)


def _from_heads(w, c):  # [H, n, D] -> [n*D, H]
    return w.reshape(w.shape[0], -1).T


_TRANSFORMS = {
    "copy": (lambda w, c: w, lambda w, c: w),
    "dense": (lambda w, c: w.T, lambda w, c: w.T),
    "q": (_to_heads(lambda c: c.num_heads), _from_heads),
    "kv": (_to_heads(lambda c: c.num_kv_heads), _from_heads),
    "o": (lambda w, c: w.T.reshape(c.num_heads, c.dim_per_head, w.shape[0]),
          lambda w, c: w.reshape(-1, w.shape[-1]).T),
    "q_bias": (lambda w, c: w.reshape(c.num_heads, c.dim_per_head), lambda w, c: w.reshape(-1)),
    "kv_bias": (lambda w, c: w.reshape(c.num_kv_heads, c.dim_per_head), lambda w, c: w.reshape(-1)),
}

_LLAMA_LAYER = {
    "input_layernorm.weight": (("input_layernorm", "scale"), "copy"),
    "post_attention_layernorm.weight": (("post_attention_layernorm", "scale"), "copy"),
    "self_attn.q_proj.weight": (("self_attn", "q_proj", "kernel"), "q"),
    "self_attn.k_proj.weight": (("self_attn", "k_proj", "kernel"), "kv"),
    "self_attn.v_proj.weight": (("self_attn", "v_proj", "kernel"), "kv"),
    "self_attn.o_proj.weight": (("self_attn", "o_proj", "kernel"), "o"),
    "mlp.gate_proj.weight": (("mlp", "gate_proj", "kernel"), "dense"),
    "mlp.up_proj.weight": (("mlp", "up_proj", "kernel"), "dense"),
    "mlp.down_proj.weight": (("mlp", "down_proj", "kernel"), "dense"),
}
_QKV_BIAS = {
    "self_attn.q_proj.bias": (("self_attn", "q_proj", "bias"), "q_bias"),
    "self_attn.k_proj.bias": (("self_attn", "k_proj", "bias"), "kv_bias"),
    "self_attn.v_proj.bias": (("self_attn", "v_proj", "bias"), "kv_bias"),
}
_QK_NORM = {
    "self_attn.q_norm.weight": (("self_attn", "q_norm", "scale"), "copy"),
    "self_attn.k_norm.weight": (("self_attn", "k_norm", "scale"), "copy"),
}
# One explicit table per family: per-layer tensors (suffix after `model.layers.{i}.`).
LAYER_TABLES = {
    "llama": _LLAMA_LAYER,
    "qwen2": {**_LLAMA_LAYER, **_QKV_BIAS},
    "qwen3": {**_LLAMA_LAYER, **_QK_NORM},
}
GLOBAL_TABLE = {
    "model.embed_tokens.weight": (("embed_tokens", "embedding"), "copy"),
    "model.norm.weight": (("norm", "scale"), "copy"),
    "lm_head.weight": (("lm_head", "kernel"), "dense"),
}


def layer_table(cfg: ModelConfig) -> dict:
    table = dict(LAYER_TABLES[cfg.family])
    if cfg.family != "qwen2" and cfg.attention_bias:
        table.update(_QKV_BIAS)
    return table


def read_config(path: str) -> dict:
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isdir(path) or not os.path.isfile(cfg_file):
        raise ModelLoadError(
            f"{path!r} is not a model checkpoint: expected a folder with config.json and *.safetensors "
            "(a Hugging Face checkpoint), or the embedded name 'smollm2-135m-instruct'")
    try:
        with open(cfg_file) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{cfg_file}: unreadable config.json ({e})") from None


def open_weights(path: str) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint folder as memory maps, following the shard index if any."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not os.path.isfile(os.path.join(path, f))]
        if missing:
            raise ModelLoadError(f"{path}: missing safetensors shard(s) {missing} listed in "
                                 "model.safetensors.index.json; re-download or re-export the checkpoint")
    else:
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if not files:
            raise ModelLoadError(f"{path}: no *.safetensors weights found (zeroplay reads safetensors only; "
                                 "convert .bin checkpoints with transformers' save_pretrained)")
    tensors = {}
    for f in files:
        try:
            tensors.update(open_safetensors(os.path.join(path, f)))
        except SafetensorsError as e:
            raise ModelLoadError(str(e)) from None
    return tensors


def _set(tree, path, value):
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def hf_to_getters(cfg: ModelConfig, tensors: dict) -> dict:
    """{flax path: (shape, getter(index) -> np.ndarray)} for lazy, sliceable reads."""
    def need(name):
        if name not in tensors:
            raise ModelLoadError(f"checkpoint is missing tensor {name!r} required by a {cfg.family} model")
        return tensors[name]

    out = {}
    for name, (path, kind) in GLOBAL_TABLE.items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        view = _TRANSFORMS[kind][0](need(name), cfg)
        out[path] = (view.shape, lambda idx, v=view: np.asarray(v[idx]))
    for suffix, (path, kind) in layer_table(cfg).items():
        views = [_TRANSFORMS[kind][0](need(f"model.layers.{i}.{suffix}"), cfg) for i in range(cfg.num_layers)]
        if cfg.scan_layers:
            shape = (cfg.num_layers,) + views[0].shape

            def getter(idx, views=views):
                idx = tuple(idx) + (slice(None),) * (len(views[0].shape) + 1 - len(idx))
                return np.stack([views[i][idx[1:]] for i in range(len(views))[idx[0]]])
            out[("layers",) + path] = (shape, getter)
        else:
            for i, v in enumerate(views):
                out[(f"layers_{i}",) + path] = (v.shape, lambda idx, v=v: np.asarray(v[idx]))
    return out


def build_params(cfg: ModelConfig, getters: dict, shardings=None):
    """Materialise params from lazy getters, each directly with its sharding when given."""
    dtype = np.dtype(cfg.param_dtype)
    params: dict = {}
    for path, (shape, getter) in getters.items():
        if shardings is None:
            arr = jnp.asarray(getter((slice(None),) * len(shape)).astype(dtype))
        else:
            sh = _get(shardings, path)
            arr = jax.make_array_from_callback(tuple(shape), sh, lambda idx, g=getter: g(idx).astype(dtype))
        _set(params, path, arr)
    return params


def load_hf(path: str, *, dtype=jnp.float32, param_dtype=None, scan_layers: bool = True,
            remat: str = "none", shardings=None, config_overrides: dict | None = None):
    """(Decoder, params) from a Hugging Face checkpoint folder.

    shardings: None (every tensor on the default device), or a function
    `(abstract_params, logical_axes) -> tree of jax.sharding.Sharding` (both trees like params:
    ShapeDtypeStructs, PartitionSpecs of logical axis names); each tensor is then built directly
    with its sharding, every device reading only its own slice of the mapped file.
    `zeroplay.parallel.param_sharding_fn(mesh, rules)` is one.
    """
    hf_cfg = read_config(path)
    dtype = resolve_dtype(dtype)
    try:
        cfg = ModelConfig.from_hf(hf_cfg, dtype=dtype, param_dtype=resolve_dtype(param_dtype or dtype),
                                  scan_layers=scan_layers, remat=remat, **(config_overrides or {}))
    except UnsupportedModelError as e:
        raise ModelLoadError(f"{path}: {e}") from None
    getters = hf_to_getters(cfg, open_weights(path))
    if shardings is not None:
        shardings = shardings(abstract_params(cfg), logical_axes(cfg))
    return Decoder(cfg), build_params(cfg, getters, shardings)


def params_to_hf(cfg: ModelConfig, params, dtype=None) -> dict[str, np.ndarray]:
    """{HF name: numpy array} for a param tree (gathered to the host)."""
    def host(x):
        a = np.asarray(jax.device_get(x))
        return a.astype(dtype) if dtype is not None else a

    out = {}
    for name, (path, kind) in GLOBAL_TABLE.items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        out[name] = np.ascontiguousarray(_TRANSFORMS[kind][1](host(_get(params, path)), cfg))
    for suffix, (path, kind) in layer_table(cfg).items():
        for i in range(cfg.num_layers):
            w = host(_get(params, ("layers",) + path))[i] if cfg.scan_layers else host(
                _get(params, (f"layers_{i}",) + path))
            out[f"model.layers.{i}.{suffix}"] = np.ascontiguousarray(_TRANSFORMS[kind][1](w, cfg))
    return out


def save_hf(model_or_cfg, params, out_dir: str, *, max_shard_bytes: int = 4 << 30, dtype=None) -> None:
    """Write config.json and safetensors (sharded with an index above `max_shard_bytes`)."""
    cfg = model_or_cfg.cfg if isinstance(model_or_cfg, Decoder) else model_or_cfg
    os.makedirs(out_dir, exist_ok=True)
    tensors = params_to_hf(cfg, params, dtype)
    hf = cfg.to_hf()
    if dtype is not None:
        hf["torch_dtype"] = "bfloat16" if np.dtype(dtype).name == "bfloat16" else np.dtype(dtype).name
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    shards, cur, size = [], {}, 0
    for name in sorted(tensors):
        if cur and size + tensors[name].nbytes > max_shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[name] = tensors[name]
        size += tensors[name].nbytes
    shards.append(cur)
    if len(shards) == 1:
        save_safetensors(shards[0], os.path.join(out_dir, "model.safetensors"), {"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_safetensors(shard, os.path.join(out_dir, fname), {"format": "pt"})
        weight_map.update({k: fname for k in shard})
    total = sum(t.nbytes for t in tensors.values())
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

