"""Continuous batching (`zeroplay/sampling/continuous.py`): the same tokens and logprobs as the
lockstep sampler, with rows refilled in place, on both decode steps; and the per-row cache slots
it needs, in the XLA step and the CPU kernel."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_sampler import VOCAB, CharTokenizer, prompts_of, qwen2, teacher_forced  # noqa: F401  (fixture)

from zeroplay.sampling import compile_count, generate, prefill
from zeroplay.sampling.continuous import decode_continuous
from zeroplay.sampling.decode_step import decode_step, head_kernel, unstack_layers

LOGPROB_TOL = 1e-5  # continuous against lockstep: the same math, other rows in the batch
TEACHER_TOL = 1e-4  # against a teacher-forced forward pass (as test_sampler.py)
EOS = (5, 7, 9, 11)  # ~3% of the vocabulary: lengths from 1 to the budget, a long tail
LENGTHS = [3, 9, 5, 12, 7, 4, 11, 6, 2, 8, 10, 1]


def _assert_same(out, ref, stats=False):
    np.testing.assert_array_equal(out.lengths, ref.lengths)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=LOGPROB_TOL, rtol=0)
    if stats:
        np.testing.assert_allclose(out.entropy, ref.entropy, atol=LOGPROB_TOL, rtol=0)
        np.testing.assert_allclose(out.self_certainty, ref.self_certainty, atol=LOGPROB_TOL, rtol=0)


@pytest.mark.parametrize("g, rows, kw", [
    (3, 7, dict(temperature=1.0)),  # 7 rows -> 6: two prompts at a time
    (2, 6, dict(temperature=0)),
    (2, 16, dict(temperature=0.8, top_k=20, top_p=0.9)),  # 16 rows: the drain halves the batch to 8, then 4
])
def test_matches_lockstep(qwen2, decode_kernel, g, rows, kw):  # noqa: F811
    _, model, params = qwen2
    prompts = prompts_of(LENGTHS, seed=21)
    eos = EOS
    if kw["temperature"] == 0:  # greedy: eos ids the greedy rows do reach, at varied steps
        free = generate(model, params, prompts, max_new_tokens=40, temperature=0, decode_kernel=decode_kernel)
        eos = tuple({int(free.tokens[i, 0, at]) for i, at in enumerate((1, 4, 9, 15))})
    common = dict(max_new_tokens=40, num_samples=g, eos_token_ids=eos, rng=jax.random.PRNGKey(3),
                  decode_kernel=decode_kernel, token_stats=True, **kw)
    ref = generate(model, params, prompts, **common)
    out = generate(model, params, prompts, max_rows=rows, **common)
    _assert_same(out, ref, stats=True)
    lengths = ref.lengths.ravel()
    assert lengths.min() < 10 and lengths.max() == 40  # a long tail: the case continuous batching is for
    for i, p in enumerate(prompts[:4]):  # and against an independent forward pass
        comps = [out.tokens[i, j, :int(out.lengths[i, j])].tolist() for j in range(g)]
        for j, r in enumerate(teacher_forced(model, params, p, comps, 40)[0]):
            np.testing.assert_allclose(out.logprobs[i, j, :len(comps[j])], r, atol=TEACHER_TOL, rtol=0)


def test_prompt_offset_chunks_sample_what_one_call_does(qwen2, decode_kernel):  # noqa: F811
    """Calls on slices of the prompts, one key, each at its offset: one call's completions."""
    _, model, params = qwen2
    prompts = prompts_of(LENGTHS[:6], seed=13)
    kw = dict(max_new_tokens=20, num_samples=2, temperature=1.0, eos_token_ids=EOS, rng=jax.random.PRNGKey(4),
              decode_kernel=decode_kernel)
    whole = generate(model, params, prompts, **kw)
    for lo in (0, 2, 4):
        part = generate(model, params, prompts[lo:lo + 2], prompt_offset=lo, **kw)
        np.testing.assert_array_equal(part.tokens, whole.tokens[lo:lo + 2])
        np.testing.assert_allclose(part.logprobs, whole.logprobs[lo:lo + 2], atol=LOGPROB_TOL, rtol=0)
    other = generate(model, params, prompts[2:4], **kw)  # no offset: prompts 0 and 1's streams
    assert not np.array_equal(other.tokens, whole.tokens[2:4])


def test_rows_are_refilled_and_nothing_recompiles(qwen2, decode_kernel):  # noqa: F811
    _, model, params = qwen2
    kw = dict(max_new_tokens=24, num_samples=2, eos_token_ids=EOS, temperature=1.0, decode_kernel=decode_kernel)

    def run(prompts, seed):
        state, plan = prefill(model, params, prompts, rng=jax.random.PRNGKey(seed), rows=4, **kw)
        from zeroplay.sampling import DEFAULT_BUCKETS

        return decode_continuous(state, plan, prompts, prompt_len=16, rows=4, rng=jax.random.PRNGKey(seed),
                                 buckets=DEFAULT_BUCKETS, pad_token_id=0, checker=None, stop_check_every=16,
                                 refill_rows=2)

    first = run(prompts_of(LENGTHS, seed=4), 0)
    assert first["refills"] >= len(LENGTHS) // 2  # two prompts fit: at least one refill per two prompts
    assert (first["lengths"] >= 1).all()
    n0 = compile_count()
    second = run(prompts_of([13, 2, 7, 9, 16, 1, 4, 8, 12, 6, 3, 5], seed=5), 1)  # other lengths, same buckets
    assert compile_count() == n0
    assert not np.array_equal(first["tokens"], second["tokens"])


