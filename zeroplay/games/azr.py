"""Absolute Zero Reasoner (Zhao et al. 2025, arXiv 2505.03335) as a zeroplay `Game`.

One shared model plays two roles (`proposer`, `solver`) on three tasks over Python triplets
(program p, input i, output o = p(i)): `code_o` deduction (p, i -> o), `code_i` abduction
(p, o -> some i' with p(i') = o), `code_f` induction (shown I/O pairs + a message -> p).
Constants and rules follow the reference implementation (LeapLabTHU/Absolute-Zero-Reasoner @
a82124e, selfplay scripts) as summarised in /work/shared/docs/methods.md section 1; where the
code and the paper differ, the code wins and a comment says so.

A step is one phase, "play":
- `requests`: per task, `batch_per_task_role` propose prompts (K reference triplets from that
  task's buffer; induction: one program from the union of the deduction and abduction buffers)
  and `batch_per_task_role` solve prompts from the buffers as they stand (up to `new_mix`
  programs added in the previous step, the rest uniform from the whole buffer); n=1 each.
- `score`: validates the proposals in the sandbox (blocking), then checks the solver answers in
  a background thread while the main thread samples the learnability estimate (each valid
  proposal's solve prompt, `learnability_samples` times) through `ctx.sample`; then checks those
  answers, computes the composite rewards, and adds every valid proposal to its buffer.
Episodes carry `bucket = f"{task}/{role}"` for TRR++ (REINFORCE++ whitening per bucket).

The state is plain JSON-able data:
    {"buffers": {"input": [...], "output": [...], "problem": [...]},   # abduction, deduction,
     "step_added": {"input": [step, ...], ...},                          # induction (reference
     "seed": {...}}                                                       # names); a tag per entry
Triplet entries are {"snippet", "input", "output", "imports"}; induction entries are
{"snippet", "inputs", "outputs", "message", "imports", "n_shown"} (the first `n_shown` pairs are
shown to the solver, the rest are the hidden checks).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import threading
import time
from typing import Mapping, Sequence

import numpy as np

from zeroplay.games import azr_text as text
from zeroplay.games.base import Completion, Context, Episode, Game, Request, Sampling
from zeroplay.verifiers import code as executor

TASKS = ("code_i", "code_o", "code_f")
BUFFER_OF = {"code_i": "input", "code_o": "output", "code_f": "problem"}
ROLES = ("proposer", "solver")
_PROMPT_ATTEMPTS = 16  # re-draws of references for a propose prompt over max_prompt_tokens


@dataclasses.dataclass(frozen=True)
class Settings:
    """AZR's constants; defaults are the reference selfplay scripts'."""
    tasks: tuple = TASKS                # code_i abduction, code_o deduction, code_f induction
    batch_per_task_role: int = 64       # prompts per (task, role): 6 x 64 = 384 sequences/step
    k_references: int = 6               # `io_n`: reference triplets in a propose prompt
    learnability_samples: int = 8       # `n_samples`: solver samples per valid proposal
    # The learnability estimate must be sampled (methods.md pitfall: reference master passes
    # `validate=True`, which newer veRL turns into greedy decoding, so all 8 samples agree and
    # s in {0, 1}). None: the solver's configured sampling temperature (AZR: 1.0 for every role).
    learnability_temperature: float | None = None
    induction_inputs: int = 10          # `num_inputs` an induction proposal must give
    induction_shown: int = 5            # shown to the solver (reference: N // 2); rest hidden
    buffer_cap: int = 16384             # `max_programs`; truncation keeps the FIRST entries
    seed_size: int = 256                # data_len 64 x seed_batch_factor 4
    seed_max_rounds: int = 16           # per seeding stage; then go on with what is there
    new_mix: int = 64                   # "max_new": solve prompts from the previous step's programs
    new_window: int = 1                 # `past_epoch_window` (= update_iteration = 1)
    timeout_s: float = 10.0             # per execution
    reject_multiple_functions: bool = True  # Llama script: False
    # The reference counts functions with `^\s*def` per line: methods and nested functions
    # count too, so with the rejection on, a program with a helper class is rejected (methods.md
    # reads "top-level def"; the code is followed). False: count unindented defs only.
    count_nested_defs: bool = True
    banned_imports: tuple = executor.AZR_BANNED_IMPORTS
    format_penalty: float = -1.0        # format error or invalid proposal
    wrong_penalty: float = -0.5         # well formatted, r_role = 0
    max_program_chars: int = 100_000    # longer proposed programs or inputs are invalid
    max_prompt_tokens: int = 5600       # `content_max_length`: longer prompts are not used

    def __post_init__(self):
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"azr tasks must be distinct names from {TASKS}, got {self.tasks}")
        if self.learnability_temperature is not None and not self.learnability_temperature > 0:
            raise ValueError(
                "azr learnability_temperature must be > 0: the solve-rate estimate has to be "
                "sampled, greedy decoding makes every sample agree (s in {0, 1}, reward 0); got "
                f"{self.learnability_temperature!r}")
        if not 0 < self.induction_shown < self.induction_inputs:
            raise ValueError("azr needs 0 < induction_shown < induction_inputs (some pairs shown, "
                             f"some hidden); got {self.induction_shown}, {self.induction_inputs}")
        for name in ("batch_per_task_role", "k_references", "learnability_samples",
                     "buffer_cap", "seed_size", "new_window", "max_program_chars",
                     "max_prompt_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"azr {name} must be >= 1, got {getattr(self, name)}")
        if self.seed_max_rounds < 0 or self.new_mix < 0 or not self.timeout_s > 0:
            raise ValueError("azr seed_max_rounds and new_mix must be >= 0, timeout_s > 0")


# -- rewards -----------------------------------------------------------------------------------

def proposer_reward(solve_rate: float) -> float:
    """Learnability: 1 - s for 0 < s < 1, else 0 (nothing to learn from an always- or
    never-solved task)."""
    s = float(solve_rate)
    return 1.0 - s if 0.0 < s < 1.0 else 0.0


def composite_reward(r_role: float, well_formatted: bool, *, format_penalty: float = -1.0,
                     wrong_penalty: float = -0.5) -> float:
    """R = r_role if well formatted and r_role > 0; `wrong_penalty` if well formatted and
    r_role = 0; `format_penalty` otherwise (a proposal counts as well formatted only when it is
    also valid). The paper's Eq. 4/6 would give 0 to valid proposals with s in {0, 1}; the
    reference code gives -0.5 (issue #37): the code is followed."""
    if not well_formatted:
        return float(format_penalty)
    return float(r_role) if r_role > 0 else float(wrong_penalty)


# -- buffers -----------------------------------------------------------------------------------

def add_to_buffer(entries: Sequence, steps: Sequence[int], new: Sequence, step: int,
                  cap: int) -> tuple[list, list, int]:
    """Append `new` tagged with `step`, then truncate to the FIRST `cap` entries (the
    reference's `truncate_datasets`: once full, new programs are dropped). Returns the new
    lists and how many entries were dropped."""
    entries = list(entries) + list(new)
    steps = list(steps) + [int(step)] * len(new)
    dropped = max(0, len(entries) - cap)
    return entries[:cap], steps[:cap], dropped


def select_solve_indices(steps: Sequence[int], step: int, batch: int, new_mix: int,
                         new_window: int, rng: np.random.Generator) -> list[int]:
    """The reference's "max_new" mix: up to `new_mix` entries added within the last
    `new_window` steps (without replacement), the rest uniform over the whole buffer (without
    replacement while it is large enough; the two parts may overlap, as in the reference).
    The reference finds the new ones as the buffer's last `count` entries, which once the cap
    has dropped them are old ones; here they are found by their step tags."""
    n = len(steps)
    if n == 0 or batch <= 0:
        return []
    recent = [i for i, t in enumerate(steps) if t >= step - new_window]
    k = min(new_mix, batch, len(recent))
    chosen = [recent[i] for i in rng.choice(len(recent), size=k, replace=False)] if k else []
    rest = batch - k
    if rest:
        chosen += [int(i) for i in rng.choice(n, size=rest, replace=rest > n)]
    return chosen


def _key(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True)


def dedup_extend(seed: list, new: Sequence[dict]) -> int:
    """Add the entries of `new` not already in `seed` (exact JSON equality), in place; returns
    how many were added. Only the seed set is deduplicated (reference `update_seed`)."""
    seen = {_key(e) for e in seed}
    added = 0
    for e in new:
        k = _key(e)
        if k not in seen:
            seen.add(k)
            seed.append(e)
            added += 1
    return added


def seed_triplet() -> dict:
    return {"snippet": text.SEED_PROGRAM, "input": text.SEED_INPUT, "output": text.SEED_INPUT,
            "imports": []}


def seed_problem() -> dict:
    xs = list(text.SEED_INDUCTION_INPUTS)
    return {"snippet": text.SEED_PROGRAM, "inputs": xs, "outputs": list(xs),
            "message": text.SEED_INDUCTION_MESSAGE, "imports": [], "n_shown": len(xs) // 2}


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else 0.0


# -- the game ----------------------------------------------------------------------------------

class AZRGame(Game):
    roles = ROLES
    estimator = "reinforce_pp"  # TRR++: (R - mean_b) / sqrt(var_b + 1e-8) per (task, role) bucket
    estimator_kwargs = {"token_weighted": True}

    def __init__(self, settings: Settings | None = None,
                 pool: executor.SandboxPool | None = None) -> None:
        self.settings = settings or Settings()
        self._pool = pool
        # Only one thread drives the sandbox pool at a time (it is not promised thread-safe);
        # score() also orders its work so that this lock is never contended.
        self._pool_lock = threading.Lock()

    @property
    def pool(self) -> executor.SandboxPool:
        return self._pool or executor.get_pool()

    # -- prompts ---------------------------------------------------------------------------
    def _prompt_ids(self, ctx: Context, body: str) -> list[int] | None:
        """Token ids of the R1-wrapped prompt, or None when over `max_prompt_tokens`."""
        ids = list(ctx.encode(text.r1_prompt(body)))
        return ids if len(ids) <= self.settings.max_prompt_tokens else None

    def _propose_request(self, task: str, refs: Sequence[dict], ctx: Context) -> Request | None:
        """A propose prompt for `task` with references drawn from `refs` (that task's buffer;
        for induction the union of the abduction and deduction buffers), re-drawn while the
        prompt is over `max_prompt_tokens`; None when no draw fits."""
        s = self.settings
        if not refs:
            return None
        for _ in range(_PROMPT_ATTEMPTS):
            if task == "code_f":
                ref = refs[int(ctx.rng.integers(len(refs)))]
                ids = self._prompt_ids(ctx, text.induction_propose_prompt(
                    ref["snippet"], s.induction_inputs))
                meta = {"kind": "propose", "task": task,
                        "program": {"snippet": ref["snippet"],
                                    "imports": list(ref.get("imports", []))}}
            else:
                k = min(s.k_references, len(refs))
                chosen = [refs[int(i)] for i in ctx.rng.choice(len(refs), size=k, replace=False)]
                ids = self._prompt_ids(ctx, text.propose_prompt(task, chosen, s.banned_imports))
                meta = {"kind": "propose", "task": task, "n_references": k}
            if ids is not None:
                return Request(role="proposer", prompt=ids, n=1, meta=meta)
        return None

    def _solve_requests(self, task: str, state: Mapping, ctx: Context) -> list[Request]:
        s = self.settings
        key = BUFFER_OF[task]
        buf, steps = state["buffers"][key], state["step_added"][key]
        out = []
        for i in select_solve_indices(steps, ctx.step, s.batch_per_task_role, s.new_mix,
                                      s.new_window, ctx.rng):
            ids = self._prompt_ids(ctx, text.solve_prompt(task, buf[i]))
            if ids is not None:
                out.append(Request(role="solver", prompt=ids, n=1,
                                   meta={"kind": "solve", "task": task, "entry": buf[i],
                                         "index": i, "step_added": steps[i]}))
        # Prompts over the length cap are left out, and the batch refilled from the ones kept
        # (the reference's "upsample" in get_pred_code_io_data).
        kept = len(out)
        while out and len(out) < s.batch_per_task_role:
            out.append(out[int(ctx.rng.integers(kept))])
        return out

    def requests(self, phase: str, state: Mapping, ctx: Context) -> list[Request]:
        if phase != "play":
            raise ValueError(f"AZR has one phase, 'play'; got {phase!r}")
        buffers = state["buffers"]
        refs = {"code_i": buffers["input"], "code_o": buffers["output"],
                "code_f": list(buffers["input"]) + list(buffers["output"])}
        reqs: list[Request] = []
        for task in self.settings.tasks:
            for _ in range(self.settings.batch_per_task_role):
                r = self._propose_request(task, refs[task], ctx)
                if r is not None:
                    reqs.append(r)
        for task in self.settings.tasks:
            reqs.extend(self._solve_requests(task, state, ctx))
        return reqs

    # -- verification (sandbox) --------------------------------------------------------------
    def _validate_triplets(self, parsed: Sequence[dict | None]) -> list[dict | None]:
        """Proposed (program, input) pairs -> buffer entries (output = repr) or None. Host-side
        checks first (size, ast.parse), then the sandbox: ban list, two runs in each of two
        processes, every repr equal; any error or timeout -> None."""
        s = self.settings
        todo = [i for i, p in enumerate(parsed)
                if p is not None and len(p["snippet"]) <= s.max_program_chars
                and len(p["input"]) <= s.max_program_chars and text.program_parses(p["snippet"])]
        out: list[dict | None] = [None] * len(parsed)
        if not todo:
            return out
        with self._pool_lock:
            results = executor.check_deterministic_batch(
                [(parsed[i]["snippet"], parsed[i]["input"]) for i in todo],
                timeout_s=s.timeout_s, banned_imports=s.banned_imports, pool=self.pool)
        for i, r in zip(todo, results):
            if r.ok and r.output is not None:
                out[i] = {"snippet": parsed[i]["snippet"], "input": parsed[i]["input"],
                          "output": r.output, "imports": list(parsed[i]["imports"])}
        return out

    def _validate_problems(self, parsed: Sequence[dict | None],
                           programs: Sequence[dict]) -> list[dict | None]:
        """Induction proposals (inputs + message for a given buffer program) -> entries or None:
        every input must run deterministically on the program (the same double run in two
        processes; no ban list here, as in the reference: the program was already validated).
        One sandbox job per proposal covers all its inputs (`timeout_s` per input)."""
        s = self.settings
        jobs, todo = [], []
        for i, (p, prog) in enumerate(zip(parsed, programs)):
            if p is None or any(len(x) > s.max_program_chars for x in p["inputs"]):
                continue
            todo.append(i)
            jobs.append(executor.call_job(prog["snippet"], p["inputs"],
                                          timeout_s=s.timeout_s * len(p["inputs"]),
                                          repeats=2, processes=2))
        out: list[dict | None] = [None] * len(parsed)
        if not jobs:
            return out
        with self._pool_lock:
            results = self.pool.execute(jobs)
        for i, r in zip(todo, results):
            p = parsed[i]
            if r.ok and len(r.outputs) == len(p["inputs"]) and all(
                    isinstance(o, str) for o in r.outputs):
                out[i] = {"snippet": programs[i]["snippet"], "inputs": list(p["inputs"]),
                          "outputs": list(r.outputs), "message": text.clean_text(p["message"]),
                          "imports": list(programs[i].get("imports", [])),
                          "n_shown": s.induction_shown}
        return out

    def _check_answers(self, items: Sequence[tuple]) -> list[bool]:
        """(task, entry, answer) -> correct? `answer` is the predicted output (deduction), input
        (abduction) or program (induction); None is wrong. Identical checks run once."""
        s = self.settings
        jobs: dict[str, dict] = {"code_o": {}, "code_i": {}, "code_f": {}}
        keys = []
        for task, entry, answer in items:
            if answer is None:
                keys.append(None)
                continue
            if task == "code_o":
                k = (answer, entry["output"])
            elif task == "code_i":
                k = (entry["snippet"], answer, entry["output"])
            else:
                # The reference puts the gold program's imports in front of the answer.
                prog = "\n".join(list(entry.get("imports", [])) + [answer])
                n = int(entry["n_shown"])
                k = (prog, tuple(zip(entry["inputs"][n:], entry["outputs"][n:])))
            jobs[task].setdefault(k, None)
            keys.append((task, k))
        with self._pool_lock:
            for task, todo in jobs.items():
                if not todo:
                    continue
                ks = list(todo)
                if task == "code_o":
                    got = executor.check_output_prediction_batch(ks, pool=self.pool)
                elif task == "code_i":
                    got = executor.check_input_prediction_batch(ks, timeout_s=s.timeout_s,
                                                                pool=self.pool)
                else:
                    hidden = max(len(k[1]) for k in ks)
                    got = executor.check_program_prediction_batch(
                        ks, timeout_s=s.timeout_s * max(1, hidden), pool=self.pool)
                todo.update(zip(ks, got))
        return [False if k is None else bool(jobs[k[0]][k[1]]) for k in keys]

    # -- parsing ---------------------------------------------------------------------------
    def _parse_proposal(self, task: str, answer: str) -> dict | None:
        s = self.settings
        if task == "code_f":
            return text.parse_induction_proposal(answer, s.induction_inputs)
        return text.parse_proposal(answer, reject_multiple_functions=s.reject_multiple_functions,
                                   nested_defs=s.count_nested_defs)

    @staticmethod
    def _solver_answer(task: str, answer: str) -> str | None:
        if task == "code_f":
            return text.extract_code_answer(answer)
        return text.extract_io_answer(answer, "input" if task == "code_i" else "output")

    # -- seeding ---------------------------------------------------------------------------
    def init_state(self, ctx: Context) -> dict:
        """Buffers from the identity seed, grown by the untrained model: rounds of deduction/
        abduction propose prompts (references from the seed set) until it holds `seed_size`
        distinct valid triplets or `seed_max_rounds` rounds have run; then, with induction on,
        rounds of induction propose prompts over the seed programs, likewise. As in the
        reference, seeding parses the raw completion (no format or <answer> needed), the seed
        set is deduplicated and truncated to `seed_size`, and it fills both the abduction and
        the deduction buffers. Seed entries are tagged `ctx.step - 1`, so that the first step
        takes its "new" solve prompts from them."""
        s = self.settings
        seed = [seed_triplet()]
        rounds = 0
        triplet_tasks = [t for t in s.tasks if t != "code_f"]
        while triplet_tasks and len(seed) < s.seed_size and rounds < s.seed_max_rounds:
            rounds += 1
            reqs = [r for t in triplet_tasks for _ in range(s.batch_per_task_role)
                    for r in [self._propose_request(t, seed, ctx)] if r]
            texts = self._sample_texts(ctx, reqs)
            with ctx.timed("verify"):
                parsed = [self._parse_proposal(r.meta["task"], t) for r, t in zip(reqs, texts)]
                dedup_extend(seed, [e for e in self._validate_triplets(parsed) if e is not None])
        seed = seed[:s.seed_size]
        problems, f_rounds = [], 0
        if "code_f" in s.tasks:
            problems.append(seed_problem())
            while len(problems) < s.seed_size and f_rounds < s.seed_max_rounds:
                f_rounds += 1
                reqs = [r for _ in range(s.batch_per_task_role)
                        for r in [self._propose_request("code_f", seed, ctx)] if r]
                texts = self._sample_texts(ctx, reqs)
                with ctx.timed("verify"):
                    parsed = [self._parse_proposal("code_f", t) for t in texts]
                    valid = self._validate_problems(parsed, [r.meta["program"] for r in reqs])
                problems.extend(e for e in valid if e is not None)  # not deduplicated (reference)
            problems = problems[:s.seed_size]
        tag = int(ctx.step) - 1
        buffers = {"input": list(seed), "output": list(seed), "problem": problems}
        return {"buffers": buffers,
                "step_added": {k: [tag] * len(v) for k, v in buffers.items()},
                "seed": {"triplets": len(seed), "triplet_rounds": rounds,
                         "problems": len(problems), "problem_rounds": f_rounds}}

    @staticmethod
    def _sample_texts(ctx: Context, reqs: Sequence[Request]) -> list[str]:
        """One completion per propose prompt at the proposer's configured sampling."""
        if not reqs:
            return []
        got = ctx.sample("proposer", [r.prompt for r in reqs], 1, Sampling())
        return [text.as_text(cs[0].text) if cs else "" for cs in got]

    # -- scoring ---------------------------------------------------------------------------
    def score(self, phase: str, requests: Sequence[Request],
              rollouts: Sequence[Sequence[Completion]], state: Mapping,
              ctx: Context) -> tuple[dict, list[Episode], dict]:
        s = self.settings
        if phase != "play":
            raise ValueError(f"AZR has one phase, 'play'; got {phase!r}")
        if len(requests) != len(rollouts):
            raise ValueError(f"{len(requests)} requests but {len(rollouts)} rollouts")
        props, solves = [], []  # (request, completion, task, generation)
        for req, comps in zip(requests, rollouts):
            for c in comps:
                row = {"req": req, "comp": c, "task": req.meta["task"],
                       "gen": text.generation_text(c.text)}
                (props if req.meta["kind"] == "propose" else solves).append(row)

        # 1. Proposals: parse, then validate in the sandbox (blocking).
        with ctx.timed("verify"):
            for p in props:
                p["format_ok"] = text.is_well_formatted(p["gen"])
                p["parsed"] = self._parse_proposal(p["task"], text.extract_answer(p["gen"]))
            tri = [p for p in props if p["task"] != "code_f"]
            ind = [p for p in props if p["task"] == "code_f"]
            for p, e in zip(tri, self._validate_triplets([p["parsed"] for p in tri])):
                p["entry"] = e
            for p, e in zip(ind, self._validate_problems(
                    [p["parsed"] for p in ind], [p["req"].meta["program"] for p in ind])):
                p["entry"] = e
            for r in solves:
                r["format_ok"] = text.is_well_formatted(r["gen"])
                r["answer"] = self._solver_answer(r["task"], text.extract_answer(r["gen"]))
                if r["answer"] is None:  # induction answer without a code block
                    r["format_ok"] = False

        # 2. Learnability prompts for the valid proposals.
        learn = [p for p in props if p["entry"] is not None]
        for p in learn:
            p["learn_prompt"] = self._prompt_ids(ctx, text.solve_prompt(p["task"], p["entry"]))
        sampled = [p for p in learn if p["learn_prompt"] is not None]

        # 3. Solver answers checked in a background thread (the only pool user meanwhile)
        #    while this thread samples the learnability estimate on the device.
        solver_items = [(r["task"], r["req"].meta["entry"], r["answer"] if r["format_ok"] else None)
                        for r in solves]
        timing = {}

        def check_solvers():
            t0 = time.perf_counter()
            try:
                return self._check_answers(solver_items)
            finally:
                timing["background_check_s"] = time.perf_counter() - t0

        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="azr-verify") as ex:
            future = ex.submit(check_solvers)
            try:
                samples = self._sample_learnability(ctx, [p["learn_prompt"] for p in sampled])
            finally:
                t0 = time.perf_counter()
                with ctx.timed("verify"):
                    concurrent.futures.wait([future])
                timing["join_wait_s"] = time.perf_counter() - t0
            solver_correct = future.result()

        # 4. Learnability answers: the reference reads each sample's <answer> without asking
        #    for the full format, and counts an unparsed induction answer as wrong.
        with ctx.timed("verify"):
            items, owners = [], []
            for p, comps in zip(sampled, samples):
                for c in comps:
                    ans = self._solver_answer(p["task"], text.extract_answer(text.as_text(c.text)))
                    items.append((p["task"], p["entry"], ans))
                    owners.append(p)
            correct = self._check_answers(items)
            per: dict[int, list[bool]] = {}
            for p, ok in zip(owners, correct):
                per.setdefault(id(p), []).append(ok)
            for p in props:
                # Invalid proposal: s := 1 (reward 0). A valid one with no samples (prompt too
                # long) is never solved: s := 0, as in the reference.
                p["solve_rate"] = 1.0 if p["entry"] is None else _mean(per.get(id(p), []))
                p["r_role"] = proposer_reward(p["solve_rate"])

        # 5. Rewards and episodes.
        episodes = []
        for p in props:
            ok = bool(p["format_ok"] and p["entry"] is not None)
            reward = composite_reward(p["r_role"], ok, format_penalty=s.format_penalty,
                                      wrong_penalty=s.wrong_penalty)
            p["reward"] = reward
            episodes.append(Episode(
                role="proposer", prompt=p["req"].prompt, completion=p["comp"], reward=reward,
                bucket=f"{p['task']}/proposer",
                info={"task": p["task"], "kind": "propose", "format_ok": bool(p["format_ok"]),
                      "valid": p["entry"] is not None, "solve_rate": p["solve_rate"],
                      "r_role": p["r_role"]}))
        for r, ok in zip(solves, solver_correct):
            r["correct"] = bool(ok)
            reward = composite_reward(1.0 if ok else 0.0, r["format_ok"],
                                      format_penalty=s.format_penalty,
                                      wrong_penalty=s.wrong_penalty)
            r["reward"] = reward
            episodes.append(Episode(
                role="solver", prompt=r["req"].prompt, completion=r["comp"], reward=reward,
                bucket=f"{r['task']}/solver",
                info={"task": r["task"], "kind": "solve", "format_ok": bool(r["format_ok"]),
                      "correct": bool(ok)}))

        # 6. Buffers: every valid proposal, whatever its format or solve rate
        #    (`valid_program_filter=all`), tagged with this step.
        buffers = {k: list(v) for k, v in state["buffers"].items()}
        step_added = {k: list(v) for k, v in state["step_added"].items()}
        metrics: dict[str, float] = {}
        for task in s.tasks:
            key = BUFFER_OF[task]
            new = [p["entry"] for p in props if p["task"] == task and p["entry"] is not None]
            buffers[key], step_added[key], dropped = add_to_buffer(
                buffers[key], step_added[key], new, ctx.step, s.buffer_cap)
            metrics[f"buffer/added/{task}"] = float(len(new) - min(dropped, len(new)))
            metrics[f"buffer/dropped/{task}"] = float(dropped)
        new_state = dict(state)
        new_state.update(buffers=buffers, step_added=step_added)
        metrics.update(self._metrics(props, solves, sampled, samples, buffers, timing))
        return new_state, episodes, metrics

    def _sample_learnability(self, ctx: Context, prompts: list) -> list[list[Completion]]:
        s = self.settings
        if not prompts:
            return []
        temperature = s.learnability_temperature
        if temperature is None:
            temperature = ctx.sampling_of("solver").temperature if ctx.sampling_of else 1.0
        if not temperature > 0:
            raise ValueError("AZR's learnability samples must not be greedy: the solver's sampling "
                             f"temperature is {temperature}; set game.learnability_temperature > 0")
        got = ctx.sample("solver", prompts, s.learnability_samples, Sampling(temperature=float(temperature)))
        if len(got) != len(prompts):
            raise ValueError(f"sampler returned {len(got)} groups for {len(prompts)} prompts")
        return got

    def _metrics(self, props, solves, sampled, samples, buffers, timing) -> dict[str, float]:
        m: dict[str, float] = {}

        def rates(rows, prefix, tasks):
            for task in [None] + list(tasks):
                rs = [r for r in rows if task is None or r["task"] == task]
                if not rs:
                    continue
                sfx = "" if task is None else f"/{task}"
                m[f"{prefix}/format_error_rate{sfx}"] = _mean(not r["format_ok"] for r in rs)
                m[f"{prefix}/reward_mean{sfx}"] = _mean(r["reward"] for r in rs)
                m[f"{prefix}/count{sfx}"] = float(len(rs))
                if prefix == "proposer":
                    valid = [r for r in rs if r["entry"] is not None]
                    m[f"proposer/valid_rate{sfx}"] = _mean(r["entry"] is not None for r in rs)
                    m[f"proposer/learnability_mean{sfx}"] = _mean(r["r_role"] for r in valid)
                    m[f"proposer/solve_rate_mean{sfx}"] = _mean(r["solve_rate"] for r in valid)
                    m[f"proposer/learnable_rate{sfx}"] = _mean(r["r_role"] > 0 for r in rs)
                else:
                    m[f"solver/solve_rate{sfx}"] = _mean(r["correct"] for r in rs)

        tasks = self.settings.tasks
        rates(props, "proposer", tasks)
        rates(solves, "solver", tasks)
        for task in tasks:
            m[f"buffer/{task}"] = float(len(buffers[BUFFER_OF[task]]))
        m["learnability/prompts"] = float(len(sampled))
        m["learnability/samples"] = float(sum(len(c) for c in samples))
        for k, v in timing.items():
            m[f"verify/{k}"] = float(v)
        return m


def make(settings: Settings | None = None, pool: executor.SandboxPool | None = None) -> AZRGame:
    return AZRGame(settings or Settings(), pool=pool)


__all__ = ["Settings", "AZRGame", "make", "proposer_reward", "composite_reward", "add_to_buffer",
           "select_solve_indices", "dedup_extend", "seed_triplet", "seed_problem", "TASKS",
           "BUFFER_OF", "ROLES"]
