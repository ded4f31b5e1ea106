"""The loop's sampler and stage timer: `ctx.sample` for the games, and the per-stage seconds of a step.

`Sampler` runs one role's prompts through its policy's live params (no copy) in chunks of
`loop.sample_batch`, with a key that is a function of (seed, step, call) only, so that a resumed
run samples exactly what an uninterrupted one would; under multi-host each process samples its
share of the chunks on its own devices and the rows are gathered. It also counts the long tail
(`sample/<role>/finished_row_share`, `sample/<role>/decode_steps`). `StageTimer` gives the
`time/<stage>` figures of every metrics row, nested stages excluded from their parents.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import numpy as np

from zeroplay.games import Completion, Sampling
from zeroplay.models.tokenizer import eos_ids
from zeroplay.parallel.multihost import allgather_objects, is_multihost
from zeroplay.runconfig import RunConfig

if TYPE_CHECKING:
    from zeroplay.loop import PolicyRuntime


# -- timing -------------------------------------------------------------------------------------

class StageTimer:
    """Seconds per stage within a step; `with timer("verify"):`. Nested stages are excluded from
    their parent (a game's nested sampling inside "score" counts as sampling, not scoring), except
    inside "eval": the evaluation's own sampling is evaluation time, not the step's sampling."""

    def __init__(self, on_stage: Callable[[str], None] | None = None):
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []
        self._on_stage = on_stage

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.in_eval:
            yield
            return
        if self._on_stage:
            self._on_stage(stage)
        frame = [stage, time.perf_counter(), 0.0]  # name, start, time spent in nested stages
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            total = time.perf_counter() - frame[1]
            self.seconds[stage] += total - frame[2]
            if self._stack:
                self._stack[-1][2] += total

    @property
    def in_eval(self) -> bool:
        return bool(self._stack) and self._stack[0][0] == "eval"

    def metrics(self) -> dict[str, float]:
        out = {f"time/{k}": v for k, v in self.seconds.items()}
        for group in ("sample", "train"):
            parts = [v for k, v in self.seconds.items() if k.startswith(group + "/")]
            if parts:
                out[f"time/{group}"] = sum(parts)
        return out


# -- sampling -----------------------------------------------------------------------------------

class Sampler:
    """`ctx.sample` for a game: one role's prompts through its policy's live params, in chunks of
    `loop.sample_batch` prompts. The key of a call at step s is fold_in(fold_in(seed, s), c), c the
    step's count of chunks before it; a chunk's prompts draw the streams of their places in the
    call (`generate(prompt_offset=...)`), so the chunks sample what one call would.

    Multi-host: chunk j of a call is sampled by process j mod P on its own devices (a copy of the
    params gathered from the global mesh once per update, on a mesh of the local devices), then
    every process's rows are gathered, so every process returns the same completions as one
    process sampling every chunk with the same keys would."""

    def __init__(self, cfg: RunConfig, policies: dict[str, PolicyRuntime], tokenizer, mesh, timer: StageTimer):
        self.cfg, self.policies, self.tok, self.mesh, self.timer = cfg, policies, tokenizer, mesh, timer
        self.eos = eos_ids(tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.step, self.calls = 0, 0
        self.tail: dict[str, list[int]] = {}  # role -> [generated tokens, row-steps, decode steps] this step
        self.local_mesh = _local_mesh(cfg) if is_multihost() else None
        self._local_params: dict[tuple[str, bool], tuple[Any, Any]] = {}  # -> (global params, local copy)

    def _sampling_params(self, policy: PolicyRuntime, teacher: bool):
        """(params, mesh) the sampler runs: the live global params, or (multi-host) their copy on
        this process's devices, refreshed when the policy's params object changes."""
        params = policy.teacher if teacher else policy.state.params
        if not is_multihost():
            return params, self.mesh if self.mesh.size > 1 else None
        key = (policy.name, teacher)
        cached = self._local_params.get(key)
        if cached is None or cached[0] is not params:
            from zeroplay.parallel.placement import model_param_shardings, replicated

            full = jax.jit(lambda t: t, out_shardings=replicated(self.mesh))(params)
            local = jax.tree.map(lambda x: x.addressable_data(0), full)
            del full
            if self.local_mesh.size > 1:
                local = jax.device_put(local, model_param_shardings(local, policy.model.cfg, self.local_mesh,
                                                                    self.cfg.rules))
            self._local_params[key] = cached = (params, local)
        return cached[1], self.local_mesh if self.local_mesh.size > 1 else None

    def tail_metrics(self) -> dict[str, float]:
        """Per role, the share of decoded row-steps spent on rows that had already finished (or, with
        continuous batching, were free): a lockstep call decodes every row until its longest one
        ends (issue #16's long tail); and the number of decode steps its calls ran (each reads
        every weight once: the sampling roofline)."""
        out = {}
        for role, (used, slots, steps) in self.tail.items():
            if slots:
                out[f"sample/{role}/finished_row_share"] = 1.0 - used / slots
                out[f"sample/{role}/decode_steps"] = float(steps)
        return out

    def resolve(self, role: str, sampling: Sampling | None):
        spec = self.cfg.policies[self.cfg.policy_of(role)].sampling
        s = sampling or Sampling()
        pick = lambda v, d: d if v is None else v
        return (pick(s.temperature, spec.temperature), pick(s.top_p, spec.top_p), pick(s.top_k, spec.top_k),
                pick(s.max_new_tokens, spec.max_new_tokens))

    def __call__(self, role: str, prompts: Sequence[Sequence[int]], n: int = 1,
                 sampling: Sampling | None = None) -> list[list[Completion]]:
        from zeroplay.sampling import generate

        if not prompts:
            return []
        policy = self.policies[self.cfg.policy_of(role)]
        temperature, top_p, top_k, max_new = self.resolve(role, sampling)
        stats = {"token_stats": True} if sampling is not None and sampling.token_stats else {}
        cap = policy.spec.sampling.max_prompt_tokens
        prompts = [list(p)[-cap:] for p in prompts]
        chunk = max(1, self.cfg.loop.sample_batch // max(n, 1))
        # Continuous batching: one call, chunk x n rows decoding at once, each refilled as it ends.
        rows_at_once = {"max_rows": chunk * n} if self.cfg.loop.continuous_batching and not is_multihost() else {}
        if rows_at_once:
            chunk = len(prompts)
        out: list[list[Completion]] = []
        with self.timer(f"sample/{role}"):
            params, mesh = self._sampling_params(policy, self.cfg.roles[role].endswith("@teacher"))
            starts = list(range(0, len(prompts), chunk))
            first_call = self.calls
            self.calls += len(starts)
            rows: dict[int, list] = {}  # chunk index -> [(tokens, logprobs, extras) per sample] per prompt
            work: dict[int, tuple[int, int]] = {}  # chunk index -> (row-steps, decode steps incl. the prefill's)
            for j, lo in enumerate(starts):
                if is_multihost() and j % jax.process_count() != jax.process_index():
                    continue
                # One key per call; chunk j's prompts draw the streams of their places in the call,
                # so chunked and continuous sampling give the same completions.
                key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(self.cfg.seed), self.step),
                                         first_call)
                res = generate(policy.model, params, prompts[lo:lo + chunk], max_new_tokens=max_new,
                               num_samples=n, temperature=temperature, top_p=top_p, top_k=top_k,
                               eos_token_ids=self.eos, rng=key, pad_token_id=self.pad, prompt_offset=lo,
                               mesh=mesh, rules=self.cfg.rules, **stats, **rows_at_once)
                work[j] = (res.row_steps, res.decode_steps + 1)
                rows[j] = [[(res.tokens[i, g, :int(res.lengths[i, g])].astype(np.int32),
                             np.asarray(res.logprobs[i, g, :int(res.lengths[i, g])], np.float32),
                             {name: np.asarray(getattr(res, name)[i, g, :int(res.lengths[i, g])], np.float32)
                              for name in ("entropy", "self_certainty") if stats})
                            for g in range(n)] for i in range(res.tokens.shape[0])]
            if is_multihost():
                rows = _gather_chunks(rows, (role, len(prompts), n, self.step, first_call))
            if not self.timer.in_eval:
                acc = self.tail.setdefault(role, [0, 0, 0])
                for j, chunk_rows in rows.items():
                    lengths = [len(t) for samples in chunk_rows for t, _, _ in samples]
                    acc[0] += sum(lengths)
                    if j in work and rows_at_once:  # rows x steps of the refilled batch
                        acc[1], acc[2] = acc[1] + work[j][0], acc[2] + work[j][1]
                    else:  # lockstep: every row until the longest ends (also the other processes' chunks)
                        acc[1] += len(lengths) * max(lengths, default=0)
                        acc[2] += max(lengths, default=0)
            for j, lo in enumerate(starts):
                for i, samples in enumerate(rows[j]):
                    prompt, row = prompts[lo + i], []
                    for toks_arr, logprobs, extra in samples:
                        toks = [int(t) for t in toks_arr]
                        row.append(Completion(tokens=toks, logprobs=logprobs,
                                              text=self.tok.decode(toks, skip_special_tokens=True),
                                              finished=bool(toks and toks[-1] in self.eos), prompt=prompt,
                                              **extra))
                    out.append(row)
        return out


def _local_mesh(cfg: RunConfig):
    """The sampler's mesh on this process's devices (multi-host): the config's tensor size where
    it divides them, the rest on fsdp."""
    from zeroplay.parallel import mesh_from_config

    local = jax.local_devices()
    tensor = int(cfg.mesh.get("tensor", 1))
    tensor = tensor if tensor > 0 and len(local) % tensor == 0 else 1
    return mesh_from_config({"data": 1, "fsdp": -1, "tensor": tensor}, devices=local)


def _gather_chunks(rows: dict[int, list], call: tuple) -> dict[int, list]:
    """Every process's sampled chunks on every process; `call` (role, prompts, n, step, first key)
    must agree, or the processes have left lockstep (one clear error instead of a wrong batch)."""
    parts = allgather_objects((call, rows))
    if any(c != call for c, _ in parts):
        raise RuntimeError(f"multi-host processes sampled different calls (role, prompts, n, step, key): "
                           f"{[c for c, _ in parts]}; their game states differ")
    merged: dict[int, list] = {}
    for _, r in parts:
        merged.update(r)
    return merged
