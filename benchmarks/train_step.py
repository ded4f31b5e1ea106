"""GRPO train step throughput and model-FLOP utilisation at SmolLM2-135M shapes.

    python benchmarks/train_step.py [--batch 16] [--seq 512] [--variants f32-mb4,bf16-mb4] [--iters 2]

Model FLOPs per step = 6 * params * tokens (forward + backward) + attention (QK^T and PV,
2 * 2 * T * heads * head_dim per token and layer, x3 for the backward pass). MFU is those FLOPs
over the step time, against the float32 matmul rate (2048^3, jitted) measured in the same run,
taking the best rate seen in the run (conservative when other processes share the cores).
A variant is `<dtype>-mb<micro_batch>[-c<chunk>]`.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from zeroplay.models import ModelConfig, init_params
from zeroplay.rl.optim import PolicyConfig
from zeroplay.rl.train_step import create_state, make_train_step

SMOLLM2_135M = ModelConfig(family="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                           num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100000.0,
                           tie_word_embeddings=True, rms_norm_eps=1e-5)


def matmul_rate(dtype=jnp.float32, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of a jitted n x n x n matmul (best of `reps`)."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def model_flops(cfg: ModelConfig, batch: int, seq: int) -> float:
    tokens = batch * seq
    attn = 3 * 2 * 2 * seq * cfg.num_heads * cfg.dim_per_head * cfg.num_layers * tokens
    return 6 * cfg.num_params() * tokens + attn


def make_batch(batch: int, seq: int, vocab: int, prompt: int):
    rng = np.random.default_rng(0)
    loss_mask = np.zeros((batch, seq), np.float32)
    loss_mask[:, prompt:] = 1
    return dict(tokens=jnp.asarray(rng.integers(0, vocab, (batch, seq)), jnp.int32),
                attention_mask=jnp.ones((batch, seq), jnp.float32),
                positions=jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch, seq)),
                loss_mask=jnp.asarray(loss_mask),
                old_logprobs=jnp.asarray(np.where(loss_mask > 0, -10.8, 0.0), jnp.float32),
                advantages=jnp.asarray(rng.normal(size=batch), jnp.float32))


def parse_variant(v: str) -> dict:
    parts = v.split("-")
    out = {"compute_dtype": {"f32": "float32", "bf16": "bfloat16"}[parts[0]], "micro_batch": None,
           "logprob_chunk": None}
    for p in parts[1:]:
        if p.startswith("mb"):
            out["micro_batch"] = int(p[2:])
        elif p.startswith("c"):
            out["logprob_chunk"] = int(p[1:])
    return out


def run_variant(model, params, batch, variant: str, iters: int) -> dict:
    pc = PolicyConfig(lr=1e-6, **parse_variant(variant))
    step = make_train_step(model, pc)
    state = create_state(params, pc)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    state, m = compiled(state, batch)  # warm-up
    jax.block_until_ready(state)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        state, m = compiled(state, batch)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
    return {"variant": variant, "compile_s": compile_s, "step_s": min(times), "steps_s": times,
            "temp_gb": getattr(mem, "temp_size_in_bytes", 0) / 1e9, "loss": float(m["loss"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--variants", default="f32-mb4,f32-mb4-c128,bf16-mb4")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--layers", type=int, default=None, help="override layer count (quick runs)")
    args = ap.parse_args()

    cfg = SMOLLM2_135M if args.layers is None else SMOLLM2_135M.replace(num_layers=args.layers)
    model, params = init_params(cfg, jax.random.PRNGKey(0))
    batch = make_batch(args.batch, args.seq, cfg.vocab_size, args.prompt)
    flops = model_flops(cfg, args.batch, args.seq)
    tokens = args.batch * args.seq
    print(f"machine: {platform.machine()} {jax.devices()[0].platform} x{len(jax.devices())}, "
          f"params {cfg.num_params() / 1e6:.1f}M, batch {args.batch} x {args.seq}, "
          f"model FLOPs/step {flops / 1e12:.2f} T")
    rows = []
    for v in args.variants.split(","):
        before = matmul_rate(jnp.float32)
        r = run_variant(model, params, batch, v, args.iters)
        after = matmul_rate(jnp.float32)
        r["matmul_f32_gflops"] = max(before, after) / 1e9
        r["matmul_bf16_gflops"] = matmul_rate(jnp.bfloat16, reps=3) / 1e9
        r["tokens_per_s"] = tokens / r["step_s"]
        r["achieved_gflops"] = flops / r["step_s"] / 1e9
        r["mfu_vs_f32_matmul"] = r["achieved_gflops"] / r["matmul_f32_gflops"]
        rows.append(r)
        print(json.dumps(r), flush=True)
    # Other processes share these 2 cores: the best matmul rate seen anywhere in the run is the
    # denominator (a conservative MFU), and each variant's own adjacent rate is shown beside it.
    peak = max(r["matmul_f32_gflops"] for r in rows)
    for r in rows:
        r["mfu_vs_f32_matmul"] = r["achieved_gflops"] / peak
    print("\n| variant | step s | tokens/s | model GFLOP/s | f32 matmul GFLOP/s | MFU | compile s | temp GB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['step_s']:.1f} | {r['tokens_per_s']:.0f} | {r['achieved_gflops']:.0f} | "
              f"{r['matmul_f32_gflops']:.0f} | {100 * r['mfu_vs_f32_matmul']:.1f}% | {r['compile_s']:.0f} | "
              f"{r['temp_gb']:.1f} |")


if __name__ == "__main__":
    main()