def test_stop_strings(qwen2, decode_kernel):  # noqa: F811
    _, model, params = qwen2
    tok = CharTokenizer()
    prompts = prompts_of(LENGTHS[:8], seed=16)
    kw = dict(max_new_tokens=40, num_samples=2, temperature=1.0, rng=jax.random.PRNGKey(5), stop_strings=["e"],
              tokenizer=tok, stop_check_every=4, decode_kernel=decode_kernel)
    ref = generate(model, params, prompts, **kw)
    out = generate(model, params, prompts, max_rows=4, **kw)
    _assert_same(out, ref)
    cut = [tok.decode(out.tokens[i, j, :int(out.lengths[i, j])]) for i in range(8) for j in range(2)]
    assert any(c.endswith("e") for c in cut) and all(c.count("e") <= 1 for c in cut)


def test_every_row_at_once_and_bad_sizes(qwen2):  # noqa: F811
    """max_rows above N x G: every request starts at once, and the drain still halves the batch."""
    _, model, params = qwen2
    prompts = prompts_of(LENGTHS[:5], seed=2)
    kw = dict(max_new_tokens=30, num_samples=2, temperature=1.0, eos_token_ids=EOS, rng=jax.random.PRNGKey(1),
              decode_kernel="xla")
    ref = generate(model, params, prompts, **kw)
    out = generate(model, params, prompts, max_rows=64, **kw)
    _assert_same(out, ref)
    assert ref.row_steps == 10 * (ref.decode_steps + 1) and out.decode_steps == ref.decode_steps
    assert out.row_steps < ref.row_steps  # 10 rows, then 5 once half have ended
    assert out.row_steps >= int(out.lengths.sum())
    with pytest.raises(ValueError, match="max_rows"):
        generate(model, params, prompts, max_rows=1, **kw)
    with pytest.raises(ValueError, match="refill_rows"):
        generate(model, params, prompts, max_rows=2, refill_rows=1, **kw)


def test_sharded_mesh(qwen2):  # noqa: F811
    from zeroplay.parallel import make_mesh

    _, model, params = qwen2
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    prompts = prompts_of(LENGTHS[:6], seed=8)
    kw = dict(max_new_tokens=16, num_samples=2, temperature=1.0, eos_token_ids=EOS, rng=jax.random.PRNGKey(9))
    ref = generate(model, params, prompts, decode_kernel="xla", **kw)
    _assert_same(generate(model, params, prompts, max_rows=8, mesh=mesh, **kw), ref)


def test_per_row_slots_in_both_steps(qwen2, cpu_kernel):  # noqa: F811
    """One decode step with a slot per row: the XLA step and the kernel agree, and a row's result is
    its own lockstep step's at that slot (each row checked against a scalar-slot step)."""
    from zeroplay.sampling import cpu_decode

    _, model, params = qwen2
    cfg = model.cfg
    b, s = 4, 24
    rs = np.random.RandomState(0)
    shape = (b, cfg.num_kv_heads, s, cfg.dim_per_head)
    k, v = [rs.standard_normal((cfg.num_layers,) + shape).astype(np.float32) for _ in range(2)]
    mask = jnp.asarray(rs.rand(b, s) < 0.8)
    tokens = jnp.asarray(rs.randint(0, VOCAB, b), jnp.int32)
    positions = jnp.asarray([3, 11, 7, 19], jnp.int32)
    slots = jnp.asarray([5, 17, 9, 22], jnp.int32)
    xla_cache = tuple((jnp.asarray(k[i]), jnp.asarray(v[i])) for i in range(cfg.num_layers))
    step = jax.jit(lambda c, sl: decode_step(cfg, params, unstack_layers(params, cfg), head_kernel(params, cfg), c,
                                             tokens, positions, sl, mask))
    logits, cache = step(xla_cache, slots)
    packed = jax.jit(lambda p: cpu_decode.pack_weights(p, cfg))(params)
    kern = jax.jit(lambda c, sl: cpu_decode.decode_step(cfg, packed, c, tokens, positions, sl, mask))
    k_logits, k_cache = kern((jnp.asarray(k), jnp.asarray(v)), slots)
    np.testing.assert_allclose(k_logits, logits, atol=1e-4, rtol=1e-4)
    for r in range(b):
        one_logits, one_cache = step(xla_cache, slots[r])
        np.testing.assert_allclose(logits[r], one_logits[r], atol=1e-5, rtol=0)
        np.testing.assert_allclose(cache[0][0][r], one_cache[0][0][r], atol=1e-6, rtol=0)
        np.testing.assert_allclose(np.asarray(k_cache[0])[0, r], np.asarray(one_cache[0][0][r]), atol=1e-5, rtol=0)
        one_k_logits, _ = kern((jnp.asarray(k), jnp.asarray(v)), slots[r])
        np.testing.assert_array_equal(k_logits[r], one_k_logits[r])  # the kernel: each row alone, bitwise
