"""R-Zero (Huang et al. 2025) as a zeroplay `Game`: a `challenger` and a `solver`, two policies.

Rules follow the reference code (Chengsong-Huang/R-Zero @ 5699329, methods.md section 5):

- outer iterations: `challenger_steps` challenger updates with a frozen solver, then
  `solver_steps` solver updates (the schedule is `trains(step, state)`, a function of the step alone);
- challenger step: `challenger_prompts` prompts x `challenger_samples`; a proposal parses when it
  has a `<question>` (the last one) and a `\\boxed{}` answer; each parsed question gets `votes`
  solver samples; p = share agreeing with their majority (the challenger's own answer is unused);
  reward = min(p, 1 - p) if parsed else -1, minus the repetition penalty c_i: the share of the
  step's proposals in the question's cluster (agglomerative clustering, average linkage,
  distance 1 - BLEU, threshold 0.5; an unparsed proposal is the empty question, at distance 1
  from everything, as in the reference);
- solver iteration: at its first step the challenger writes `solver_pool` questions, each gets
  `votes` solver samples; the questions with p in [band_low, band_high] keep their majority answer
  as label (state["solver_set"]); each solver step reads `solver_batch` of them round-robin,
  `solver_samples` answers each, reward 0.9 * accuracy + 0.1 * format (format: `</think>` then
  a `\\boxed{}`; accuracy: math equivalence with the label).

GRPO per bucket (a challenger prompt's group; a question's answers). State (plain JSON):
{"solver_set": [{"question", "label", "p"}], "cursor": int, "iteration": int}.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

import numpy as np

from zeroplay.games.base import Completion, Context, Episode, Game, Request, Sampling
from zeroplay.games.pasodoble import role_prompt, solver_answer

ROLES = ("challenger", "solver")
CHALLENGER_PROMPT = (
    "You design new competition-style math problems. First think privately, step by step, about a new problem "
    "that is hard but has one exact answer. Then write the problem inside <question>...</question> tags, and "
    "after it the final answer alone in \\boxed{}. Write nothing else after the box.\n\n"
    "Write one new, challenging question now, in exactly this format.")
SOLVER_PROMPT = "Please reason step by step, and put your final answer within \\boxed{{}}.\n\n{question}"
_QUESTION_RE = re.compile(r"<question>(.*?)</question>", re.DOTALL)
_FORMAT_RE = re.compile(r".*</think>.*\\boxed\{.*\}.*", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Settings:
    """R-Zero's constants; defaults are the reference scripts'."""
    challenger_steps: int = 5
    solver_steps: int = 15
    challenger_prompts: int = 16      # batch 16
    challenger_samples: int = 4       # n = 4
    votes: int = 10                   # solver samples that estimate p (T = 1.0)
    solver_pool: int = 1000           # questions written for each solver iteration
    band_low: float = 0.3             # keep p in [low, high] (closed)
    band_high: float = 0.8
    solver_batch: int = 128
    solver_samples: int = 5
    bleu_threshold: float = 0.5
    accuracy_weight: float = 0.9
    format_weight: float = 0.1
    require_think: bool = False       # format reward: needs "</think>" before the box (reference: True)
    think: bool = False
    chat: bool = True
    timeout_s: float = 5.0

    def __post_init__(self):
        for name in ("challenger_steps", "solver_steps", "challenger_prompts", "challenger_samples", "votes",
                     "solver_pool", "solver_batch", "solver_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"r_zero {name} must be >= 1")
        if not 0 <= self.band_low <= self.band_high <= 1:
            raise ValueError("r_zero needs 0 <= band_low <= band_high <= 1")


# -- pure rules -----------------------------------------------------------------------------------

def parse_proposal(text: str) -> tuple[str | None, str | None]:
    """(question, answer): the last <question>, the last \\boxed{}; None when missing or empty."""
    from zeroplay.verifiers.math import extract_boxed

    qs = _QUESTION_RE.findall(text or "")
    a = extract_boxed(text or "")
    q = qs[-1].strip() if qs else None
    return q or None, (a.strip() if a else None) or None


def bleu(hyp: str, ref: str) -> float:
    """Sentence BLEU in [0, 1] on whitespace tokens, zero counts floored at 0.1 (NLTK's method1)."""
    return _BLEU().sentence_score(hyp, [ref]).score / 100.0


_bleu_metric = None


def _BLEU():
    global _bleu_metric
    if _bleu_metric is None:
        import logging

        from sacrebleu.metrics import BLEU

        # NLTK's sentence_bleu (the reference) uses no effective order: silence sacrebleu's advice.
        logging.getLogger("sacrebleu").setLevel(logging.ERROR)
        _bleu_metric = BLEU(tokenize="none", smooth_method="floor", smooth_value=0.1, effective_order=False)
    return _bleu_metric


def bleu_distances(questions: Sequence[str]) -> np.ndarray:
    """The reference's matrix: d[i, j] = 1 - BLEU(hyp=q_i, ref=q_j) for i < j, mirrored; d[i, i] = 0."""
    n = len(questions)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if not questions[i].split() or not questions[j].split():
                score = 0.0  # NLTK's sentence_bleu of an empty sentence: 0
            else:
                score = bleu(questions[i], questions[j])
            d[i, j] = d[j, i] = min(max(1.0 - score, 0.0), 1.0)
    return d


def cluster_shares(questions: Sequence[str], threshold: float = 0.5) -> list[float]:
    """Each question's cluster size / n: agglomerative, average linkage, merging while the
    distance is below `threshold` (sklearn's distance_threshold)."""
    n = len(questions)
    if n == 0:
        return []
    if n == 1:
        return [1.0]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    z = linkage(squareform(bleu_distances(questions), checks=False), method="average")
    labels = fcluster(z, t=np.nextafter(threshold, 0.0), criterion="distance")
    counts = {lab: int((labels == lab).sum()) for lab in set(labels.tolist())}
    return [counts[lab] / n for lab in labels.tolist()]


def challenger_reward(p: float | None, penalty: float) -> float:
    """min(p, 1 - p) - penalty for a parsed proposal (p = majority agreement), -1 - penalty otherwise."""
    return (min(p, 1.0 - p) if p is not None else -1.0) - float(penalty)


def solver_reward(text: str, label: str, correct: bool, *, accuracy_weight=0.9, format_weight=0.1,
                  require_think=False) -> float:
    fmt = bool(_FORMAT_RE.fullmatch(text or "")) if require_think else solver_answer(text) is not None
    return accuracy_weight * float(correct) + format_weight * float(fmt)


def agreement(answers: Sequence[str | None]) -> tuple[str | None, float]:
    """(majority answer, share of all answers that agree with it); ties to the first answer."""
    from zeroplay.verifiers.vote import majority_vote

    v = majority_vote(list(answers), tie="first", empty="count")
    return v.label, (v.count / len(answers) if answers and v.label is not None else 0.0)


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else 0.0


# -- the game ---------------------------------------------------------------------------------------

class RZeroGame(Game):
    roles = ROLES
    estimator = "grpo"

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()

    def _position(self, step: int) -> int:
        s = self.settings
        return (step - 1) % (s.challenger_steps + s.solver_steps)

    def trains(self, step: int, state: Mapping) -> tuple[str, ...]:
        return ("challenger",) if self._position(step) < self.settings.challenger_steps else ("solver",)

    def phases(self, state: Mapping, step: int) -> tuple[str, ...]:
        k = self._position(step)
        if k < self.settings.challenger_steps:
            return ("challenge",)
        return ("build", "solve") if k == self.settings.challenger_steps else ("solve",)

    def init_state(self, ctx: Context) -> dict:
        return {"solver_set": [], "cursor": 0, "iteration": 0}

    def _challenger_prompt(self, ctx):
        return role_prompt("", CHALLENGER_PROMPT, ctx, chat=self.settings.chat, think=self.settings.think)

    def _solver_prompt(self, question, ctx):
        return role_prompt("", SOLVER_PROMPT.format(question=question), ctx, chat=self.settings.chat,
                           think=self.settings.think)

    def requests(self, phase: str, state: Mapping, ctx: Context) -> list[Request]:
        s = self.settings
        if phase == "challenge":
            return [Request("challenger", self._challenger_prompt(ctx), s.challenger_samples, {"kind": "challenge"})
                    for _ in range(s.challenger_prompts)]
        if phase == "build":
            return [Request("challenger", self._challenger_prompt(ctx), s.solver_pool, {"kind": "build"})]
        if phase == "solve":
            qs, cur = state["solver_set"], int(state["cursor"])
            return [Request("solver", self._solver_prompt(qs[(cur + j) % len(qs)]["question"], ctx), s.solver_samples,
                            {"kind": "solve", **qs[(cur + j) % len(qs)]})
                    for j in range(min(s.solver_batch, len(qs)) if qs else 0)]
        raise ValueError(f"r_zero phases are challenge, build and solve; got {phase!r}")

    def _votes(self, questions: Sequence[str], ctx: Context) -> list[tuple[str | None, float]]:
        if not questions:
            return []
        got = ctx.sample("solver", [self._solver_prompt(q, ctx) for q in questions], self.settings.votes, Sampling())
        with ctx.timed("verify"):
            return [agreement([solver_answer(c.text) for c in comps]) for comps in got]

    def score(self, phase: str, requests: Sequence[Request], rollouts: Sequence[Sequence[Completion]],
              state: Mapping, ctx: Context) -> tuple[dict, list[Episode], dict]:
        s = self.settings
        if phase == "solve":
            return self._score_solve(requests, rollouts, state, ctx)
        props = []
        for gi, (req, comps) in enumerate(zip(requests, rollouts)):
            for c in comps:
                q, a = parse_proposal(c.text)
                props.append({"req": req, "comp": c, "group": gi, "question": q if (q and a) else None})
        parsed = [p for p in props if p["question"]]
        for p, (label, agree) in zip(parsed, self._votes([p["question"] for p in parsed], ctx)):
            p["label"], p["p"] = label, agree
        new = dict(state)
        if phase == "build":
            keep = [{"question": p["question"], "label": p["label"], "p": p["p"]} for p in parsed
                    if p["label"] is not None and s.band_low <= p["p"] <= s.band_high]
            new.update(solver_set=keep, cursor=0, iteration=int(state["iteration"]) + 1)
            return new, [], {"solver/pool": float(len(props)), "solver/pool_parsed": float(len(parsed)),
                             "solver/set_size": float(len(keep)),
                             "solver/band_keep_rate": len(keep) / max(len(props), 1),
                             "game/iteration": float(new["iteration"])}
        with ctx.timed("verify"):
            shares = cluster_shares([p["question"] or "" for p in props], s.bleu_threshold)
        episodes = []
        for p, c in zip(props, shares):
            p["penalty"] = c
            p["reward"] = challenger_reward(p.get("p") if p["question"] else None, c)
            episodes.append(Episode("challenger", p["req"].prompt, p["comp"], p["reward"],
                                    bucket=f"challenger/{p['group']}",
                                    info={"valid": p["question"] is not None, "p": p.get("p"), "penalty": c}))
        m = {"challenger/valid_rate": _mean(p["question"] is not None for p in props),
             "challenger/agreement_mean": _mean(p["p"] for p in parsed),
             "challenger/penalty_mean": _mean(shares),
             "challenger/in_band_rate": _mean(s.band_low <= p["p"] <= s.band_high for p in parsed) if parsed else 0.0}
        return new, episodes, m

    def _score_solve(self, requests, rollouts, state, ctx):
        from zeroplay.verifiers.math import is_equivalent_batch

        s = self.settings
        with ctx.timed("verify"):
            pairs = [(solver_answer(c.text), r.meta["label"]) for r, comps in zip(requests, rollouts) for c in comps]
            ok = iter(is_equivalent_batch([(a or "", g) for a, g in pairs], timeout_s=s.timeout_s) if pairs else [])
        episodes, acc = [], []
        for k, (req, comps) in enumerate(zip(requests, rollouts)):
            for c in comps:
                right = bool(next(ok)) and solver_answer(c.text) is not None
                acc.append(right)
                episodes.append(Episode("solver", req.prompt, c, solver_reward(
                    c.text, req.meta["label"], right, accuracy_weight=s.accuracy_weight,
                    format_weight=s.format_weight, require_think=s.require_think), bucket=f"solver/{k}"))
        new = dict(state)
        if state["solver_set"]:
            new["cursor"] = (int(state["cursor"]) + len(requests)) % len(state["solver_set"])
        return new, episodes, {"solver/accuracy": _mean(acc), "solver/set_size": float(len(state["solver_set"]))}


def make(settings: Settings | None = None) -> RZeroGame:
    return RZeroGame(settings or Settings())


__all__ = ["Settings", "RZeroGame", "make", "parse_proposal", "bleu", "bleu_distances", "cluster_shares",
           "challenger_reward", "solver_reward", "agreement", "ROLES"]
