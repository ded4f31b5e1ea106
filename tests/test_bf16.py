"""bf16, the accelerator default, through the whole path (issue #15 item 6), on a tiny model on the CPU.

bf16 keeps 8 significant bits: rounding to nearest moves a value by at most EPS = 2^-8 of its
magnitude (half the spacing 2^-7 of bf16 numbers in [1, 2)). The path under test:
- the sampler's XLA decode step with bf16 params and bf16 compute (the fused CPU kernel is float32
  only and must never be chosen for a bf16 model), returning float32 logprobs from float32 logits;
- the train step with `compute_dtype="bfloat16"`: bf16 matmuls, float32 master params and AdamW
  state, logits accumulated in float32, the loss in float32;
- every full-size config variant runs bf16 (model.dtype and train.compute_dtype).

The tiny model (Qwen2: q/k/v biases, grouped-query heads) starts from the ordinary init and is
rescaled to the magnitudes of a trained LM: embeddings std 1, projections std 1 / sqrt(fan in),
biases std 0.1, and the LM head scaled so the logits have std ~3 (measured: std 3.0, max |logit|
14, median top-2 margin 0.59). With the std-0.02 init the logits would be ~1e-2 wide and any
rounding would flip the argmax: a degenerate test of nothing.
"""
import importlib.util
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zeroplay import runconfig
from zeroplay.models import Decoder, ModelConfig, init_params
from zeroplay.rl import PolicyConfig, create_state, make_train_step, policy_loss, token_logprobs
from zeroplay.sampling import cpu_decode, generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 2.0 ** -8  # bf16 relative rounding step (8 significant bits)
BF16 = jnp.bfloat16
CFG = ModelConfig(family="qwen2", vocab_size=384, hidden_size=64, intermediate_size=128, num_layers=2,
                  num_heads=4, num_kv_heads=2, attention_bias=True, max_position_embeddings=128)


def _rescale(path, x):
    names = [getattr(k, "key", str(k)) for k in path]
    leaf, module = names[-1], names[-2]
    if leaf == "embedding":
        return x / 0.02
    if leaf == "kernel" and module == "lm_head":
        return x / 0.02 * 3.0 / np.sqrt(CFG.hidden_size)
    if leaf == "kernel":
        fan_in = CFG.intermediate_size if module == "down_proj" else CFG.hidden_size
        return x / 0.02 / np.sqrt(fan_in)
    if leaf == "bias":
        return 0.1 * jax.random.normal(jax.random.PRNGKey(zlib.crc32(module.encode())), x.shape, x.dtype)
    return x


