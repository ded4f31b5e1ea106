"""Self-Questioning Language Models (SQLM; Chen et al. 2025, arXiv 2508.03682) as a zeroplay `Game`.

Asymmetric self-play from one topic prompt: the `proposer` writes a question on the topic
(`<question>...</question>` after the last `</think>`, or the text after it when untagged), the
`solver` answers it `solver_samples` times, and with no labels at all:

- solver reward: 1 when its last `\\boxed{}` answer equals the majority answer of the group
  (zeroplay.verifiers.vote, ties to the first answer, empty answers never win), else 0;
- proposer reward: 1 when the number of solver answers agreeing with the majority is strictly
  between 0 and n (the question is neither trivial nor hopeless), else 0; an unparsable or empty
  proposal gets 0 and is not sent to the solver.

GRPO within each bucket (the proposer's group of proposals; each question's solver answers).
Roles may map to one policy or two (configs/sqlm.py uses two). The state is {} (no buffers).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

from zeroplay.games.base import Completion, Context, Episode, Game, Request, Sampling
from zeroplay.games.pasodoble import after_think, role_prompt, sampled_prompt, solver_answer

ROLES = ("proposer", "solver")
TOPIC = "arithmetic: multiplication of three-digit numbers"
PROPOSER_PROMPT = (
    "You are playing a game with yourself. Write one new, self-contained math question about the topic below "
    "that has a single exact answer. It should be challenging but solvable. Write only the question, inside "
    "<question>...</question> tags, without the answer.\n\nTopic: {topic}")
SOLVER_PROMPT = ("Solve the following question. Reason step by step, and put your final answer within "
                 "\\boxed{{}}.\n\n{question}")

_QUESTION_RE = re.compile(r"<question>(.*?)</question>", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Settings:
    topic: str = TOPIC
    proposals: int = 8            # questions per step (one topic prompt, sampled `proposals` times)
    solver_samples: int = 4       # answers per question (the vote)
    require_tags: bool = False    # True: only a <question> tag counts; False: untagged text too
    max_question_chars: int = 2000
    think: bool = False
    chat: bool = True

    def __post_init__(self):
        if self.proposals < 1 or self.solver_samples < 2:
            raise ValueError("sqlm needs proposals >= 1 and solver_samples >= 2 (a vote)")


def parse_question(text: str, require_tags: bool = False, max_chars: int = 2000) -> str | None:
    """The proposed question: the first <question> after the last </think> (or in the whole text
    when there is no </think>); without tags, the remaining text unless `require_tags`."""
    rest = after_think(text)
    if rest is None:
        rest = text or ""
    m = _QUESTION_RE.search(rest)
    q = m.group(1) if m else (None if require_tags else rest)
    q = q.strip() if q else None
    if not q or len(q) > max_chars:
        return None
    return q


def proposer_reward(agree: int, n: int) -> float:
    """1 when 0 < agree < n solver answers match the majority, else 0."""
    return 1.0 if 0 < int(agree) < int(n) else 0.0


def vote(answers: Sequence[str | None]):
    """(label, agreeing count, per-answer matches) by plurality; ties to the first answer."""
    from zeroplay.verifiers.vote import majority_vote

    v = majority_vote(list(answers), tie="first", empty="count")
    return v.label, (v.count if v.label is not None else 0), list(v.matches)


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else 0.0


class SQLMGame(Game):
    roles = ROLES
    estimator = "grpo"

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()

    def init_state(self, ctx: Context) -> dict:
        return {}

    def requests(self, phase: str, state: Mapping, ctx: Context) -> list[Request]:
        s = self.settings
        ids = role_prompt("", PROPOSER_PROMPT.format(topic=s.topic), ctx, chat=s.chat, think=s.think)
        return [Request("proposer", ids, s.proposals, {"kind": "propose"})]

    def score(self, phase: str, requests: Sequence[Request], rollouts: Sequence[Sequence[Completion]],
              state: Mapping, ctx: Context) -> tuple[dict, list[Episode], dict]:
        s = self.settings
        props = [{"req": r, "comp": c, "group": gi,
                  "question": parse_question(c.text, s.require_tags, s.max_question_chars)}
                 for gi, (r, comps) in enumerate(zip(requests, rollouts)) for c in comps]
        asked = [p for p in props if p["question"]]
        for p in asked:
            p["prompt"] = role_prompt("", SOLVER_PROMPT.format(question=p["question"]), ctx, chat=s.chat,
                                      think=s.think)
        got = ctx.sample("solver", [p["prompt"] for p in asked], s.solver_samples, Sampling()) if asked else []
        episodes, agree_rates = [], []
        with ctx.timed("verify"):
            for k, (p, comps) in enumerate(zip(asked, got)):
                label, agree, matches = vote([solver_answer(c.text) for c in comps])
                p["agree"], p["n"] = agree, len(comps)
                agree_rates.append(agree / max(len(comps), 1))
                for c, ok in zip(comps, matches):
                    episodes.append(Episode("solver", sampled_prompt(c, p["prompt"]), c, 1.0 if ok else 0.0,
                                            bucket=f"solver/{k}",
                                            info={"label": label}))
        for p in props:
            p["reward"] = proposer_reward(p.get("agree", 0), p.get("n", s.solver_samples))
            episodes.append(Episode("proposer", p["req"].prompt, p["comp"], p["reward"],
                                    bucket=f"proposer/{p['group']}", info={"valid": p["question"] is not None}))
        m = {"proposer/valid_rate": _mean(p["question"] is not None for p in props),
             "proposer/rewarded_rate": _mean(p["reward"] > 0 for p in props),
             "solver/majority_agreement": _mean(agree_rates),
             "solver/unanimous_rate": _mean(r == 1.0 for r in agree_rates)}
        return dict(state), episodes, m


def make(settings: Settings | None = None) -> SQLMGame:
    return SQLMGame(settings or Settings())


__all__ = ["Settings", "SQLMGame", "make", "proposer_reward", "parse_question", "vote", "ROLES"]
