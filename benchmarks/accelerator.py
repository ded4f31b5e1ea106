"""The accelerator benchmarks in one run: decode tokens/s, train-step MFU and one self-play step.

    python benchmarks/accelerator.py --out accelerator.json                  # every part
    python benchmarks/accelerator.py --parts decode --batches 64,256

Written for a GPU (issues #15 item 7 and #16 item 4); it runs anywhere JAX does (use small
--batches on a CPU). Every model is random with the shape of a real one (no eos: every row
generates all its tokens, so the work equals a real model's at the same lengths):
  smollm2-135m  SmolLM2-135M-Instruct (llama, hidden 576, 30 layers, 9 heads / 3 KV, vocab 49152)
  qwen2.5-0.5b  Qwen2.5-0.5B (qwen2, hidden 896, 24 layers, 14 heads / 2 KV, vocab 151936)
Parts:
  machine  device kind; bf16 matmul rate (8192^3, best of 10) and copy bandwidth (1 GiB, read +
           written), the ceilings of the rooflines below.
  decode   `generate` on the XLA decode step (what GPUs and TPUs run), bf16 params and compute,
           prompt 128, 256 new tokens, temperature 1, at each batch; after a warm-up call
           (compilation), the best of --reps. Roofline: per decode step, bytes read (every weight
           once, plus the live KV cache) over the copy bandwidth; the prefill is included in the
           timing, so the measured rate is below the decode-only roofline.
  train    the GRPO train step (zeroplay.rl.train_step), float32 params and optimizer state, bf16
           compute, no remat, batch x seq tokens (prompt 128); MFU = (6 * params * tokens +
           attention) / step time, against the bf16 dense peak given by --peak_tflops (H100/H200
           SXM datasheet: 989) and against the matmul rate measured here.
  step     two steps of `configs/azr.py` (its embedded-model settings) with the smollm2-135m
           shape (random, byte tokenizer, bf16 compute, prompts cut to --step_prompt bytes) through
           `zeroplay.loop.run`; the second step's stage seconds (the first
           compiles). A random model proposes nothing valid, so `verify` is near zero here.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from zeroplay.models import ModelConfig, init_params
from zeroplay.rl.optim import PolicyConfig
from zeroplay.rl.train_step import create_state, make_train_step
from zeroplay.sampling import generate

SHAPES = {
    "smollm2-135m": dict(family="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                         num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100000.0, tie_word_embeddings=True,
                         rms_norm_eps=1e-5, max_position_embeddings=8192),
    "qwen2.5-0.5b": dict(family="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=24,
                         num_heads=14, num_kv_heads=2, rope_theta=1e6, tie_word_embeddings=True, attention_bias=True,
                         rms_norm_eps=1e-6, max_position_embeddings=32768),
}


def best_time(fn, reps: int) -> float:
    fn()  # warm-up (compilation)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> dict:
    dev = jax.devices()[0]
    n = 8192 if dev.platform != "cpu" else 1024
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.bfloat16)
    mm = jax.jit(lambda x: x @ x)
    t_mm = best_time(lambda: mm(a).block_until_ready(), 10)
    x = jnp.ones((2 ** 28,), jnp.float32)  # 1 GiB
    inc = jax.jit(lambda v: v + 1)
    t_cp = best_time(lambda: inc(x).block_until_ready(), 10)
    return {"platform": dev.platform, "device_kind": dev.device_kind, "devices": jax.device_count(),
            "jax": jax.__version__, "host": platform.node(), "bf16_matmul_tflops": 2 * n ** 3 / t_mm / 1e12,
            "copy_tb_s": 2 * x.nbytes / t_cp / 1e12}


def decode_roofline(cfg: ModelConfig, batch: int, prompt: int, new: int, bw: float) -> float:
    """Decode-only tokens/s bound by bytes (bf16 weights read once per step, plus the KV cache)."""
    ctx = prompt + new / 2
    cache = 2 * 2 * cfg.num_layers * batch * ctx * cfg.num_kv_heads * cfg.dim_per_head
    return batch / ((2 * cfg.num_params() + cache) / bw)


def decode(shapes, batches, reps: int, bw: float, prompt: int = 128, new: int = 256) -> list[dict]:
    rows = []
    for name in shapes:
        cfg = ModelConfig(**SHAPES[name], dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
        model, params = init_params(cfg, jax.random.PRNGKey(0))
        rng = np.random.default_rng(0)
        for b in batches:
            prompts = [list(map(int, r)) for r in rng.integers(0, cfg.vocab_size, (b, prompt))]

            def once():
                out = generate(model, params, prompts, max_new_tokens=new, temperature=1.0,
                               rng=jax.random.PRNGKey(1), decode_kernel="xla")
                assert int(np.min(out.lengths)) == new
            t0 = time.perf_counter()
            once()
            first = time.perf_counter() - t0
            t = best_time(once, reps)
            row = {"model": name, "batch": b, "prompt": prompt, "new": new, "seconds": t, "first_call_s": first,
                   "tok_s": b * new / t, "roofline_tok_s": decode_roofline(cfg, b, prompt, new, bw)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def train(shapes, batch: int, seq: int, reps: int, peak: float, measured: float, prompt: int = 128) -> list[dict]:
    rows = []
    for name in shapes:
        cfg = ModelConfig(**SHAPES[name], dtype=jnp.bfloat16, param_dtype=jnp.float32)
        model, params = init_params(cfg, jax.random.PRNGKey(0))
        rng = np.random.default_rng(0)
        mask = np.zeros((batch, seq), np.float32)
        mask[:, prompt:] = 1
        data = dict(tokens=jnp.asarray(rng.integers(0, cfg.vocab_size, (batch, seq)), jnp.int32),
                    attention_mask=jnp.ones((batch, seq), jnp.float32),
                    positions=jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch, seq)),
                    loss_mask=jnp.asarray(mask), old_logprobs=jnp.asarray(np.where(mask > 0, -10.8, 0.0), jnp.float32),
                    advantages=jnp.asarray(rng.normal(size=batch), jnp.float32))
        pc = PolicyConfig(lr=1e-6, compute_dtype="bfloat16")
        step = make_train_step(model, pc)
        holder = {"s": create_state(params, pc)}

        def once():
            holder["s"], m = step(holder["s"], data)
            jax.block_until_ready(holder["s"])
        t = best_time(once, reps)
        tokens = batch * seq
        attention = 3 * 2 * 2 * seq * cfg.num_heads * cfg.dim_per_head * cfg.num_layers * tokens
        flops = 6 * cfg.num_params() * tokens + attention
        row = {"model": name, "batch": batch, "seq": seq, "step_s": t, "tokens_s": tokens / t,
               "tflops": flops / t / 1e12, "mfu_peak": flops / t / peak, "mfu_measured": flops / t / measured}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def selfplay_step(new_tokens: int, batch_per_task_role: int, prompt_tokens: int) -> dict:
    import importlib.util
    import os

    from zeroplay.loop import run
    from zeroplay.runconfig import parse

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "azr.py")
    spec = importlib.util.spec_from_file_location("azr_config", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()  # the embedded model's settings: remat, micro-batches of 4, LM head in chunks
    p = c.policies.policy
    p.model.update(name="random", shape=dict(SHAPES["smollm2-135m"], vocab_size=258), tokenizer="byte",
                   dtype="bfloat16")
    p.train.compute_dtype = "bfloat16"
    p.sampling.max_new_tokens = new_tokens
    p.sampling.max_prompt_tokens = prompt_tokens
    c.loop.progress = False
    c.game.batch_per_task_role = batch_per_task_role
    c.game.learnability_samples = 4
    c.steps = 2
    with tempfile.TemporaryDirectory() as wd:
        rows = run(parse(c), wd, log=lambda *a: None)
    last = {k: v for k, v in rows[-1].items() if k.startswith("time/") or k.endswith("reward_mean")}
    print(json.dumps({"step": last}), flush=True)
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="machine,decode,train,step")
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-0.5b")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--train_batch", type=int, default=16)
    ap.add_argument("--train_seq", type=int, default=1024)
    ap.add_argument("--peak_tflops", type=float, default=989.0)
    ap.add_argument("--step_tokens", type=int, default=256)
    ap.add_argument("--step_batch", type=int, default=16)
    ap.add_argument("--step_prompt", type=int, default=1536)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    parts, models = a.parts.split(","), a.models.split(",")
    res = {"machine": machine()}
    print(json.dumps(res["machine"]), flush=True)
    bw = res["machine"]["copy_tb_s"] * 1e12
    if "decode" in parts:
        res["decode"] = decode(models, [int(b) for b in a.batches.split(",")], a.reps, bw)
    if "train" in parts:
        res["train"] = train(models, a.train_batch, a.train_seq, a.reps, a.peak_tflops * 1e12,
                             res["machine"]["bf16_matmul_tflops"] * 1e12)
    if "step" in parts:
        res["step"] = selfplay_step(a.step_tokens, a.step_batch, a.step_prompt)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
