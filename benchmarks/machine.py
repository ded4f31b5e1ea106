"""What the benchmarks measure of the machine itself, in the same run as their figures."""
import time

import jax
import jax.numpy as jnp
import numpy as np


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def machine_rates() -> tuple[float, float]:
    """(matmul FLOP/s of a 2048^2 float32 jax matmul, copy bandwidth in bytes/s read + written)."""
    a = jnp.ones((2048, 2048), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    t = min(timed(lambda: mm(a).block_until_ready()) for _ in range(5))
    src = np.ones(64 * 2 ** 20, np.float32)  # 256 MiB
    dst = np.empty_like(src)
    np.copyto(dst, src)
    tc = min(timed(lambda: np.copyto(dst, src)) for _ in range(5))
    return 2 * 2048 ** 3 / t, 2 * src.nbytes / tc
