"""The sampler's host side of a call: the request checked, prompts as left-padded arrays, and the
decoded rows turned into a `SampleOutput`. Shared by the lockstep sampler (`sampler.py`) and
continuous batching (`continuous.py`)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class SampleOutput:
    tokens: np.ndarray  # int32 [N, G, max_new_tokens]
    lengths: np.ndarray  # int32 [N, G]
    logprobs: np.ndarray  # float32 [N, G, max_new_tokens]
    # With token_stats=True, per generated token from the untempered logits the step computed:
    # entropy H(p) and self-certainty KL(U || p), float32 [N, G, max_new_tokens], 0 past lengths.
    entropy: np.ndarray | None = None
    self_certainty: np.ndarray | None = None
    # The work it took: decode-loop iterations (after the prefill's first token), and the row-steps
    # they and the prefill decoded (lockstep: N x G x (decode_steps + 1); continuous batching: the
    # rows of each phase x its steps, plus one per request for its prefill's token).
    decode_steps: int = 0
    row_steps: int = 0


def validate(prompts, max_new_tokens, num_samples, temperature, top_p, top_k, vocab_size, max_len):
    """One clear ValueError for a bad request, before anything compiles."""
    if not isinstance(prompts, (list, tuple)) or len(prompts) == 0:
        raise ValueError("prompts must be a non-empty list of token-id lists")
    if int(max_new_tokens) <= 0:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if int(num_samples) <= 0:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not (0.0 < float(top_p) <= 1.0):
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if float(temperature) < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if int(top_k) < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
        arr = np.asarray(p)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"prompt {i} is not a flat list of integer token ids")
        if arr.min() < 0 or arr.max() >= vocab_size:
            raise ValueError(f"prompt {i} has token ids outside [0, {vocab_size})")
        if len(p) + int(max_new_tokens) > max_len:
            raise ValueError(f"prompt {i} has {len(p)} tokens; with max_new_tokens={max_new_tokens} it needs "
                             f"{len(p) + int(max_new_tokens)} cache slots but the cache allows {max_len}")


def left_padded(prompts: Sequence[Sequence[int]], rows: int, length: int, pad_token_id: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """ids int32 and mask bool [rows, length]: prompt i right-aligned in row i, the mask marking its
    tokens; rows past the prompts hold one dummy token (a padding row, finished from the start)."""
    ids = np.full((rows, length), pad_token_id, np.int32)
    mask = np.zeros((rows, length), bool)
    for i, prompt in enumerate(prompts):
        ids[i, length - len(prompt):] = prompt
        mask[i, length - len(prompt):] = True
    mask[len(prompts):, -1] = True
    return ids, mask


def sample_output(res: dict, n: int, g: int, max_new_tokens: int, pad_token_id: int, checker, token_stats: bool,
            decode_steps: int, row_steps: int) -> SampleOutput:
    """Rows [N G, ...] cut at their stop strings, padded past their lengths, shaped [N, G, ...]."""
    tokens, logprobs, lengths = res["tokens"], res["logprobs"], res["lengths"]
    if checker is not None:
        lengths = np.minimum(lengths, checker.lengths(tokens, lengths))
    past = np.arange(max_new_tokens)[None, :] >= lengths[:, None]
    tokens = np.where(past, pad_token_id, tokens).astype(np.int32)
    logprobs = np.where(past, 0.0, logprobs).astype(np.float32)
    stats = {}
    if token_stats:
        for name in ("entropy", "self_certainty"):
            stats[name] = np.where(past, 0.0, res[name]).astype(np.float32).reshape(n, g, max_new_tokens)
    return SampleOutput(tokens=tokens.reshape(n, g, max_new_tokens), lengths=lengths.astype(np.int32).reshape(n, g),
                        logprobs=logprobs.reshape(n, g, max_new_tokens), decode_steps=decode_steps,
                        row_steps=row_steps, **stats)


def raw_key(rng) -> jax.Array:
    """The key as raw uint32 data (None: PRNGKey(0)), whatever kind of key it was given as."""
    if rng is None:
        return jax.random.PRNGKey(0)
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng)
    return jnp.asarray(rng, jnp.uint32)


def place_params(params, model, mesh, rules):
    """The params with the model's shardings on `mesh`."""
    from zeroplay.models.decoder import logical_axes
    from zeroplay.parallel import param_shardings

    shardings = param_shardings(params, logical_axes(model.cfg), mesh, rules)
    # device_put is a no-op for leaves that already have this sharding (live training params).
    return jax.tree.map(lambda x, s: x if getattr(x, "sharding", None) == s else jax.device_put(x, s),
                        params, shardings)
