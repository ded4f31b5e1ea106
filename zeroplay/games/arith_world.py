"""Arith world: AZR-style self-play on integer arithmetic, for a tiny model trained from scratch.

The world is expressions of single digits joined by `+ - *` (Python precedence, no parentheses),
with 1 to `max_ops` operators. A proposer writes expressions; the executor (the project's sandbox,
`zeroplay.verifiers.code`) validates and evaluates them; a solver answers two of AZR's tasks on
them; the proposer is paid for learnability (methods.md section 1):

    propose    "P 3+4 9-2*5>"      -> "4*4-2"                    (K references from the buffer)
    deduction  "D 3+4*2-1="        -> "4*2=8,3+8=11,11-1=10=10"  (each reduction, then the value)
    abduction  "A 3+?*2-1=10?"     -> "4"                        (any digit that gives the value)

    r_solve    = 1 if the answer is right, else 0 (a well-formatted deduction ends in an integer)
    r_propose  = 1 - s for 0 < s < 1 (s: the proposal's mean solve rate over both tasks), else 0
    R          = AZR's composite: r if well formatted and r > 0; -0.5 if well formatted and
                 r = 0; -1 for a malformed answer or an invalid proposal

The deduction answer lists the reductions in the executor's order (multiplications left to right,
then additions and subtractions left to right; `trace`); the cold start (`coldstart_corpus`, used
by `zeroplay/coldstart.py`) teaches the formats on expressions of at most `coldstart_max_ops`
operators, with values computed by the sandbox. The held-out set (`heldout_items`: its own
generator, exactly `heldout_ops` operators with every operator equally likely, a fixed seed; no
cold-start example and no trained proposal is one of its items) is scored greedily before and
after self-play as `heldout_accuracy`, with a longer transfer set beside it.
Solver rollouts double as the learnability estimate (AZR samples it separately), so each
step samples the proposer once and the solver once.
"""
from __future__ import annotations

import ast
import dataclasses
import re
from typing import Sequence

import numpy as np

from zeroplay.games.azr import composite_reward, proposer_reward
from zeroplay.games.base import Episode, Game, Request, Sampling

OPS = "+-*"
_EXPR = re.compile(r"\d(?:[+\-*]\d)+")
_INT = re.compile(r"-?\d+")


@dataclasses.dataclass(frozen=True)
class Settings:
    proposals_per_step: int = 32
    k_references: int = 3
    solver_samples: int = 8          # rollouts per task (the GRPO-style group, and s's estimate)
    tasks: tuple = ("deduction", "abduction")
    max_ops: int = 6                 # longer proposals are invalid
    buffer_cap: int = 4096
    train_proposer: bool = True      # False: the proposer's policy is frozen (the ablation)
    op_weights: tuple = (0.4, 0.4, 0.2)  # + - * in generated expressions
    coldstart_max_ops: int = 2
    # The held-out set: its own generator (exactly heldout_ops operators, every operator equally
    # likely: 3x the multiplications of training's op_weights), a fixed seed, never trained on.
    heldout_ops: int = 2
    heldout_op_weights: tuple = (1.0, 1.0, 1.0)
    transfer_ops: int = 3            # a second held-out set, longer than anything the cold start shows
    transfer_size: int = 200
    heldout_size: int = 500
    heldout_seed: int = 20261129
    heldout_max_new_tokens: int = 48
    trace: str = "steps"             # steps: "4*2=8,3+8=11,11-1=10=10"; rewrite: "3+8-1=11-1=10"
    timeout_s: float = 5.0
    # "trr++": AZR's task-relative REINFORCE++ (one bucket per task and role); "grpo": one group
    # per solver prompt (its `solver_samples` rollouts) and one for the proposals. A solver whose
    # samples mostly agree gets no signal from TRR++'s cross-prompt baseline but noise: it pushes
    # down whole prompts answered consistently wrong (measured in the README's arith section).
    advantage: str = "trr++"

    def __post_init__(self):
        bad = set(self.tasks) - {"deduction", "abduction"}
        if bad or not self.tasks:
            raise ValueError(f"arith_world: tasks must be a subset of (deduction, abduction), got {self.tasks}")
        if self.advantage not in ("trr++", "grpo"):
            raise ValueError(f"arith_world: advantage must be trr++ or grpo, got {self.advantage!r}")
        if self.trace not in ("rewrite", "steps"):
            raise ValueError(f"arith_world: trace must be rewrite or steps, got {self.trace!r}")
        if not max(self.coldstart_max_ops, self.heldout_ops, self.transfer_ops) <= self.max_ops or \
                min(self.coldstart_max_ops, self.heldout_ops, self.transfer_ops) < 1:
            raise ValueError("arith_world: coldstart_max_ops, heldout_ops and transfer_ops must lie in [1, max_ops]")


