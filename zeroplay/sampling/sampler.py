"""The rollout sampler: one jitted prefill, one jitted `lax.while_loop` decode, static buckets.

    out = generate(model, params, [[1, 2, 3], [4, 5]], max_new_tokens=64, num_samples=8,
                   temperature=1.0, eos_token_ids=(2,), rng=jax.random.PRNGKey(0))
    out.tokens [N, G, 64] int32, out.lengths [N, G] int32, out.logprobs [N, G, 64] float32

Prompts are left-padded to a prompt bucket P; rotary positions count real tokens only and
`kv_mask` hides the pad slots, so a ragged batch produces exactly the tokens of unpadded runs.
Each prompt is prefilled once and its cache copied to its G sample rows. The decode loop writes
slot P + i at step i for every row into a preallocated cache of P + M slots (M = new-token
bucket); its state is donated so XLA updates the cache in place, and it exits as soon as every
row has finished. Stop strings are checked on the host between chunks of decode steps.
The decode step is XLA operations (`decode_step.py`) or, on one CPU device in float32, one fused
call of the hand-written CPU kernel (`cpu_decode.py`), which then also runs the prefill (the same
call with all prompt tokens at once); `decode_kernel` chooses.
"""
from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from zeroplay.models.decoder import init_cache, lm_head_kernel
from zeroplay.sampling import cpu_decode
from zeroplay.sampling.buckets import DEFAULT_BUCKETS, Buckets
from zeroplay.sampling.host_io import SampleOutput, left_padded, place_params, raw_key, sample_output, validate
from zeroplay.sampling.decode_step import CACHE_AXES, decode_step, head_kernel, split_cache, unstack_layers
from zeroplay.sampling.logits_processing import SamplingMode, choose, row_uniforms, token_stats
from zeroplay.sampling.stop import StopChecker

_TRACES = {"prefill": 0, "decode": 0, "refill": 0}


def compile_count() -> int:
    """How many sampler programs have been traced (each trace is one XLA compilation)."""
    return sum(_TRACES.values())


@flax.struct.dataclass
class DecodeState:
    cache: tuple  # per layer (k, v), each [B, KVH, P + M, D]; with the CPU kernel one stacked [L, B, ...] pair
    kv_mask: jax.Array  # bool [B, P + M]: real prompt slots, and every generated slot
    last: jax.Array  # int32 [B]: the token to feed next
    next_pos: jax.Array  # int32 [B]: its rotary position
    tokens: jax.Array  # int32 [B, M]
    logprobs: jax.Array  # float32 [B, M]
    lengths: jax.Array  # int32 [B]
    finished: jax.Array  # bool [B]
    uniforms: jax.Array  # float32 [B, M]: row r's draw at step i (see row_uniforms)
    step: jax.Array  # int32 []: decode steps run (lockstep: tokens generated so far by every row)
    entropy: jax.Array | None = None  # float32 [B, M] with token_stats (None: not computed)
    self_certainty: jax.Array | None = None  # float32 [B, M] with token_stats


def _is_eos(tok: jax.Array, eos: jax.Array) -> jax.Array:
    return jnp.any(tok[:, None] == eos[None, :], axis=-1)


