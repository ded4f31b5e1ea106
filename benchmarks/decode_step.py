"""One SmolLM2-135M decode step: the XLA step against the fused CPU kernel, side by side.

    python benchmarks/decode_step.py                 # batch 8 and 32
    python benchmarks/decode_step.py --batch 1,8,32,64

Times one decode step (30 layers + LM head, 160 cache slots of which 101 live) with the cache
donated, as inside the sampler's loop, for `decode_step.py` (XLA operations) and `cpu_decode.py`
(one FFI call). Prints, in the same run, the machine's copy bandwidth and 2048^2 matmul rate,
and for the kernel the weight read rate (bytes of weights / step time) and matmul FLOP rate.
"""
from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp

from machine import machine_rates
from zeroplay.models import ModelConfig, init_cache, init_params
from zeroplay.sampling import cpu_decode
from zeroplay.sampling.decode_step import decode_step, head_kernel, split_cache, unstack_layers

SMOLLM2 = ModelConfig(family="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                      num_heads=9, num_kv_heads=3, tie_word_embeddings=True)
SLOTS, SLOT = 160, 100


def best_of(fn, state, n: int) -> tuple[float, object]:
    state = jax.block_until_ready(fn(state))  # compile
    times = []
    for _ in range(n):
        t = time.perf_counter()
        state = jax.block_until_ready(fn(state))
        times.append(time.perf_counter() - t)
    return min(times), state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="8,32")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    cfg = SMOLLM2
    _, params = init_params(cfg, jax.random.PRNGKey(0))
    flops_s, bw = machine_rates()
    h, f, d = cfg.hidden_size, cfg.intermediate_size, cfg.dim_per_head
    matmul_params = cfg.num_layers * (h * d * (cfg.num_heads + 2 * cfg.num_kv_heads) + cfg.num_heads * d * h
                                      + 3 * h * f) + h * cfg.vocab_size
    print(f"jax {jax.__version__}; measured: matmul {flops_s / 1e9:.0f} GFLOP/s (2048^2 float32), copy bandwidth "
          f"{bw / 1e9:.1f} GB/s (read + written); weights per step {4 * matmul_params / 1e6:.0f} MB")
    print("| batch | XLA step | fused CPU kernel step | speed-up | kernel: weight read rate | kernel: matmul rate |")
    print("|---|---|---|---|---|---|")
    packed = jax.jit(functools.partial(cpu_decode.pack_weights, cfg=cfg))(params)
    layers = jax.jit(functools.partial(unstack_layers, cfg=cfg))(params)
    head = jax.jit(functools.partial(head_kernel, cfg=cfg))(params)
    for b in (int(x) for x in args.batch.split(",")):
        tokens = jnp.zeros((b,), jnp.int32)
        positions = jnp.full((b,), SLOT, jnp.int32)
        kv_mask = jnp.ones((b, SLOTS), bool).at[:, SLOT + 1:].set(False)
        cache = init_cache(cfg, b, SLOTS)

        @functools.partial(jax.jit, donate_argnums=(0,))
        def xla_step(c):
            return decode_step(cfg, params, layers, head, c, tokens, positions, jnp.int32(SLOT), kv_mask)[1]

        @functools.partial(jax.jit, donate_argnums=(0,))
        def kernel_step(c):
            return cpu_decode.decode_step(cfg, packed, c, tokens, positions, jnp.int32(SLOT), kv_mask)[1]

        t_xla, _ = best_of(xla_step, split_cache(cache), args.iters)
        t_k, _ = best_of(kernel_step, cpu_decode.stack_cache(cache), args.iters)
        print(f"| {b} | {t_xla * 1e3:.1f} ms | {t_k * 1e3:.1f} ms | {t_xla / t_k:.2f}x | "
              f"{4 * matmul_params / t_k / 1e9:.1f} GB/s | {2 * b * matmul_params / t_k / 1e9:.0f} GFLOP/s |")


if __name__ == "__main__":
    main()
