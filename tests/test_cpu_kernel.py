"""The fused CPU decode kernel (zeroplay/kernels/cpu_decode.cc) against the XLA decode step, and
how the sampler chooses, builds and falls back from it (tests/test_cpu_kernel_race.py: its thread
team under stress and ThreadSanitizer)."""
import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zeroplay.kernels as kernels
from zeroplay.models import ModelConfig, init_cache, init_params
from zeroplay.sampling import cpu_decode, generate
from zeroplay.sampling.decode_step import decode_step, head_kernel, split_cache, unstack_layers
from zeroplay.sampling.logits_processing import SamplingMode
from zeroplay.sampling.sampler import _Programs

needs_kernel = pytest.mark.skipif(not kernels.cpu_decode_available(),
                                  reason=f"CPU kernel unavailable: {kernels.cpu_decode_unavailable_reason()}")
needs_compiler = pytest.mark.skipif(kernels._compiler() is None, reason="no C++ compiler")

STEP_REL_TOL = 1e-5  # max |kernel - xla| <= tol * max |xla logit|, float32

CFG = ModelConfig(family="qwen2", vocab_size=203, hidden_size=96, intermediate_size=136, num_layers=2,
                  num_heads=6, num_kv_heads=2, attention_bias=True, tie_word_embeddings=False)


def noisy_params(cfg, seed):
    model, params = init_params(cfg, jax.random.PRNGKey(seed))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return model, jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


# Batch sizes cover every row-tile split of the kernel (1-6 rows, 4 + 4, 5 + 4, groups of 8
# tiles past 48 rows); vocab 203 and FFN 136 leave partial 16-column panels; K = 136 and 96 are
# not multiples of the 128-row K block.
@needs_kernel
@pytest.mark.parametrize("batch", [1, 5, 8, 9, 13, 50])
def test_kernel_step_equals_xla_step(batch):
    model, params = noisy_params(CFG, 3)
    s, slot = 40, 29
    rs = np.random.RandomState(batch)
    cache = {n: jnp.asarray(rs.randn(*c.shape).astype(np.float32)) for n, c in init_cache(CFG, batch, s).items()}
    kv_mask = jnp.asarray(rs.rand(batch, s) > 0.4).at[:, slot].set(True)
    tokens = jnp.asarray(rs.randint(0, CFG.vocab_size, batch), jnp.int32)
    positions = jnp.asarray(rs.randint(0, 60, batch), jnp.int32)
    ref, ref_cache = jax.jit(lambda p, c: decode_step(CFG, p, unstack_layers(p, CFG), head_kernel(p, CFG),
                                                      split_cache(c), tokens, positions, slot, kv_mask))(params, cache)
    logits, (k, v) = jax.jit(lambda p, c: cpu_decode.decode_step(
        CFG, cpu_decode.pack_weights(p, CFG), cpu_decode.stack_cache(c), tokens, positions, jnp.int32(slot),
        kv_mask))(params, cache)
    ref = np.asarray(ref)
    assert np.abs(np.asarray(logits) - ref).max() <= STEP_REL_TOL * np.abs(ref).max()
    for i, (rk, rv) in enumerate(ref_cache):
        np.testing.assert_allclose(k[i], rk, atol=1e-5)
        np.testing.assert_allclose(v[i], rv, atol=1e-5)


@needs_kernel
def test_pack_layouts():
    w = jnp.asarray(np.random.RandomState(0).randn(2, 5, 37).astype(np.float32))
    panels = np.asarray(jax.jit(cpu_decode._panels)(w))
    assert panels.shape == (2, 3, 5, 16)
    want = np.pad(np.asarray(w), ((0, 0), (0, 0), (0, 11))).reshape(2, 5, 3, 16).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(panels, want)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda x: cpu_decode._panels(x, transposed=True))(
        jnp.swapaxes(w, 1, 2))), want)
    g, u = w[:, :, :32], w[:, :, 5:37]
    gu = np.asarray(jax.jit(cpu_decode._gate_up_panels)(g, u))
    assert gu.shape == (2, 4, 5, 16)
    np.testing.assert_array_equal(gu[:, 1, :, :8], np.asarray(g)[:, :, 8:16])
    np.testing.assert_array_equal(gu[:, 1, :, 8:], np.asarray(u)[:, :, 8:16])


@needs_kernel
def test_generate_same_with_and_without_kernel():
    model, params = noisy_params(CFG, 5)
    rs = np.random.RandomState(0)
    prompts = [list(rs.randint(0, CFG.vocab_size, n)) for n in (3, 11, 7)]
    kw = dict(max_new_tokens=20, num_samples=3, temperature=1.0, top_p=0.9, rng=jax.random.PRNGKey(4))
    xla = generate(model, params, prompts, decode_kernel="xla", **kw)
    cpu = generate(model, params, prompts, decode_kernel="cpu", **kw)
    np.testing.assert_array_equal(cpu.tokens, xla.tokens)
    np.testing.assert_array_equal(cpu.lengths, xla.lengths)
    np.testing.assert_allclose(cpu.logprobs, xla.logprobs, atol=1e-5)