class _Programs:
    """The jitted prefill and decode for one (model, sampling mode, fan-out, mesh, decode step).

    kernel=False: the decode step is XLA operations (`decode_step.py`), any backend or mesh.
    kernel=True: it is one fused CPU call (`cpu_decode.py`) on weights packed once per request.
    stats=True: the programs also record each token's entropy and self-certainty from the logits
    the step returns (either decode step); a static flag, so the default programs are unchanged.
    """

    def __init__(self, model, mode: SamplingMode, num_samples: int, mesh, rules, kernel: bool,
                 stats: bool = False):
        self.model, self.cfg, self.mode, self.g = model, model.cfg, mode, num_samples
        self.mesh, self.rules, self.kernel, self.stats = mesh, rules, kernel, stats
        self.prefill = jax.jit(self._prefill, static_argnames=("max_new",))
        self.decode = jax.jit(self._decode, donate_argnums=(2,))
        # Continuous batching (`continuous.py`): rows at their own slots, refilled in place.
        self.decode_rows = jax.jit(functools.partial(self._decode, per_row=True), donate_argnums=(2,))
        self.refill = jax.jit(self._refill, donate_argnums=(2,))
        self.empty = jax.jit(self._empty, static_argnames=("rows", "prompt_len", "max_new"))
        self.compact = jax.jit(self._compact)  # a smaller state: nothing of the input to reuse
        weights = cpu_decode.pack_weights if kernel else head_kernel
        self._weights = jax.jit(functools.partial(weights, cfg=self.cfg))
        self._last = (None, None)  # (weakrefs to the param leaves, their decode weights)

    def weights(self, params):
        """The decode step's extra weights for `params`, reused while the same param arrays live.

        JAX arrays are immutable, so the same leaf objects mean the same values: repeated requests
        on unchanged params (evaluation, several rollout batches per step) re-lay nothing, while
        the first request after an update does. Only weak references to the params are held.
        """
        leaves = jax.tree.leaves(params)
        refs, cached = self._last
        if refs is not None and len(refs) == len(leaves) and all(r() is x for r, x in zip(refs, leaves)):
            return cached
        out = self._weights(params)
        try:
            self._last = ([weakref.ref(x, self._forget) for x in leaves], out)
        except TypeError:  # a leaf that takes no weak reference (a NumPy array): no reuse
            self._last = (None, None)
        return out

    def _forget(self, _ref):  # a param leaf died: release the model-sized copy with it
        self._last = (None, None)

    def _constrain(self, state: DecodeState) -> DecodeState:
        if self.mesh is None or self.kernel:  # the kernel runs on one device only
            return state
        from zeroplay.parallel import fit_to_shape, logical_to_sharding

        cache_spec = logical_to_sharding(PartitionSpec(*CACHE_AXES), self.mesh, self.rules)
        batch_spec = logical_to_sharding(PartitionSpec("batch"), self.mesh, self.rules)

        def put(x, spec):
            s = fit_to_shape(spec, x.shape)
            return jax.lax.with_sharding_constraint(x, s)

        cache = jax.tree.map(lambda c: put(c, cache_spec), state.cache)
        fields = ("kv_mask", "last", "next_pos", "tokens", "logprobs", "lengths", "finished", "uniforms")
        if self.stats:
            fields += ("entropy", "self_certainty")
        rows = {f: put(getattr(state, f), batch_spec) for f in fields}
        rep = NamedSharding(self.mesh, PartitionSpec())
        return state.replace(cache=cache, step=jax.lax.with_sharding_constraint(state.step, rep), **rows)

    def _logits_last(self, params, hidden):
        w = lm_head_kernel(params, self.cfg).astype(self.cfg.dtype)
        return jnp.dot(hidden.astype(self.cfg.dtype), w, preferred_element_type=jnp.float32)  # f32 logits

    def _prompt_caches(self, params, weights, ids, mask):
        """Prompts ids [n, P] (left-padded, `mask` marks real tokens) -> (logits f32 [n, V] of each
        prompt's last token, its cache over P slots in the decode layout, rotary positions [n, P])."""
        cfg = self.cfg
        positions = jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)
        if self.kernel:  # the fused CPU call on the packed weights; cache [L, n, KVH, P, D]
            logits, cache = cpu_decode.prefill(cfg, weights, ids, positions, mask)
            return logits, cache, positions
        n, p = ids.shape
        hidden, cache = self.model.apply({"params": params}, ids, positions=positions, cache=init_cache(cfg, n, p),
                                         cache_index=0, kv_mask=mask, return_hidden=True)
        logits = self._logits_last(params, hidden[:, -1])  # [n, V]: every prompt ends at slot P-1
        return logits, split_cache(cache), positions

    def _first_tokens(self, logits, uniforms, temperature, top_p, max_new):
        """Each row's first token from its prompt's logits [n, V] (G rows per prompt): the token,
        its logprob and, with stats, the [rows, max_new] entropy / self-certainty columns."""
        g = self.g
        stats = {}
        if self.stats:  # per prompt, then to its G rows like the logits
            first = [jnp.repeat(x, g, axis=0) for x in token_stats(logits)]
            stats = {k: jnp.zeros((x.shape[0], max_new), jnp.float32).at[:, 0].set(x)
                     for k, x in zip(("entropy", "self_certainty"), first)}
        tok, lp = choose(jnp.repeat(logits, g, axis=0), uniforms[:, 0], self.mode, temperature, top_p)
        return tok, lp, stats

    def _prefill(self, params, weights, ids, mask, rng, n_real, offset, temperature, top_p, eos, *, max_new: int):
        _TRACES["prefill"] += 1
        g = self.g
        n, p = ids.shape
        b = n * g
        logits, cache, positions = self._prompt_caches(params, weights, ids, mask)
        # Fan-out: each prompt's cache and last logits go to its G rows (row = prompt * G + sample).
        if self.kernel:
            full = cpu_decode.fan_out(cache, g, p + max_new)
        else:
            full = jax.tree.map(lambda c: jnp.pad(jnp.repeat(c, g, axis=0), ((0, 0), (0, 0), (0, max_new), (0, 0))),
                                cache)
        kv_mask = jnp.concatenate([jnp.repeat(mask, g, axis=0), jnp.ones((b, max_new), bool)], axis=1)
        prompt_idx = jnp.arange(b, dtype=jnp.int32) // g
        uniforms = row_uniforms(rng, prompt_idx + offset, jnp.arange(b, dtype=jnp.int32) % g, max_new)
        tok, lp, stats = self._first_tokens(logits, uniforms, temperature, top_p, max_new)
        pad_row = prompt_idx >= n_real
        tokens = jnp.zeros((b, max_new), jnp.int32).at[:, 0].set(tok)
        logprobs = jnp.zeros((b, max_new), jnp.float32).at[:, 0].set(lp)
        state = DecodeState(cache=full, kv_mask=kv_mask, last=tok,
                            next_pos=jnp.repeat(positions[:, -1] + 1, g), tokens=tokens, logprobs=logprobs,
                            lengths=jnp.ones((b,), jnp.int32), finished=_is_eos(tok, eos) | pad_row,
                            uniforms=uniforms, step=jnp.int32(1), **stats)
        return self._constrain(state)

    def _empty(self, *, rows: int, prompt_len: int, max_new: int) -> DecodeState:
        """A continuous-batching state of `rows` free rows (all finished), cache of P + M slots."""
        cfg, b, s = self.cfg, rows, prompt_len + max_new
        shape = (b, cfg.num_kv_heads, s, cfg.dim_per_head)
        if self.kernel:  # zeros through the kernel's fan-out: on huge pages, as `prefill`'s cache
            one = jnp.zeros((cfg.num_layers, 1, cfg.num_kv_heads, 1, cfg.dim_per_head), jnp.float32)
            cache = cpu_decode.fan_out((one, one), b, s)
        else:
            cache = tuple((jnp.zeros(shape, cfg.dtype), jnp.zeros(shape, cfg.dtype)) for _ in range(cfg.num_layers))
        stats = {k: jnp.zeros((b, max_new), jnp.float32) for k in ("entropy", "self_certainty")} if self.stats else {}
        state = DecodeState(cache=cache, kv_mask=jnp.zeros((b, s), bool), last=jnp.zeros((b,), jnp.int32),
                            next_pos=jnp.zeros((b,), jnp.int32), tokens=jnp.zeros((b, max_new), jnp.int32),
                            logprobs=jnp.zeros((b, max_new), jnp.float32), lengths=jnp.ones((b,), jnp.int32),
                            finished=jnp.ones((b,), bool), uniforms=jnp.zeros((b, max_new), jnp.float32),
                            step=jnp.int32(1), **stats)
        return self._constrain(state)

    def _refill(self, params, weights, state: DecodeState, ids, mask, rows, prompt_idx, sample_idx, rng,
                temperature, top_p, eos, budget):
        """Prefill prompts ids [R, P] into state rows `rows` [R G] (G rows per prompt, in order;
        an index >= B is a padding row, dropped), in place: each refilled row restarts at slot P
        with its request's own uniforms, row_uniforms(rng, prompt_idx, sample_idx), as in `prefill`."""
        _TRACES["refill"] += 1
        g, max_new = self.g, state.tokens.shape[1]
        b_new, p = ids.shape[0] * g, ids.shape[1]
        logits, cache, positions = self._prompt_caches(params, weights, ids, mask)
        uniforms = row_uniforms(rng, prompt_idx, sample_idx, max_new)
        tok, lp, stats = self._first_tokens(logits, uniforms, temperature, top_p, max_new)

        def put(dst, src, lead=()):  # rows of src into dst's `rows` (axis len(lead)), slots [0, P) only
            return dst.at[lead + (rows,)].set(src, mode="drop")

        if self.kernel:  # stacked [L, B, KVH, S, D]: the new rows' slots [0, P); later slots are masked
            full = tuple(c.at[:, rows, :, :p].set(jnp.repeat(n, g, axis=1), mode="drop")
                         for c, n in zip(state.cache, cache))
        else:
            full = jax.tree.map(lambda c, n: c.at[rows, :, :p].set(jnp.repeat(n, g, axis=0).astype(c.dtype),
                                                                   mode="drop"), state.cache, cache)
        kv_mask = jnp.concatenate([jnp.repeat(mask, g, axis=0), jnp.ones((b_new, max_new), bool)], axis=1)
        zeros_i, zeros_f = jnp.zeros((b_new, max_new), jnp.int32), jnp.zeros((b_new, max_new), jnp.float32)
        new = state.replace(
            cache=full, kv_mask=put(state.kv_mask, kv_mask), last=put(state.last, tok),
            next_pos=put(state.next_pos, jnp.repeat(positions[:, -1] + 1, g)),
            tokens=put(state.tokens, zeros_i.at[:, 0].set(tok)), logprobs=put(state.logprobs, zeros_f.at[:, 0].set(lp)),
            lengths=put(state.lengths, jnp.ones((b_new,), jnp.int32)),
            finished=put(state.finished, _is_eos(tok, eos) | (budget <= 1)), uniforms=put(state.uniforms, uniforms),
            **{k: put(getattr(state, k), x) for k, x in stats.items()})
        return self._constrain(new)

    def _compact(self, state: DecodeState, keep, live) -> DecodeState:
        """The rows `keep` [B'] of the state as a state of B' rows (continuous batching's drain: once
        no prompt waits, the live rows move to a smaller batch); rows with `live` False are free."""
        _TRACES["refill"] += 1
        take = lambda x: jnp.take(x, keep, axis=0)
        cache = (tuple(jnp.take(c, keep, axis=1) for c in state.cache) if self.kernel
                 else jax.tree.map(take, state.cache))
        rows = {f: take(getattr(state, f)) for f in ("kv_mask", "last", "next_pos", "tokens", "logprobs", "lengths",
                                                     "uniforms")}
        stats = {k: take(getattr(state, k)) for k in ("entropy", "self_certainty")} if self.stats else {}
        new = state.replace(cache=cache, finished=take(state.finished) | ~live, **rows, **stats)
        return self._constrain(new)

    def _decode(self, params, weights, state: DecodeState, limit, temperature, top_p, eos, budget=None,
                refill_at=None, *, per_row: bool = False):
        """Decode until step `limit` or every row has finished.

        Lockstep (per_row=False): every row writes slot P + step - 1 and column `step`.
        per_row=True (continuous batching): row r writes slot P + lengths[r] - 1 and column
        lengths[r], so rows refilled at different times each run their own sequence; a row also
        finishes at `budget` tokens, and the loop exits early once `refill_at` rows are free.
        """
        _TRACES["decode"] += 1
        cfg = self.cfg
        m = state.tokens.shape[1]
        p = state.kv_mask.shape[1] - m
        if self.kernel:
            step = functools.partial(cpu_decode.decode_step, cfg, weights)
        else:
            step = functools.partial(decode_step, cfg, params, unstack_layers(params, cfg), weights)  # unstacked once

        def cond(s: DecodeState):
            go = (s.step < limit) & ~jnp.all(s.finished)
            return go & (jnp.sum(s.finished) < refill_at) if per_row else go

        def body(s: DecodeState):
            live = ~s.finished
            if per_row:  # each row at its own column; a finished row stays on its own (< M, in bounds)
                col = jnp.minimum(s.lengths, m - 1)
                hot = (jnp.arange(m)[None, :] == col[:, None]) & live[:, None]  # finished rows keep theirs
                u = jnp.take_along_axis(s.uniforms, col[:, None], axis=1)[:, 0]
                put = lambda arr, x: jnp.where(hot, x[:, None], arr)
                slot = p + col - 1
            else:  # column `step` of every row: 0 for finished rows
                u = jax.lax.dynamic_index_in_dim(s.uniforms, s.step, axis=1, keepdims=False)
                put = lambda arr, x: jax.lax.dynamic_update_slice_in_dim(arr, jnp.where(live, x, 0)[:, None], s.step, 1)
                slot = p + s.step - 1
            logits, cache = step(s.cache, s.last, s.next_pos, slot, s.kv_mask)
            tok, lp = choose(logits, u, self.mode, temperature, top_p)
            stats = {}
            if self.stats:  # from the same logits, in the same loop body: no second pass
                for name, x in zip(("entropy", "self_certainty"), token_stats(logits)):
                    stats[name] = put(getattr(s, name), x)
            lengths = s.lengths + live.astype(jnp.int32)
            finished = s.finished | _is_eos(tok, eos)
            if per_row:
                finished = finished | (lengths >= budget)
            return s.replace(cache=cache, last=tok, next_pos=s.next_pos + 1, tokens=put(s.tokens, tok),
                             logprobs=put(s.logprobs, lp),
                             lengths=lengths, finished=finished, step=s.step + 1, **stats)

        return self._constrain(jax.lax.while_loop(cond, body, state))


