"""The CPU kernel's thread team under stress (zeroplay/kernels/cpu_decode.cc, issue #9).

The team before the fix let a late worker of one job claim an item of the next and run it with the
next job's function and context: the item ran twice (a residual added twice) and Run could return
while it still ran. On the kernel it showed as 6 different results in 100,000 decode steps with
16 threads on 2 cores, and a segfault in about one run in four of 8,000 `generate` calls.

- `tests/cpu_team_stress.cc` drives the team directly (built here from the kernel source) with
  random preemptions at any instruction (per-thread timer signals whose handler yields the core),
  more threads than cores, and checks every job: each item once, none running after Run returns,
  none with a dead context; then the kernel's matmul on the team bitwise against a serial one, and
  a forked child. The team before the fix failed it in every 3 s run (3 to 28 violations).
- The same driver under ThreadSanitizer (when the compiler has it), which flags the old team's
  unsynchronised job fields on the first job regardless of timing.
- The decode step itself, called many times on fixed inputs with 16 threads, bitwise repeatable.

Run as a script, `python tests/test_cpu_kernel_race.py decode [--calls N] [--source cpu_decode.cc]`
prints the decode-stress result as JSON (with `--source`, of another kernel source, e.g. the old
one, built into $ZEROPLAY_CACHE).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import zeroplay.kernels as kernels

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("cpu_team_stress.cc")
COMMON = ["-std=c++17", "-mavx2", "-mfma", "-pthread", "-w"]
BUILDS = {"opt": ["-O2", *COMMON], "tsan": ["-O1", "-g", "-fsanitize=thread", *COMMON]}

pytestmark = pytest.mark.skipif(not kernels.cpu_decode_available(),
                                reason=f"CPU kernel unavailable: {kernels.cpu_decode_unavailable_reason()}")


def _build(kind: str) -> tuple[Path | None, str]:
    """(binary, '') or (None, the compiler's first error line); cached by everything that goes in."""
    import jax.ffi

    cxx = kernels._compiler()
    if cxx is None:
        return None, "no C++ compiler"
    source = kernels._SOURCE
    flags = BUILDS[kind] + [f"-I{source.parent}", f"-I{jax.ffi.include_dir()}"]
    key = hashlib.sha256(HARNESS.read_bytes() + source.read_bytes() + " ".join(flags + [cxx]).encode()).hexdigest()[:16]
    out = kernels._cache_dir() / "tests" / f"cpu_team_stress-{kind}-{key}"
    if out.exists():
        return out, ""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cxx, *flags, str(HARNESS), "-o", tmp], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines()[-1:] or ["?"]
            return None, lines[0]
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out, ""


@pytest.fixture(scope="module")
def harness():
    with ThreadPoolExecutor(2) as pool:  # both builds at once: one per core
        return dict(zip(BUILDS, pool.map(_build, BUILDS)))


def _run(binary: Path, threads: int | None, *args, env=None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env.pop("ZEROPLAY_CPU_KERNEL_THREADS", None)
    if threads is not None:
        env["ZEROPLAY_CPU_KERNEL_THREADS"] = str(threads)
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=240, env=env)


def _fields(stdout: str) -> dict:
    return dict(re.findall(r"(\w+)=(\S+)", stdout))


# 16 threads on however many cores (2 on the build machine), and 3: a caller and two workers
# competing for the cores. The timers stop threads at random instructions every ~200 us.
@pytest.mark.parametrize("threads,seconds", [(16, 4), (3, 3)])
def test_team_stress_oversubscribed(harness, threads, seconds):
    binary, why = harness["opt"]
    assert binary, f"the stress driver does not build: {why}"
    proc = _run(binary, threads, seconds, 1, 200, 6, 300)
    got = _fields(proc.stdout)
    assert proc.returncode == 0 and got.get("violations") == "0", proc.stdout + proc.stderr[-2000:]
    assert int(got["threads"]) == threads and int(got["jobs"]) > 1000


def test_team_default_size_is_the_cpus_this_process_may_use(harness):
    binary, why = harness["opt"]
    assert binary, f"the stress driver does not build: {why}"
    cpus = sorted(os.sched_getaffinity(0))
    got = _fields(_run(binary, None, 0.2, 1, 0, 6, 5).stdout)
    assert int(got["threads"]) == len(cpus) and got["violations"] == "0"
    # Pinned to one CPU (by a small Python that sets its affinity and execs the driver: no fork
    # of this multithreaded process): a team of one, which runs every job serially.
    pin = f"import os, sys; os.sched_setaffinity(0, {{{cpus[0]}}}); os.execv(sys.argv[1], sys.argv[1:])"
    env = {k: v for k, v in os.environ.items() if k != "ZEROPLAY_CPU_KERNEL_THREADS"}
    one = subprocess.run([sys.executable, "-c", pin, str(binary), "0.2", "1", "0", "6", "5"], capture_output=True,
                         text=True, timeout=120, env=env)
    got = _fields(one.stdout)
    assert int(got["threads"]) == 1 and got["violations"] == "0", one.stdout + one.stderr