@needs_kernel
def test_decode_kernel_choice_and_fallback(monkeypatch):
    assert cpu_decode.use_cpu_kernel("auto", CFG, None)
    assert not cpu_decode.use_cpu_kernel("xla", CFG, None)
    with pytest.raises(ValueError, match="decode_kernel must be one of"):
        cpu_decode.use_cpu_kernel("fast", CFG, None)
    with pytest.raises(ValueError, match="bfloat16"):
        cpu_decode.use_cpu_kernel("cpu", CFG.replace(dtype=jnp.bfloat16), None)
    assert not cpu_decode.use_cpu_kernel("auto", CFG.replace(dtype=jnp.bfloat16), None)
    with pytest.raises(ValueError, match="multiple of 16"):
        cpu_decode.use_cpu_kernel("cpu", CFG.replace(num_kv_heads=1, num_heads=3, hidden_size=72), None)
    # Where the kernel cannot be had, "auto" quietly takes the XLA step and "cpu" says why.
    monkeypatch.setitem(kernels._STATE, "ok", False)
    monkeypatch.setitem(kernels._STATE, "why", "no C++ compiler found (set CXX)")
    assert not cpu_decode.use_cpu_kernel("auto", CFG, None)
    with pytest.raises(ValueError, match="no C\\+\\+ compiler"):
        cpu_decode.use_cpu_kernel("cpu", CFG, None)


@needs_compiler
def test_build_failure_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "broken.cc"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(kernels, "_SOURCE", bad)
    monkeypatch.setenv("ZEROPLAY_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="compiling broken.cc failed") as err:
        kernels._build(kernels._compiler())
    assert "\n" not in str(err.value)
    left = [p.name for p in (tmp_path / "cache" / "kernels").iterdir()]
    assert len(left) == 1 and left[0].endswith(".failed")  # the cached reason; no half-written library


def _fake_compiler(tmp_path, code: int = 1):
    """A 'compiler' that logs each run and fails (or succeeds without output with code 0)."""
    log = tmp_path / "cxx.log"
    cxx = tmp_path / "fake-c++"
    cxx.write_text(f"#!/bin/sh\necho run >> {log}\necho 'fake.cc:1:1: error: no compiler here' >&2\nexit {code}\n")
    cxx.chmod(0o755)
    return str(cxx), log


def test_build_failure_cached_per_key(tmp_path, monkeypatch):
    cxx, log = _fake_compiler(tmp_path)
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("ZEROPLAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZEROPLAY_CPU_KERNEL", raising=False)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    for attempt in range(3):  # each a fresh process as far as the loader knows
        monkeypatch.setattr(kernels, "_STATE", {})
        assert not kernels.cpu_decode_available()
        why = kernels.cpu_decode_unavailable_reason()
        assert why.startswith("compiling cpu_decode.cc failed: fake.cc:1:1: error: no compiler here"), why
        assert (attempt > 0) == ("cached: delete" in why)
    assert log.read_text().count("run") == 1  # compiled once; later processes read the marker
    markers = list((tmp_path / "cache" / "kernels").glob("cpu_decode-*.failed"))
    assert len(markers) == 1 and "\n" not in markers[0].read_text().strip()
    # Another compiler is another key: tried afresh. ZEROPLAY_CPU_KERNEL=rebuild retries this one.
    (tmp_path / "other").mkdir()
    other, other_log = _fake_compiler(tmp_path / "other")
    monkeypatch.setenv("CXX", other)
    monkeypatch.setattr(kernels, "_STATE", {})
    assert not kernels.cpu_decode_available() and other_log.read_text().count("run") == 1
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("ZEROPLAY_CPU_KERNEL", "rebuild")
    monkeypatch.setattr(kernels, "_STATE", {})
    assert not kernels.cpu_decode_available() and log.read_text().count("run") == 2


def test_no_compiler_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "_compiler", lambda: None)
    monkeypatch.setenv("ZEROPLAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZEROPLAY_CPU_KERNEL", raising=False)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    for attempt in range(2):
        monkeypatch.setattr(kernels, "_STATE", {})
        assert not kernels.cpu_decode_available()
        assert kernels.cpu_decode_unavailable_reason().startswith("no C++ compiler found (set CXX)")
    assert len(list((tmp_path / "cache" / "kernels").glob("cpu_decode-*.failed"))) == 1


@pytest.mark.parametrize("why", ["off", "arm"])
def test_disabled_or_not_x86_never_builds(tmp_path, monkeypatch, why):
    cxx, log = _fake_compiler(tmp_path)
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("ZEROPLAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(kernels, "_STATE", {})
    if why == "off":
        monkeypatch.setenv("ZEROPLAY_CPU_KERNEL", "off")
    else:
        monkeypatch.delenv("ZEROPLAY_CPU_KERNEL", raising=False)
        monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert not kernels.cpu_decode_available()
    assert kernels.cpu_decode_unavailable_reason() == (
        "disabled by ZEROPLAY_CPU_KERNEL" if why == "off" else "needs x86-64 with AVX2 and FMA, this is aarch64")
    assert not log.exists() and not (tmp_path / "cache").exists()  # no compiler run, nothing written


@needs_kernel
def test_packed_weights_reused_while_params_live():
    model, params = noisy_params(CFG, 7)
    progs = _Programs(model, SamplingMode(greedy=True), 1, None, None, kernel=True)
    first = progs.weights(params)
    assert progs.weights(params) is first  # same arrays: nothing re-laid
    changed = jax.tree.map(lambda x: x * 1.0, params)  # new arrays (as after an update)
    again = progs.weights(changed)
    assert again is not first
    np.testing.assert_array_equal(np.asarray(again["qkv"]), np.asarray(first["qkv"]))
    del params, changed, first, again
    assert progs._last == (None, None)  # the model-sized copy dies with its params