# -- the world -----------------------------------------------------------------------------------

def random_expression(rng: np.random.Generator, ops: int, op_weights=(0.4, 0.4, 0.2)) -> str:
    digits = rng.integers(0, 10, size=ops + 1)
    chosen = rng.choice(list(OPS), size=ops, p=np.asarray(op_weights) / np.sum(op_weights))
    return "".join(f"{d}{o}" for d, o in zip(digits[:-1], chosen)) + str(digits[-1])


def parse_expression(text: str, max_ops: int) -> str | None:
    """The expression a proposal writes (spaces ignored), or None when it is not one digit joined
    to digits by 1..max_ops operators."""
    s = "".join(str(text).split())
    if len(s) > 2 * max_ops + 1 or not _EXPR.fullmatch(s):
        return None
    return s


def _reduce(expr: str):
    """(a, op, b, a op b, the expression after it) for each reduction, in the executor's order
    (Python precedence: multiplications left to right, then additions and subtractions)."""
    items: list = [int(expr[0])]
    for i in range(1, len(expr), 2):
        items += [expr[i], int(expr[i + 1])]
    for ops in ("*", "+-"):
        i = 1
        while i < len(items):
            if items[i] in ops:
                a, op, b = items[i - 1], items[i], items[i + 1]
                c = a * b if op == "*" else a + b if op == "+" else a - b
                items[i - 1:i + 2] = [c]
                yield a, op, b, c, "".join(map(str, items))
            else:
                i += 2


def reductions(expr: str) -> list[str]:
    """The expression after each reduction; the last one is the value."""
    return [r[4] for r in _reduce(expr)]


def trace(expr: str, form: str = "rewrite") -> str:
    """The deduction answer. "rewrite": every rewritten expression, joined by `=`, ending in the
    value ("3+4*2-1" -> "3+8-1=11-1=10"): each step is local (find the next operator, reduce,
    copy the rest). "steps": only each reduced operation, then the value
    ("4*2=8,3+8=11,11-1=10=10")."""
    steps = list(_reduce(expr))
    if form == "steps":
        return ",".join(f"{a}{op}{b}={c}" for a, op, b, c, _ in steps) + f"={steps[-1][3]}"
    return "=".join(r[4] for r in steps)


def mask_digit(expr: str, position: int) -> str:
    """The expression with its `position`-th digit replaced by `?`."""
    return expr[:2 * position] + "?" + expr[2 * position + 1:]