_PROGRAMS: dict[Any, _Programs] = {}


def _programs(model, mode, num_samples, mesh, rules, kernel, stats=False) -> _Programs:
    key = (repr(model.cfg), mode, num_samples, id(mesh) if mesh is not None else None, repr(rules), kernel)
    if stats:  # the default programs keep their key
        key += ("token_stats",)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = _Programs(model, mode, num_samples, mesh, rules, kernel, stats)
    return _PROGRAMS[key]


@dataclasses.dataclass
class Plan:
    """What the decode calls of one request need besides the state."""
    programs: _Programs
    params: Any
    weights: Any  # the decode step's extra weights: the [H, V] head, or the CPU kernel's packed tree
    temperature: jax.Array
    top_p: jax.Array
    eos: jax.Array
    num_prompts: int
    num_samples: int
    max_new_tokens: int

    def decode(self, state: DecodeState, limit: int) -> DecodeState:
        """Run the decode loop (donating `state`) until step `limit` or every row has finished."""
        return self.programs.decode(self.params, self.weights, state, jnp.int32(limit), self.temperature, self.top_p,
                                    self.eos)


def prefill(model, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, num_samples: int = 1,
            temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, eos_token_ids: Sequence[int] = (),
            rng=None, mesh=None, rules=None, buckets: Buckets | None = None, max_cache_len: int | None = None,
            pad_token_id: int = 0, decode_kernel: str = "auto", token_stats: bool = False,
            rows: int | None = None, prompt_offset: int = 0) -> tuple[DecodeState, Plan]:
    """Validate, bucket and prefill: the state after the first generated token, and its plan.
    token_stats: the state also carries per-token entropy and self-certainty (see generate).
    rows: continuous batching instead (`continuous.py`): an empty state of `rows` free rows."""
    cfg = model.cfg
    max_len = int(max_cache_len or cfg.max_position_embeddings)
    validate(prompts, max_new_tokens, num_samples, temperature, top_p, top_k, cfg.vocab_size, max_len)
    buckets = buckets or DEFAULT_BUCKETS
    n, g, max_new_tokens = len(prompts), int(num_samples), int(max_new_tokens)
    mode = SamplingMode.from_args(float(temperature), float(top_p), int(top_k), cfg.vocab_size)
    p_len = buckets.prompt(max(len(x) for x in prompts))
    n_pad = buckets.batch(n)
    m = buckets.new(max_new_tokens)

    ids, mask = left_padded(prompts, n_pad, p_len, pad_token_id)
    eos = np.full((max(4, -(-len(eos_token_ids) // 4) * 4),), -1, np.int32)
    eos[:len(eos_token_ids)] = list(eos_token_ids)

    kernel = cpu_decode.use_cpu_kernel(decode_kernel, cfg, mesh)
    progs = _programs(model, mode, g, mesh, rules, kernel, bool(token_stats))
    if mesh is not None:
        params = place_params(params, model, mesh, rules)
    temp = jnp.float32(temperature if temperature > 0 else 1.0)
    top_p_arr = jnp.float32(top_p)
    eos_arr = jnp.asarray(eos)
    weights = progs.weights(params)
    if rows is not None:
        state = progs.empty(rows=int(rows), prompt_len=p_len, max_new=m)
    else:
        state = progs.prefill(params, weights, jnp.asarray(ids), jnp.asarray(mask), raw_key(rng), jnp.int32(n),
                              jnp.int32(prompt_offset), temp, top_p_arr, eos_arr, max_new=m)
    plan = Plan(programs=progs, params=params, weights=weights, temperature=temp, top_p=top_p_arr,
                eos=eos_arr, num_prompts=n, num_samples=g, max_new_tokens=max_new_tokens)
    return state, plan


def generate(model, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, num_samples: int = 1,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, eos_token_ids: Sequence[int] = (),
             rng=None, stop_strings: Sequence[str] = (), tokenizer=None, stop_check_every: int = 16,
             mesh=None, rules=None, buckets: Buckets | None = None, max_cache_len: int | None = None,
             pad_token_id: int = 0, decode_kernel: str = "auto", token_stats: bool = False,
             max_rows: int | None = None, refill_rows: int | None = None, prompt_offset: int = 0) -> SampleOutput:
    """Sample `num_samples` completions of every prompt (see the module docstring).

    tokens [N, G, max_new_tokens] int32; lengths [N, G] int32 (a completion ends after its first
    eos token, or the end of its first stop string, both included); logprobs [N, G,
    max_new_tokens] float32 under the model's own log-softmax. Positions past a row's length
    hold `pad_token_id` and logprob 0. temperature=0 is greedy.
    stop_strings (with `tokenizer`): checked on the host every `stop_check_every` decode steps.
    mesh / rules: shard params (no copy when already placed) and the cache, rows over the batch axes.
    buckets: the static sizes for prompt length, prompt count and max_new_tokens.
    max_cache_len: longest prompt + max_new_tokens allowed (default: the model's max positions).
    decode_kernel: "auto" runs the prefill and each decode step as fused CPU calls where they apply
    (float32 on one CPU device, see cpu_decode.py), "xla" always uses XLA operations, "cpu"
    requires the kernel.
    token_stats: also return `entropy` and `self_certainty` [N, G, max_new_tokens] float32: for each
    generated token, H(p) and KL(U || p) of the model's untempered distribution p at that step,
    computed from the logits the decode step already returns (XLA or CPU kernel), 0 past lengths.
    Off by default: the default programs are unchanged and compute neither.
    max_rows: continuous batching (`continuous.py`): decode at most this many rows at once (rounded
    down to a multiple of num_samples); a row that finishes is refilled with the next waiting
    prompt once `refill_rows` rows are free (default max(G, max_rows / 8)), and once none waits the
    batch halves as its rows end. Same tokens and logprobs as without it; None: every row at once,
    in lockstep until the longest ends.
    prompt_offset: prompt i draws the random stream of prompt prompt_offset + i, so that calls on
    consecutive slices of a list of prompts, with one key, sample what one call on the list would.
    """
    if stop_strings and tokenizer is None:
        raise ValueError("stop_strings need a tokenizer to decode the completions")
    if max_rows is not None and int(max_rows) < int(num_samples):
        raise ValueError(f"max_rows={max_rows} must be >= num_samples={num_samples}: a prompt's rows start together")
    rows = None
    if max_rows is not None:
        rows = min(int(max_rows), len(prompts) * int(num_samples)) // int(num_samples) * int(num_samples)
    state, plan = prefill(model, params, prompts, max_new_tokens=max_new_tokens, num_samples=num_samples,
                          temperature=temperature, top_p=top_p, top_k=top_k, eos_token_ids=eos_token_ids, rng=rng,
                          mesh=mesh, rules=rules, buckets=buckets, max_cache_len=max_cache_len,
                          pad_token_id=pad_token_id, decode_kernel=decode_kernel, token_stats=token_stats, rows=rows,
                          prompt_offset=prompt_offset)
    n, g, max_new_tokens = plan.num_prompts, plan.num_samples, plan.max_new_tokens
    checker = StopChecker(stop_strings, tokenizer) if stop_strings else None
    if rows is not None:
        from zeroplay.sampling.continuous import decode_continuous

        res = decode_continuous(state, plan, prompts, prompt_len=state.kv_mask.shape[1] - state.tokens.shape[1],
                                rows=rows, rng=raw_key(rng), buckets=buckets or DEFAULT_BUCKETS,
                                pad_token_id=pad_token_id, checker=checker, stop_check_every=stop_check_every,
                                refill_rows=refill_rows, prompt_offset=prompt_offset)
        return sample_output(res, n, g, max_new_tokens, pad_token_id, checker, token_stats, res["decode_steps"],
                       res["row_steps"])
    if checker is None:
        state = plan.decode(state, max_new_tokens)
    else:
        while True:
            done_rows = checker.update(np.asarray(state.tokens), np.asarray(state.lengths))
            if done_rows.any():
                state = state.replace(finished=state.finished | jnp.asarray(done_rows))
            done = int(state.step)
            if done >= max_new_tokens or bool(jnp.all(state.finished)):
                break
            state = plan.decode(state, min(done + int(stop_check_every), max_new_tokens))

    res = {"tokens": np.asarray(state.tokens)[: n * g, :max_new_tokens],
           "logprobs": np.asarray(state.logprobs)[: n * g, :max_new_tokens],
           "lengths": np.minimum(np.asarray(state.lengths)[: n * g], max_new_tokens)}
    for name in ("entropy", "self_certainty") if token_stats else ():
        res[name] = np.asarray(getattr(state, name))[: n * g, :max_new_tokens]
    steps = int(state.step) - 1
    return sample_output(res, n, g, max_new_tokens, pad_token_id, checker, token_stats, steps, n * g * (steps + 1))
