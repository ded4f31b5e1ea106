"""Continuous batching: a fixed set of decode rows, each refilled with the next prompt when it ends.

    out = generate(model, params, prompts, max_new_tokens=512, num_samples=8, max_rows=64, ...)

The lockstep sampler (`sampler.py`) decodes all N x G rows until its longest one ends, so with a
long-tailed length distribution much of its work is on rows that have already finished (the
`sample/<role>/finished_row_share` of a self-play step: 0.33 in Co-rewarding-II). Here B rows
(`max_rows`, a multiple of G) decode at once, and whenever at least `refill_rows` of them are
free, the loop returns to the host, which harvests the finished rows and prefills as many
waiting prompts as fit, each into G free rows of the same cache (`_Programs.refill`: the prompt
at slots [0, P), the rest of the row masked until written). Each row then writes its own slot
and column, P + lengths - 1 and lengths (`_Programs._decode(per_row=True)`), so rows that
started at different times share one program.

Nothing recompiles per call pattern: B, the prompt bucket P and the new-token bucket M are fixed
for the call, and a refill of k prompts runs at the batch bucket of k (1, 2, 4, ...).

The outputs equal the lockstep sampler's: request (prompt i, sample j) draws the uniforms
row_uniforms(rng, i, j) whatever row it lands in, its cache slots are the same, and its logprobs
come from its own logits (`tests/test_continuous_batching.py` checks tokens and logprobs against
`generate` without `max_rows`, on the XLA step and the CPU kernel).
"""
from __future__ import annotations

import collections
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from zeroplay.sampling.host_io import left_padded
from zeroplay.sampling.stop import StopChecker

NO_LIMIT = 2 ** 30
MIN_ROWS = 4  # the drain halves the batch down to this many rows


def default_refill_rows(rows: int, num_samples: int) -> int:
    """Free rows that end a decode chunk: an eighth of the batch, at least one prompt's G rows.

    Each refill costs a host round trip and a prefill call; waiting for B / 8 free rows bounds
    the idle rows to ~1/8 of the batch while keeping refills to a few per row lifetime."""
    return max(num_samples, rows // 8)


def decode_continuous(state, plan, prompts: Sequence[Sequence[int]], *, prompt_len: int, rows: int, rng,
                      buckets, pad_token_id: int, checker: StopChecker | None, stop_check_every: int,
                      refill_rows: int | None = None, min_rows: int = MIN_ROWS,
                      prompt_offset: int = 0) -> dict[str, np.ndarray]:
    """Run every prompt of `prompts` through `rows` decode rows; returns per request (row-major
    prompt i, sample j) "tokens", "logprobs" [N G, max_new] and "lengths" [N G], plus "entropy" and
    "self_certainty" when the programs record them, "refills" (how many refill calls ran),
    "decode_steps" and "row_steps" (the rows of each decode phase x its steps, plus one per request
    for its prefill's token: what was decoded, useful or not).

    The drain: once no prompt waits, the batch halves (`_Programs.compact`) whenever its live rows
    fit in half of it, down to `min_rows`, so the last long rows do not drag the finished ones
    along (on a CPU a step costs about in proportion to its rows)."""
    progs, g, max_new = plan.programs, plan.num_samples, plan.max_new_tokens
    n = len(prompts)
    m = state.tokens.shape[1]
    refill_at = int(refill_rows or default_refill_rows(rows, g))
    if refill_at < g:
        raise ValueError(f"refill_rows={refill_at} must be >= num_samples={g}: a prompt takes G rows at once")
    min_rows = max(1, int(min_rows))
    stats = ("entropy", "self_certainty") if state.entropy is not None else ()
    out = {"tokens": np.zeros((n * g, max_new), np.int32), "logprobs": np.zeros((n * g, max_new), np.float32),
           "lengths": np.zeros((n * g,), np.int32), **{k: np.zeros((n * g, max_new), np.float32) for k in stats}}
    request = np.full(rows, -1, np.int64)  # the request each row holds (prompt * G + sample), -1 free
    queue = collections.deque(range(n))
    refills, row_steps = 0, n * g  # each request's first token: one row-step of its prefill
    budget = jnp.int32(max_new)

    def refill(state):
        free = np.flatnonzero(request < 0)
        k = min(len(queue), len(free) // g)
        if k == 0:
            return state
        take = [queue.popleft() for _ in range(k)]
        k_pad = buckets.batch(k)  # padding prompts' rows are dropped
        ids, mask = left_padded([prompts[i] for i in take], k_pad, prompt_len, pad_token_id)
        target = np.full(k_pad * g, rows, np.int32)  # index `rows`: out of bounds, dropped
        target[:k * g] = free[:k * g]
        prompt_idx = np.zeros(k_pad * g, np.int32)
        prompt_idx[:k * g] = np.repeat(take, g)
        sample_idx = np.tile(np.arange(g, dtype=np.int32), k_pad)
        request[free[:k * g]] = prompt_idx[:k * g].astype(np.int64) * g + sample_idx[:k * g]
        prompt_idx[:k * g] += prompt_offset  # the random stream of prompt prompt_offset + i
        if checker is not None:
            checker.reset(free[:k * g])
        return progs.refill(plan.params, plan.weights, state, jnp.asarray(ids), jnp.asarray(mask),
                            jnp.asarray(target), jnp.asarray(prompt_idx), jnp.asarray(sample_idx), rng,
                            plan.temperature, plan.top_p, plan.eos, budget)

    while True:
        before = len(queue)
        state = refill(state)
        refills += before != len(queue)
        step0 = int(state.step)
        limit = step0 + int(stop_check_every) if checker is not None else NO_LIMIT
        if queue:
            exit_at = refill_at
        else:  # draining: come back when the live rows fit in half the batch
            exit_at = rows - rows // 2 if rows // 2 >= min_rows else rows + 1
        state = progs.decode_rows(plan.params, plan.weights, state, jnp.int32(limit), plan.temperature, plan.top_p,
                                  plan.eos, budget, jnp.int32(exit_at))
        row_steps += rows * (int(state.step) - step0)
        finished, lengths = np.asarray(state.finished), np.asarray(state.lengths)
        tokens = np.asarray(state.tokens)
        if checker is not None:
            held = np.where(request >= 0, lengths, 0)
            done = checker.update(tokens, np.minimum(held, m)) & ~finished
            if done.any():
                finished = finished | done
                state = state.replace(finished=jnp.asarray(finished))
        harvest = np.flatnonzero(finished & (request >= 0))
        if len(harvest):
            req = request[harvest]
            out["tokens"][req] = tokens[harvest, :max_new]
            out["lengths"][req] = np.minimum(lengths[harvest], max_new)
            out["logprobs"][req] = np.asarray(state.logprobs)[harvest, :max_new]
            for k in stats:
                out[k][req] = np.asarray(getattr(state, k))[harvest, :max_new]
            request[harvest] = -1
        if not queue and (request < 0).all():
            out.update(refills=refills, decode_steps=int(state.step) - 1, row_steps=row_steps)
            return out
        live = int((request >= 0).sum())
        new_rows = rows
        while not queue and new_rows // 2 >= min_rows and live <= new_rows // 2:
            new_rows //= 2
        if new_rows < rows:
            keep = np.concatenate([np.flatnonzero(request >= 0), np.flatnonzero(request < 0)])[:new_rows]
            state = progs.compact(state, jnp.asarray(keep, jnp.int32), jnp.asarray(request[keep] >= 0))
            request, rows = request[keep], new_rows
            if checker is not None:
                checker.take(keep)