def executor_values(exprs: Sequence[str], holes: Sequence[int], *, timeout_s: float = 5.0, pool=None,
                    chunk: int = 256) -> list[tuple[int, list[int]] | None]:
    """For each (valid) expression, (its value, the digits d for which the expression with its
    hole-th digit set to d has that value), computed in the sandbox, `chunk` expressions per
    program; None where execution fails (a failed chunk is retried one expression at a time)."""
    from zeroplay.verifiers import code

    def program(batch):
        rows = []
        for e, h in batch:
            with_d = e[:2 * h] + "d" + e[2 * h + 1:]
            rows.append(f"    v = {e}\n    out.append((v, [d for d in range(10) if ({with_d}) == v]))")
        return "def f(_):\n    out = []\n" + "\n".join(rows) + "\n    return out\n"

    def parse(r, n):
        try:
            vals = ast.literal_eval(r.output) if r.ok else None
            if isinstance(vals, list) and len(vals) == n:
                return [(int(v), [int(d) for d in ds]) for v, ds in vals]
        except (ValueError, SyntaxError, TypeError):
            pass
        return None

    pairs = list(zip(exprs, holes))
    chunks = [pairs[i:i + chunk] for i in range(0, len(pairs), chunk)]
    results = code.run_batch([(program(c), "0") for c in chunks], timeout_s=timeout_s, pool=pool)
    out = []
    for c, r in zip(chunks, results):
        vals = parse(r, len(c))
        if vals is None and len(c) > 1:
            vals = [v[0] if v else None for v in (executor_values([e], [h], timeout_s=timeout_s, pool=pool)
                                                  for e, h in c)]
        out += vals if vals is not None else [None]
    return out


# -- prompts and answers -------------------------------------------------------------------------

def propose_prompt(references: Sequence[str]) -> str:
    return "P " + " ".join(references) + ">"


def deduction_prompt(expr: str) -> str:
    return f"D {expr}="


def abduction_prompt(expr: str, hole: int, value: int) -> str:
    return f"A {mask_digit(expr, hole)}={value}?"


def deduction_answer(text: str) -> int | None:
    """The integer after the last `=` (the whole text when there is none); None: malformed."""
    tail = "".join(str(text).split()).rsplit("=", 1)[-1]
    return int(tail) if _INT.fullmatch(tail) and len(tail) <= 12 else None


def abduction_answer(text: str) -> int | None:
    s = "".join(str(text).split())
    return int(s) if len(s) == 1 and s.isdigit() else None


def heldout_items(s: Settings, transfer: bool = False) -> list[dict]:
    """The fixed held-out set: `heldout_size` distinct expressions of exactly `heldout_ops`
    operators drawn with `heldout_op_weights` (transfer: `transfer_size` of `transfer_ops`)."""
    rng = np.random.default_rng(s.heldout_seed + (1000 if transfer else 0))
    ops, size = (s.transfer_ops, s.transfer_size) if transfer else (s.heldout_ops, s.heldout_size)
    seen, items = set(), []
    while len(items) < size:
        e = random_expression(rng, ops, s.heldout_op_weights)
        if e not in seen:
            seen.add(e)
            items.append({"expr": e, "value": eval(e)})  # noqa: S307 - digits and + - * only
    return items


