"""Choosing the next token: greedy, or temperature / top-k / top-p sampling with per-row keys.

`SamplingMode` holds only what changes the program (greedy or not, whether top-p / top-k run);
the temperature and top-p values are traced, so changing them does not recompile.

Written for the CPU, where XLA's cumsum, sort and argmax over a vocabulary are slow (measured on
8 x 32000 float32: cumsum 1.6 ms, sort 78 ms, argmax 0.6 ms, against 0.07 ms for a sum):
- greedy is max, then the first index holding it (two plain reductions);
- sampling draws one uniform per row and inverts the CDF in two levels (blocks of 128, then
  within the chosen block): exact, and no Gumbel draw per vocabulary entry;
- top-p finds its probability threshold by bisection on the float32 bit pattern (31 masked
  sums) instead of sorting the vocabulary; the kept set is exactly HF's: a token stays when the
  mass of the tokens more likely than it is < top_p.
The returned log-probability is always under the model's own log-softmax, before processing.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

_BLOCK = 128


@dataclasses.dataclass(frozen=True)
class SamplingMode:
    greedy: bool
    top_k: int = 0  # 0 = off (static: lax.top_k needs a static k)
    use_top_p: bool = False  # static switch; the threshold itself is traced

    @classmethod
    def from_args(cls, temperature: float, top_p: float, top_k: int, vocab_size: int) -> "SamplingMode":
        if temperature == 0:
            return cls(greedy=True)
        k = int(top_k) if 0 < top_k < vocab_size else 0
        return cls(greedy=False, top_k=k, use_top_p=top_p < 1.0)


def row_uniforms(rng: jax.Array, prompt_idx: jax.Array, sample_idx: jax.Array, steps: int) -> jax.Array:
    """Uniforms [B, steps]: entry (r, i) depends only on (rng, prompt, sample, step i).

    So a row's draws do not depend on what else is in the batch, nor on the bucket sizes; drawn
    once before the loop, so no random-number generation runs per step.
    """
    def one(p, s):
        key = jax.random.fold_in(jax.random.fold_in(rng, p), s)
        return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(jnp.arange(steps))

    return jax.vmap(one)(prompt_idx, sample_idx)


def first_argmax(x: jax.Array) -> jax.Array:
    """argmax over the last axis (first index on ties, as torch and numpy) via two reductions."""
    m = jnp.max(x, axis=-1, keepdims=True)
    iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    return jnp.min(jnp.where(x == m, iota, x.shape[-1]), axis=-1).astype(jnp.int32)


def inverse_cdf(weights: jax.Array, u: jax.Array) -> jax.Array:
    """Index drawn from unnormalised non-negative weights [B, K] with uniforms u [B] in [0, 1).

    Returns the first index whose cumulative weight exceeds u * total, so a zero weight is never
    chosen. Two-level (blocks, then within a block) so no cumsum runs over the whole axis.
    """
    b, k = weights.shape
    if k <= 2 * _BLOCK:
        cdf = jnp.cumsum(weights, axis=-1)
        idx = jnp.sum(cdf <= (u * cdf[:, -1])[:, None], axis=-1)
        return jnp.minimum(idx, k - 1).astype(jnp.int32)
    nb = -(-k // _BLOCK)
    if nb * _BLOCK != k:
        weights = jnp.pad(weights, ((0, 0), (0, nb * _BLOCK - k)))
    blocks = weights.reshape(b, nb, _BLOCK)
    block_sums = jnp.sum(blocks, axis=-1)
    block_cdf = jnp.cumsum(block_sums, axis=-1)
    target = u * block_cdf[:, -1]
    bi = jnp.minimum(jnp.sum(block_cdf <= target[:, None], axis=-1), nb - 1)
    rows = jnp.arange(b)
    rest = target - (block_cdf[rows, bi] - block_sums[rows, bi])
    inner = jnp.cumsum(blocks[rows, bi], axis=-1)
    # Never land on a zero weight: the first index whose cdf exceeds `rest`, else the last
    # positive one in the block (float rounding can leave `rest` at the block total).
    over = inner > rest[:, None]
    positive = blocks[rows, bi] > 0
    iota = jnp.arange(_BLOCK)
    first_over = jnp.min(jnp.where(over & positive, iota, _BLOCK), axis=-1)
    last_pos = jnp.max(jnp.where(positive, iota, -1), axis=-1)
    ii = jnp.where(first_over < _BLOCK, first_over, jnp.maximum(last_pos, 0))
    return (bi * _BLOCK + ii).astype(jnp.int32)


def top_p_mask(probs: jax.Array, top_p: jax.Array) -> jax.Array:
    """Keep mask [B, V] of HF's nucleus for normalised probs, found without a sort.

    Token i is kept iff F(p_i) < top_p, F(t) = mass of tokens with p > t. F decreases in t, so
    the kept set is {p >= t0} with t0 the smallest float such that F(t0) < top_p; non-negative
    float32 order equals int32 order of the bits, so 31 halvings over the bits find t0 exactly.
    """
    def mass_above(t):
        return jnp.sum(jnp.where(probs > t[:, None], probs, 0.0), axis=-1)

    b = probs.shape[0]
    lo = jnp.zeros((b,), jnp.int32)  # F(0) >= top_p is not guaranteed; handled by the search
    hi = jax.lax.bitcast_convert_type(jnp.max(probs, axis=-1), jnp.int32)  # F(max) = 0 < top_p

    def body(_, lh):
        lo, hi = lh
        mid = lo + (hi - lo) // 2
        ok = mass_above(jax.lax.bitcast_convert_type(mid, jnp.float32)) < top_p
        return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 31, body, (lo, hi))
    t0 = jax.lax.bitcast_convert_type(hi, jnp.float32)
    return probs >= t0[:, None]


def choose(logits: jax.Array, u: jax.Array, mode: SamplingMode, temperature: jax.Array,
           top_p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """logits float32 [B, V], uniforms u [B] -> (token int32 [B], its model log-prob float32 [B])."""
    logits = logits.astype(jnp.float32)
    m = jnp.max(logits, axis=-1, keepdims=True)
    shifted = logits - m
    lse = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))  # log-softmax = shifted - lse
    if mode.greedy:
        tok = first_argmax(logits)
    else:
        scaled = shifted / temperature
        if mode.top_k:
            # The barrier keeps XLA from folding later slices into top_k's, which turns the
            # TopK call back into a full sort (70 ms instead of 0.5 ms on 8 x 32000).
            vals, idx = jax.lax.optimization_barrier(jax.lax.top_k(scaled, mode.top_k))  # descending
            w = jnp.exp(vals)  # the max of `scaled` is exactly 0
            if mode.use_top_p:
                probs = w / jnp.sum(w, axis=-1, keepdims=True)
                w = jnp.where(jnp.cumsum(probs, axis=-1) - probs < top_p, w, 0.0)
            tok = jnp.take_along_axis(idx, inverse_cdf(w, u)[:, None], axis=-1)[:, 0]
        else:
            w = jnp.exp(scaled)  # max is exactly 0 after the shift
            if mode.use_top_p:
                w = jnp.where(top_p_mask(w / jnp.sum(w, axis=-1, keepdims=True), top_p), w, 0.0)
            tok = inverse_cdf(w, u)
    logprob = jnp.take_along_axis(shifted, tok[:, None], axis=-1)[:, 0] - lse
    return tok.astype(jnp.int32), logprob


def token_stats(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per row of logits [B, V] (the model's own, untempered): entropy H(p) = -sum p log p and
    self-certainty KL(U || p) = -log V - mean_v log p_v (Intuitor), both float32 [B], nats.

    Reductions only (max, two sums, a mean): no sort, no second forward pass. Used by the
    sampler when `token_stats=True` (RENT's entropy reward, Intuitor's self-certainty reward).
    """
    logits = logits.astype(jnp.float32)
    v = logits.shape[-1]
    shifted = logits - jnp.max(logits, axis=-1, keepdims=True)
    e = jnp.exp(shifted)
    z = jnp.sum(e, axis=-1)
    lse = jnp.log(z)
    entropy = lse - jnp.sum(e * shifted, axis=-1) / z
    self_certainty = lse - jnp.mean(shifted, axis=-1) - jnp.log(jnp.float32(v))
    return entropy, self_certainty
