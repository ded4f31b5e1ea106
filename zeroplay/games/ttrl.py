"""TTRL (test-time RL, PRIME-RL/TTRL): majority vote over N samples, train on a subset.

Each question gets `votes` rollouts (64 in the reference); the majority answer over all of them
(last `\\boxed{}` content, exact string, empty answers ignored, ties to the first seen) labels
them; r = 1[ans = label != empty]; `train_samples` of them (32), drawn without replacement by
the checkpointed host RNG, train with GRPO. The reference trains on the unlabeled *test*
questions themselves: that is `test_time=True` with a shared benchmark set as the source, and
only a config that says so may do it; by default the source is a procedural training task.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from zeroplay.games import label_free as lf
from zeroplay.games.base import Episode, Game, Request


@dataclasses.dataclass(frozen=True)
class Settings(lf.CommonSettings):
    questions_per_step: int = 8
    votes: int = 64            # N rollouts that vote
    train_samples: int = 32    # of which this many train


def vote_rewards(answers: list) -> tuple[list[float], str | None]:
    label, _, _ = lf.majority(answers)
    return lf.match_rewards(answers, label), label


class TTRL(Game):
    roles = ("solver",)
    estimator = "grpo"

    def __init__(self, s: Settings):
        if not 0 < s.train_samples <= s.votes:
            raise ValueError(f"ttrl: train_samples must lie in [1, votes={s.votes}], got {s.train_samples}")
        self.s = s
        self.stream = lf.QuestionStream(s)

    def init_state(self, ctx):
        return {"questions": {"epoch": 0, "cursor": 0}}

    def requests(self, phase, state, ctx):
        qs, nxt = self.stream.take(state["questions"], self.s.questions_per_step)
        return [Request("solver", lf.prompt_ids(q.text, self.s, ctx), self.s.votes,
                        {"q": i, "id": q.id, "truth": q.answer, "next": nxt}) for i, q in enumerate(qs)]

    def score(self, phase, requests, rollouts, state, ctx):
        eps, groups, acc = [], [], []
        for req, comps in zip(requests, rollouts):
            answers = [lf.answer_of(c.text, self.s.answer) for c in comps]
            rewards, label = vote_rewards(answers)
            keep = sorted(ctx.rng.choice(len(comps), size=min(self.s.train_samples, len(comps)), replace=False))
            for j in keep:
                eps.append(Episode("solver", req.prompt, comps[j], rewards[j], bucket=f"q{req.meta['q']}",
                                   info={"answer": answers[j], "label": label}))
            groups.append((answers, label, req.meta["truth"]))
            acc += lf.answer_accuracy(answers, req.meta["truth"])
        metrics = lf.label_metrics("solver", groups)
        if acc:
            metrics["solver/accuracy"] = float(np.mean(acc))
        nxt = requests[0].meta["next"] if requests else state["questions"]
        return {**state, "questions": nxt}, eps, metrics


def make(s: Settings) -> TTRL:
    return TTRL(s)


__all__ = ["Settings", "TTRL", "make", "vote_rewards"]