@pytest.fixture(scope="module")
def tiny():
    """(float32 model, float32 params, bf16 model, the same params rounded to bf16)."""
    model32, params = init_params(CFG, jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map_with_path(_rescale, params)
    model16 = Decoder(CFG.replace(dtype=BF16, param_dtype=BF16))
    return model32, params, model16, jax.tree.map(lambda x: x.astype(BF16), params)


def test_bf16_greedy_tokens_agree_with_float32(tiny):
    """Greedy decoding of 8 ragged prompts x 32 new tokens by the bf16 model (bf16 params and
    compute, the XLA decode step): at >= 95% of the 256 positions its token is the float32 model's
    greedy token (same weights) given the same prefix, i.e. the argmax of the float32 logits over
    prompt + the bf16 tokens before it. Position by position on a shared prefix: once two free
    runs part, their later positions compare different contexts, so one near-tie (a top-2 margin
    under bf16's error, ~EPS x the logit scale) early in a row would count its whole tail.
    Measured: 0.992 (2 of 256 differ). The bf16 model never takes the float32-only CPU kernel,
    and its logprobs are float32."""
    model32, p32, model16, p16 = tiny
    assert cpu_decode.kernel_supports(model16.cfg) != ""
    assert not cpu_decode.use_cpu_kernel("auto", model16.cfg, None)
    with pytest.raises(ValueError, match="bfloat16"):
        cpu_decode.use_cpu_kernel("cpu", model16.cfg, None)
    rng = np.random.default_rng(0)
    prompts = [[int(t) for t in rng.integers(0, CFG.vocab_size, size=n)] for n in rng.integers(4, 12, size=8)]
    new = 32
    out = generate(model16, p16, prompts, max_new_tokens=new, temperature=0.0, decode_kernel="auto")
    assert out.logprobs.dtype == np.float32 and np.all(np.isfinite(out.logprobs))
    assert np.all(out.lengths == new)
    got = out.tokens[:, 0]
    assert max(len(set(r.tolist())) for r in got) > 8  # not a one-token loop
    # Right-padded prompt + completion: causal attention, so the padding changes no earlier logit.
    width = max(map(len, prompts)) + new
    seqs = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        seqs[i, :len(p) + new] = p + got[i].tolist()
    logits = np.asarray(jax.jit(lambda p, x: model32.apply({"params": p}, x))(p32, jnp.asarray(seqs)))
    want = np.stack([logits[i, len(p) - 1:len(p) - 1 + new].argmax(-1) for i, p in enumerate(prompts)])
    agree = float(np.mean(want == got))
    assert agree >= 0.95, (agree, want, got)


def test_bf16_sampled_logprobs_match_teacher_forced(tiny):
    """Sampled (temperature 1) bf16 logprobs against the train step's teacher-forced logprobs
    (`zeroplay.rl.token_logprobs`, compute dtype bf16) of the same tokens under the same bf16
    model: the two paths compute the same function in different orders (one token at a time over
    a KV cache against the whole sequence at once), so each bf16 rounding may land one ulp apart and
    the difference propagates through the layers to the logits. Tolerance, with S the largest
    |logit| of the batch: max |diff| <= 4 EPS S, mean |diff| <= EPS S. Measured: S = 12.75
    (bounds 0.199 and 0.050), max 0.061, mean 0.013; the float32 paths agree to 1e-5."""
    _, _, model16, p16 = tiny
    rng = np.random.default_rng(1)
    prompts = rng.integers(0, CFG.vocab_size, size=(4, 8)).tolist()
    out = generate(model16, p16, prompts, max_new_tokens=32, num_samples=2, temperature=1.0,
                   rng=jax.random.PRNGKey(1), decode_kernel="auto")
    assert np.all(out.lengths == 32)
    tokens = np.concatenate([np.repeat(np.asarray(prompts), 2, axis=0), out.tokens.reshape(8, 32)], axis=1)
    lp, _ = jax.jit(lambda p, t: token_logprobs(model16, p, t))(p16, jnp.asarray(tokens))
    assert lp.dtype == jnp.float32
    teacher = np.asarray(lp)[:, 8:]
    sampled = out.logprobs.reshape(8, 32)
    assert sampled.dtype == np.float32
    scale = float(jnp.max(jnp.abs(model16.apply({"params": p16}, jnp.asarray(tokens)))))
    diff = np.abs(sampled - teacher)
    assert diff.max() <= 4 * EPS * scale, (diff.max(), scale)
    assert diff.mean() <= EPS * scale, (diff.mean(), scale)
    assert sampled.min() < -3.0  # sampling reached unlikely tokens, not only the argmax


def test_bf16_train_step_keeps_float32_state_and_loss(tiny):
    """One train step with compute_dtype bf16 on float32 params (KL to given reference logprobs and
    an entropy term, so the loss depends on the logprobs): params and AdamW moments stay float32,
    the loss is float32 and within 4 EPS (1 + |loss|) of the float32 loss of the same batch
    (`policy_loss` on the float32 model's logprobs and entropies), and the update is finite and
    AdamW's first step (|delta| <= lr). Measured: 0.2594 against 0.2563 (tolerance 0.0196)."""
    model32, p32, _, _ = tiny
    b, t, prompt = 4, 24, 8
    rng = np.random.default_rng(2)
    tokens = jnp.asarray(rng.integers(0, CFG.vocab_size, size=(b, t)), jnp.int32)
    lp32, ent32 = jax.jit(lambda p, x: token_logprobs(model32, p, x, with_entropy=True))(p32, tokens)
    noise = lambda s: jnp.asarray(rng.normal(0, s, size=(b, t)), jnp.float32)
    mask = jnp.zeros((b, t), jnp.float32).at[:, prompt:].set(1.0)
    batch = dict(tokens=tokens, loss_mask=mask, advantages=jnp.asarray(rng.normal(size=b), jnp.float32),
                 old_logprobs=lp32 + noise(0.1), ref_logprobs=lp32 + noise(0.1))
    cfg = PolicyConfig(lr=1e-3, kl_coef=0.05, entropy_coef=0.01, compute_dtype="bfloat16")
    loss32, _ = policy_loss(lp32, batch["old_logprobs"], batch["advantages"], mask,
                            ref_logprobs=batch["ref_logprobs"], kl_coef=cfg.kl_coef, entropy=ent32,
                            entropy_coef=cfg.entropy_coef)
    state, metrics = make_train_step(model32, cfg)(create_state(p32, cfg), batch)
    for leaf in jax.tree.leaves(state.params):
        assert leaf.dtype == jnp.float32
    floats = [x for x in jax.tree.leaves(state.opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.float32 for x in floats)
    assert metrics["loss"].dtype == jnp.float32 and float(metrics["finite"]) == 1.0 and int(state.step) == 1
    l16, l32 = float(metrics["loss"]), float(loss32)
    assert abs(l16 - l32) <= 4 * EPS * (1 + abs(l32)), (l16, l32)
    delta = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(p32)))
    assert 0 < delta <= 1.01 * cfg.lr


def _load(name, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_bf16_{name}", os.path.join(ROOT, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.get_config(arg)


def _full_size_variants():
    """(config, variant) for every full-size variant, as tests/test_runconfig.py,
    test_two_policy_configs.py and test_label_free.py enumerate them."""
    from zeroplay.games import label_free as lf

    out = []
    for name in ("azr", "pasodoble", "sqlm", "r_zero", "cpmobius"):
        mod = _load(name)[0]
        out += [(name, f"{m}-{w}") for m in mod.FULL_SIZE for w in mod.MESHES]
    for name in ("co_rewarding_i", "co_rewarding_ii", "ttrl", "rent", "intuitor"):
        out += [(name, f"{m}-{w}") for m in lf.FULL_SIZE for w in lf.MESHES]
    return out


def test_full_size_configs_use_bf16():
    """Every full-size variant of every config samples and trains in bf16 (model.dtype and
    train.compute_dtype), every policy of it."""
    variants = _full_size_variants()
    assert len(variants) >= 20
    for name, variant in variants:
        cfg = runconfig.parse(_load(name, variant)[1])
        for pol_name, pol in cfg.policies.items():
            where = f"{name} {variant} {pol_name}"
            assert pol.model.dtype == "bfloat16", where
            assert pol.train.compute_dtype == "bfloat16", where
