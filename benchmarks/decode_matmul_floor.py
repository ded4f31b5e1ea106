"""The floor that XLA:CPU's float32 matmuls put under one SmolLM2-135M decode step.

    python benchmarks/decode_matmul_floor.py

Runs only the matmuls of a decode step (30 layers of fused qkv, o, fused gate/up, down, then the
tied LM head), with nothing else, on the real shapes and 540 MB of weights (too large for any
cache, as in the sampler). Its time is a lower bound on a decode step built from these XLA dots;
tokens/s = batch / time is an upper bound on what any XLA:CPU float32 sampler reaches here.
Also prints the copy bandwidth measured in the same run, the bytes-only roofline.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

H, F, V, L, NH, NKV, D = 576, 1536, 49152, 30, 9, 3, 64


def timed(fn, n=5):
    fn()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    rng = np.random.RandomState(0)
    mk = lambda *s: jnp.asarray(rng.standard_normal(s).astype(np.float32) * 0.02)
    layers = [dict(qkv=mk(H, (NH + 2 * NKV) * D), o=mk(NH * D, H), gate_up=mk(H, 2 * F), down=mk(F, H))
              for _ in range(L)]
    head = mk(H, V)
    nbytes = 4 * (sum(w.size for lw in layers for w in lw.values()) + head.size)

    @jax.jit
    def step(x, layers, head):
        for lw in layers:
            x = x + (x @ lw["qkv"])[:, :H] @ lw["o"]
            gu = x @ lw["gate_up"]
            x = x + (gu[:, :F] * gu[:, F:]) @ lw["down"]
            x = x * 1e-3
        return x @ head

    src = np.ones(64 * 2 ** 20, np.float32)
    dst = np.empty_like(src)
    bw = 2 * src.nbytes / timed(lambda: np.copyto(dst, src))
    print(f"weights per step: {nbytes / 1e6:.0f} MB; copy bandwidth (read + written) {bw / 1e9:.1f} GB/s; "
          f"bytes-only roofline at batch 8: {8 / (nbytes / bw):.0f} tok/s")
    print("| batch | matmul-only step | weight read rate | tok/s ceiling |")
    print("|---|---|---|---|")
    for b in (8, 32):
        x = jnp.ones((b, H), jnp.float32)
        t = timed(lambda: step(x, layers, head).block_until_ready())
        print(f"| {b} | {t * 1e3:.1f} ms | {nbytes / t / 1e9:.1f} GB/s | {b / t:.0f} |")


if __name__ == "__main__":
    main()