def test_team_under_thread_sanitizer(harness):
    binary, why = harness["tsan"]
    if binary is None:
        pytest.skip(f"the compiler cannot build with -fsanitize=thread: {why}")
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66")
    for threads, seconds, matmuls in ((4, 1.5, 30), (16, 1.0, 10)):
        proc = _run(binary, threads, seconds, 2, 200, 6, matmuls, env=env)
        if "FATAL: ThreadSanitizer" in proc.stderr and "WARNING: ThreadSanitizer" not in proc.stderr:
            pytest.skip("ThreadSanitizer cannot run here: " + proc.stderr.strip().splitlines()[0])
        assert "ThreadSanitizer" not in proc.stderr and proc.returncode == 0, proc.stdout + proc.stderr[-6000:]
        assert _fields(proc.stdout).get("violations") == "0", proc.stdout


def test_decode_step_bitwise_repeatable_with_16_threads():
    env = dict(os.environ, ZEROPLAY_CPU_KERNEL_THREADS="16", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device: the sampler's placement
    proc = subprocess.run([sys.executable, __file__, "decode", "--calls", "3000"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["threads"] == 16 and got["calls"] == 3000
    assert got["mismatches"] == 0, got


def decode_stress(calls: int, per_dispatch: int = 100) -> dict:
    """The fused decode step `calls` times on fixed inputs (a small Qwen2 at batch 5, both layers'
    matmuls with partial panels, attention, the LM head), compared bitwise with its first result,
    `per_dispatch` calls per jitted loop so the calls run back to back as in the sampler."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from zeroplay.models import ModelConfig, init_cache, init_params
    from zeroplay.sampling import cpu_decode

    cfg = ModelConfig(family="qwen2", vocab_size=203, hidden_size=96, intermediate_size=136, num_layers=2,
                      num_heads=6, num_kv_heads=2, attention_bias=True, tie_word_embeddings=False)
    _, params = init_params(cfg, jax.random.PRNGKey(3))
    params = jax.tree.map(lambda x: x + 0.1 * jnp.sin(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape)), params)
    batch, s, slot = 5, 40, 29
    rs = np.random.RandomState(0)
    cache = cpu_decode.stack_cache({n: jnp.asarray(rs.randn(*c.shape).astype(np.float32))
                                    for n, c in init_cache(cfg, batch, s).items()})
    kv_mask = jnp.asarray(rs.rand(batch, s) > 0.4).at[:, slot].set(True)
    tokens = jnp.asarray(rs.randint(0, cfg.vocab_size, batch), jnp.int32)
    positions = jnp.asarray(rs.randint(0, 60, batch), jnp.int32)
    packed = jax.jit(lambda p: cpu_decode.pack_weights(p, cfg))(params)

    def step(c):
        logits, (k, v) = cpu_decode.decode_step(cfg, packed, c, tokens, positions, jnp.int32(slot), kv_mask)
        return logits, k, v

    ref = jax.jit(step)(cache)

    def body(i, carry):  # the cache is the loop's state, as in the sampler: each call a new input
        c, count, worst = carry
        logits, k, v = step(c)
        bad = jnp.any(logits != ref[0]) | jnp.any(k != ref[1]) | jnp.any(v != ref[2])
        worst = jnp.maximum(worst, jnp.max(jnp.abs(logits - ref[0])))
        return (k, v), count + bad.astype(jnp.int32), worst

    # Rewriting each row's slot with the same k, v leaves the cache as the first call left it, so
    # every call sees the same inputs.
    loop = jax.jit(lambda c: jax.lax.fori_loop(0, per_dispatch, body, (c, jnp.int32(0), jnp.float32(0)))[1:])
    cache = ref[1:]
    loop(cache)  # compile
    mismatches, worst, done, start = 0, 0.0, 0, time.perf_counter()
    while done < calls:
        count, diff = loop(cache)
        mismatches, worst, done = mismatches + int(count), max(worst, float(diff)), done + per_dispatch
    return {"calls": done, "mismatches": mismatches, "max_abs_diff": worst, "seconds": time.perf_counter() - start,
            "threads": int(os.environ.get("ZEROPLAY_CPU_KERNEL_THREADS", "0")) or len(os.sched_getaffinity(0))}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["decode"])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--source", help="another kernel source to build and run (e.g. an old cpu_decode.cc)")
    args = ap.parse_args()
    if args.source:
        kernels._SOURCE = Path(args.source).resolve()
    assert kernels.cpu_decode_available(), kernels.cpu_decode_unavailable_reason()
    print(json.dumps(decode_stress(args.calls)))
