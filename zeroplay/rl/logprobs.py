"""Per-token log-probabilities (and entropies) of a token batch under the decoder.

Alignment: `logprobs[:, t] = log p(tokens[:, t] | tokens[:, :t])`, computed from the logits at
position t - 1; column 0 has no context and is 0. The same holds for `entropy[:, t]`, the
entropy of the distribution that scored `tokens[:, t]`. This matches the sampler's per-token
logprobs once they are placed at the token they score.

With `chunk_size`, the [B, T, V] logits never exist at once: the final hidden states are cut
into sequence chunks, each chunk's logits are formed, reduced to (logprob, entropy) and dropped,
and `jax.checkpoint` recomputes them in the backward pass instead of storing them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from zeroplay.models.decoder import lm_head_kernel


def _reduce(logits: jax.Array, targets: jax.Array, with_entropy: bool):
    """logits f32 [..., V], targets [...] -> (logprob of target, entropy or None)."""
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    ent = None
    if with_entropy:
        logp = logits - lse[..., None]  # -sum p log p, not lse - sum p z: no cancellation when peaked
        ent = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return picked - lse, ent


def logprobs_from_hidden(hidden: jax.Array, kernel: jax.Array, tokens: jax.Array, *,
                         chunk_size: int | None = None, with_entropy: bool = False,
                         compute_dtype=None):
    """hidden [B, T, H] (final norm applied), kernel [H, V], tokens [B, T] -> [B, T] (aligned).

    Returns (logprobs, entropy or None). Logits are accumulated in float32 whatever the compute
    dtype of the matmul.
    """
    b, t, h = hidden.shape
    dtype = compute_dtype or hidden.dtype
    kernel = kernel.astype(dtype)
    h_prev = hidden[:, :-1].astype(dtype)  # predicts tokens[:, 1:]
    targets = tokens[:, 1:].astype(jnp.int32)
    n = t - 1

    def chunk_fn(hc, tc):
        logits = jnp.einsum("bth,hv->btv", hc, kernel, preferred_element_type=jnp.float32)
        return _reduce(logits, tc, with_entropy)

    if chunk_size is None or chunk_size >= n:
        lp, ent = chunk_fn(h_prev, targets)
    else:
        pad = (-n) % chunk_size
        hp = jnp.pad(h_prev, ((0, 0), (0, pad), (0, 0)))
        tp = jnp.pad(targets, ((0, 0), (0, pad)))
        nc = (n + pad) // chunk_size
        hs = hp.reshape(b, nc, chunk_size, h).swapaxes(0, 1)
        ts = tp.reshape(b, nc, chunk_size).swapaxes(0, 1)
        body = jax.checkpoint(lambda c, x: (c, chunk_fn(*x)),
                              policy=jax.checkpoint_policies.nothing_saveable)
        _, (lp, ent) = jax.lax.scan(body, None, (hs, ts))
        fix = lambda x: None if x is None else x.swapaxes(0, 1).reshape(b, n + pad)[:, :n]
        lp, ent = fix(lp), fix(ent)
    col0 = jnp.zeros((b, 1), jnp.float32)
    lp = jnp.concatenate([col0, lp], axis=1)
    if ent is not None:
        ent = jnp.concatenate([col0, ent], axis=1)
    return lp, ent


def token_logprobs(model, params, tokens: jax.Array, *, positions=None, attention_mask=None,
                   chunk_size: int | None = None, with_entropy: bool = False):
    """(logprobs [B, T], entropy [B, T] or None) of `tokens` under `model` (a Decoder)."""
    hidden = model.apply({"params": params}, tokens, positions=positions, attention_mask=attention_mask,
                         return_hidden=True)
    return logprobs_from_hidden(hidden, lm_head_kernel(params, model.cfg), tokens, chunk_size=chunk_size,
                                with_entropy=with_entropy, compute_dtype=model.cfg.dtype)
