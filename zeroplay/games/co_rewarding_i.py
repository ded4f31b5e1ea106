"""Co-rewarding-I (Zhang et al. 2025, arXiv 2508.00410), data side: question and rephrasing
label each other.

For each unlabeled question x and its rephrasing x' (same mathematics and answer), the policy
samples G rollouts of each; y_v = majority answer to x, y'_v = majority answer to x' (last
`\\boxed{}` content, exact string, empty answers ignored). Cross-referenced rewards:
r(y_i) = 1[ans(y_i) = y'_v != empty], r(y'_i) = 1[ans(y'_i) = y_v != empty]. GRPO within each
of the two groups; both groups go into one update (J_orig + J_rephrased); KL 0.005 to the
initial model (config).

Rephrasings: the source's `rephrasing` field where the data has one (the paper's come from
Qwen3-32B offline), else a deterministic procedural rephrasing (`zeroplay.data.rephrase`:
reasoning-gym arithmetic expressions asked in another template; other questions in another
framing). Generating them with a configured model before training is not implemented.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from zeroplay.data import procedural_rephrasing
from zeroplay.games import label_free as lf
from zeroplay.games.base import Episode, Game, Request


@dataclasses.dataclass(frozen=True)
class Settings(lf.CommonSettings):
    pass


def cross_rewards(answers: list, answers_rephrased: list) -> tuple[list[float], list[float], str | None, str | None]:
    """(rewards of x's rollouts, rewards of x''s rollouts, y_v, y'_v)."""
    y, _, _ = lf.majority(answers)
    y2, _, _ = lf.majority(answers_rephrased)
    return lf.match_rewards(answers, y2), lf.match_rewards(answers_rephrased, y), y, y2


class CoRewardingI(Game):
    roles = ("solver",)
    estimator = "grpo"

    def __init__(self, s: Settings):
        self.s = s
        self.stream = lf.QuestionStream(s)

    def init_state(self, ctx):
        return {"questions": {"epoch": 0, "cursor": 0}}

    def requests(self, phase, state, ctx):
        qs, nxt = self.stream.take(state["questions"], self.s.questions_per_step)
        out = []
        for i, q in enumerate(qs):
            reph = q.rephrasing or procedural_rephrasing(q.text, {}, q.id)
            meta = {"q": i, "id": q.id, "truth": q.answer, "next": nxt}
            out.append(Request("solver", lf.prompt_ids(q.text, self.s, ctx), self.s.samples, {**meta, "kind": "orig"}))
            out.append(Request("solver", lf.prompt_ids(reph, self.s, ctx), self.s.samples, {**meta, "kind": "reph"}))
        return out

    def score(self, phase, requests, rollouts, state, ctx):
        pairs: dict = {}
        for req, comps in zip(requests, rollouts):
            pairs.setdefault(req.meta["q"], {})[req.meta["kind"]] = (req, comps)
        eps, groups, cross_agree, acc = [], [], [], []
        for i, pair in sorted(pairs.items()):
            (req, comps), (req2, comps2) = pair["orig"], pair["reph"]
            a, a2 = [lf.answer_of(c.text) for c in comps], [lf.answer_of(c.text) for c in comps2]
            r, r2, y, y2 = cross_rewards(a, a2)
            truth = req.meta["truth"]
            for kind, rq, cs, ans, rs, lab in (("orig", req, comps, a, r, y2), ("reph", req2, comps2, a2, r2, y)):
                for c, ai, ri in zip(cs, ans, rs):
                    eps.append(Episode("solver", rq.prompt, c, ri, bucket=f"q{i}/{kind}",
                                       info={"answer": ai, "label": lab}))
            # The label each group trains on is the other group's majority.
            groups += [(a, y2, truth), (a2, y, truth)]
            cross_agree.append(float(y is not None and y == y2))
            acc += lf.answer_accuracy(a + a2, truth)
        metrics = {**lf.label_metrics("solver", groups),
                   "solver/cross_label_agreement": float(np.mean(cross_agree)) if cross_agree else 0.0}
        if acc:
            metrics["solver/accuracy"] = float(np.mean(acc))
        nxt = requests[0].meta["next"] if requests else state["questions"]
        return {**state, "questions": nxt}, eps, metrics


def make(s: Settings) -> CoRewardingI:
    return CoRewardingI(s)


__all__ = ["Settings", "CoRewardingI", "make", "cross_rewards"]