def coldstart_corpus(s: Settings, rng: np.random.Generator, n: int, *, pool=None) -> list[tuple[str, str]]:
    """`n` (prompt, completion) pairs for the cold start, values from the executor: deduction and
    abduction on expressions of 1..coldstart_max_ops operators, and proposals that continue K
    references with a new expression. None of them is a held-out expression."""
    banned = {it["expr"] for it in heldout_items(s) + heldout_items(s, transfer=True)}
    exprs, holes = [], []
    while len(exprs) < n:
        e = random_expression(rng, int(rng.integers(1, s.coldstart_max_ops + 1)), s.op_weights)
        if e not in banned:
            exprs.append(e)
            holes.append(int(rng.integers(0, len(e) // 2 + 1)))
    values = executor_values(exprs, holes, timeout_s=s.timeout_s, pool=pool)
    pairs, kinds = [], rng.choice(3, size=n, p=[0.5, 0.25, 0.25])
    for e, h, v, kind in zip(exprs, holes, values, kinds):
        if v is None:
            raise RuntimeError(f"the executor could not evaluate the generated expression {e!r}")
        if str(v[0]) != reductions(e)[-1]:
            raise RuntimeError(f"trace and executor disagree on {e!r}: {v[0]}")
        if kind == 0 or "abduction" not in s.tasks and kind == 1:
            pairs.append((deduction_prompt(e), trace(e, s.trace)))
        elif kind == 1:
            pairs.append((abduction_prompt(e, h, v[0]), e[2 * h]))
        else:
            refs = [random_expression(rng, int(rng.integers(1, s.coldstart_max_ops + 1)), s.op_weights)
                    for _ in range(s.k_references)]
            pairs.append((propose_prompt(refs), e))
    return pairs


# -- the game ------------------------------------------------------------------------------------

class ArithWorld(Game):
    roles = ("proposer", "solver")
    def __init__(self, s: Settings):
        self.s = s
        self.estimator = "reinforce_pp" if s.advantage == "trr++" else "grpo"
        self._heldout = None

    @property
    def heldout(self) -> list[dict]:
        """The held-out items, then the transfer items: proposals equal to any are discarded."""
        if self._heldout is None:
            self._heldout = heldout_items(self.s) + heldout_items(self.s, transfer=True)
        return self._heldout

    def init_state(self, ctx) -> dict:
        rng = np.random.default_rng(self.s.heldout_seed + 1)  # the seed buffer: cold-start-like
        return {"buffer": [random_expression(rng, int(rng.integers(1, self.s.coldstart_max_ops + 1)),
                                             self.s.op_weights) for _ in range(4 * self.s.k_references)]}

    def trains(self, step, state):
        return self.roles if self.s.train_proposer else ("solver",)

    def requests(self, phase, state, ctx):
        buf = state["buffer"]
        reqs = []
        for _ in range(self.s.proposals_per_step):
            refs = [buf[i] for i in ctx.rng.choice(len(buf), size=min(self.s.k_references, len(buf)), replace=False)]
            reqs.append(Request("proposer", ctx.encode(propose_prompt(refs)), 1, {"refs": refs}))
        return reqs

    def score(self, phase, requests, rollouts, state, ctx):
        s = self.s
        banned = {it["expr"] for it in self.heldout}
        comps = [row[0] for row in rollouts]
        parsed = [parse_expression(c.text, s.max_ops) for c in comps]
        heldout_hits = sum(p is not None and p in banned for p in parsed)
        parsed = [None if p in banned else p for p in parsed]
        holes = [int(ctx.rng.integers(0, len(p) // 2 + 1)) if p else 0 for p in parsed]
        valid_idx = [i for i, p in enumerate(parsed) if p is not None]
        with ctx.timed("verify"):
            values = executor_values([parsed[i] for i in valid_idx], [holes[i] for i in valid_idx],
                                     timeout_s=s.timeout_s)
        tasks = []  # (proposal index, task, prompt text, gold)
        for i, v in zip(valid_idx, values):
            if v is None:
                parsed[i] = None
                continue
            if "deduction" in s.tasks:
                tasks.append((i, "deduction", deduction_prompt(parsed[i]), v[0]))
            if "abduction" in s.tasks:
                tasks.append((i, "abduction", abduction_prompt(parsed[i], holes[i], v[0]), v[1]))
        rows = ctx.sample("solver", [ctx.encode(t[2]) for t in tasks], s.solver_samples) if tasks else []
        eps, solved, stats = [], {}, {t: [] for t in s.tasks}
        with ctx.timed("verify"):
            for k, ((i, task, text, gold), row) in enumerate(zip(tasks, rows)):
                prompt = ctx.encode(text)
                bucket = task if s.advantage == "trr++" else f"{task}:{k}"
                for c in row:
                    ans = deduction_answer(c.text) if task == "deduction" else abduction_answer(c.text)
                    right = ans is not None and (ans == gold if task == "deduction" else ans in gold)
                    solved.setdefault(i, []).append(float(right))
                    stats[task].append((ans is not None, right))
                    eps.append(Episode("solver", prompt, c, composite_reward(float(right), ans is not None,
                                                                             format_penalty=-1.0),
                                       bucket=bucket, info={"answer": ans, "gold": gold}))
        rates = []
        for i, (req, c) in enumerate(zip(requests, comps)):
            ok = parsed[i] is not None
            rate = float(np.mean(solved[i])) if ok else 0.0
            rates += [rate] if ok else []
            eps.append(Episode("proposer", req.prompt, c, composite_reward(proposer_reward(rate), ok),
                               bucket="propose", info={"expr": parsed[i], "solve_rate": rate if ok else None}))
        new = [p for p in dict.fromkeys(p for p in parsed if p) if p not in set(state["buffer"])]
        buffer = (list(state["buffer"]) + new)[-s.buffer_cap:]
        ops = [len(p) // 2 for p in parsed if p]
        metrics = {
            "proposer/valid_rate": float(np.mean([p is not None for p in parsed])),
            "proposer/heldout_collisions": float(heldout_hits),
            "proposer/mean_ops": float(np.mean(ops)) if ops else 0.0,
            "proposer/solve_rate_mean": float(np.mean(rates)) if rates else 0.0,
            "proposer/learnable_rate": float(np.mean([0 < r < 1 for r in rates])) if rates else 0.0,
            "buffer/size": float(len(buffer)), "buffer/new": float(len(new)),
        }
        for k in range(1, s.max_ops + 1):
            metrics[f"proposer/ops_{k}_share"] = float(np.mean([o == k for o in ops])) if ops else 0.0
        for task, st in stats.items():
            if st:
                metrics[f"solver/{task}_accuracy"] = float(np.mean([r for _, r in st]))
                metrics[f"solver/{task}_format_rate"] = float(np.mean([f for f, _ in st]))
        return {**state, "buffer": buffer}, eps, metrics

    def evaluate(self, state, ctx) -> dict[str, float]:
        """Greedy deduction accuracy on the held-out set (`heldout_accuracy`), on the longer
        transfer set (`heldout/transfer_accuracy`) and, for contrast, on 200 expressions of the
        cold start's own distribution (`heldout/train_dist_accuracy`); every item's answer is in
        `<workdir>/eval/heldout_<step>.json`, a report `zeroplay.evaluation.compare` reads."""
        rng = np.random.default_rng(self.s.heldout_seed + 2)
        train = [random_expression(rng, int(rng.integers(1, self.s.coldstart_max_ops + 1)), self.s.op_weights)
                 for _ in range(200)]
        n = self.s.heldout_size
        sets = {"heldout_accuracy": [(it["expr"], it["value"]) for it in self.heldout[:n]],
                "heldout/transfer_accuracy": [(it["expr"], it["value"]) for it in self.heldout[n:]],
                "heldout/train_dist_accuracy": [(e, eval(e)) for e in train]}  # noqa: S307 - digits, + - *
        greedy = Sampling(temperature=0.0, max_new_tokens=self.s.heldout_max_new_tokens)
        prompts = [ctx.encode(deduction_prompt(e)) for items in sets.values() for e, _ in items]
        rows = iter(ctx.sample("solver", prompts, 1, greedy))
        report = {}
        for name, items in sets.items():
            texts = [next(rows)[0].text for _ in items]
            right = [deduction_answer(t) == v for t, (_, v) in zip(texts, items)]
            report[name] = {"accuracy": float(np.mean(right)), "items": [
                {"prompt": deduction_prompt(e), "answer": v, "completion": t, "correct": [float(r)]}
                for (e, v), t, r in zip(items, texts, right)]}
        if ctx.workdir:  # per item, for `python -m zeroplay.evaluation.compare` between two steps
            import jax

            from zeroplay.evaluation.runner import write_report

            if jax.process_index() == 0:
                write_report({"step": ctx.step, "benchmarks": report}, f"{ctx.workdir}/eval/heldout_{ctx.step}.json")
        return {name: r["accuracy"] for name, r in report.items()}


def make(s: Settings) -> ArithWorld:
    return ArithWorld(s)


__all__ = ["Settings", "ArithWorld", "make", "random_expression", "parse_expression", "reductions", "trace",
           "executor_values", "heldout_items", "coldstart_corpus", "deduction_answer", "abduction_answer"]
