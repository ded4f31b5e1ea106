"""Co-rewarding-II (Zhang et al. 2025, arXiv 2508.00410), model side: an EMA teacher labels.

Roles: "solver" -> the policy, "teacher" -> "<policy>@teacher" (the policy's EMA teacher, updated
by the loop before it samples each step: theta_T <- (1 - a_k) theta_T + a_k theta, a_k =
`ema_rate(k, K, start, end)`; reference code start 0.01, end 1e-5, the paper's end 1e-4 is a
config option). Each step, for each of `questions_per_step` unlabeled questions, the teacher
samples `teacher_samples` rollouts; its majority answer (last `\\boxed{}` content, exact string,
empty answers ignored) labels the solver's `samples` rollouts: r = 1[ans = label != empty].
GRPO within each question's group; the KL (0.001) goes to the teacher (`teacher.as_reference`).
Only the solver trains. Truth, where the source has it, is only reported (`label_accuracy`).

`co_rewarding_i.py` holds Co-rewarding-I (data side: question and rephrasing cross-label).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from zeroplay.games import label_free as lf
from zeroplay.games.base import Episode, Game, Request


def ema_rate(step, total_steps, start, end) -> float:
    """a_k = end + (start - end)(1 + cos(pi k / K)) / 2, k clipped to [0, K] (pure Python; the loop
    uses zeroplay.rl.ema_rate, the same schedule in jnp)."""
    frac = min(max(float(step) / max(float(total_steps), 1.0), 0.0), 1.0)
    return float(end) + (float(start) - float(end)) * (1.0 + math.cos(math.pi * frac)) / 2.0


@dataclasses.dataclass(frozen=True)
class Settings(lf.CommonSettings):
    teacher_samples: int = 8  # G~: teacher rollouts per question


class CoRewardingII(Game):
    roles = ("solver", "teacher")
    estimator = "grpo"

    def __init__(self, s: Settings):
        self.s = s
        self.stream = lf.QuestionStream(s)

    def trains(self, step, state):
        return ("solver",)

    def init_state(self, ctx):
        return {"questions": {"epoch": 0, "cursor": 0}}

    def requests(self, phase, state, ctx):
        qs, nxt = self.stream.take(state["questions"], self.s.questions_per_step)
        out = []
        for i, q in enumerate(qs):
            p = lf.prompt_ids(q.text, self.s, ctx)
            meta = {"q": i, "id": q.id, "truth": q.answer, "next": nxt}
            out.append(Request("teacher", p, self.s.teacher_samples, dict(meta)))
            out.append(Request("solver", list(p), self.s.samples, dict(meta)))
        return out

    def score(self, phase, requests, rollouts, state, ctx):
        teacher, solver = {}, {}
        for req, comps in zip(requests, rollouts):
            (teacher if req.role == "teacher" else solver)[req.meta["q"]] = (req, comps)
        eps, t_groups, s_groups, acc, agree_ts = [], [], [], [], []
        for i, (req, comps) in sorted(solver.items()):
            t_answers = [lf.answer_of(c.text, self.s.answer) for c in teacher[i][1]]
            label, _, _ = lf.majority(t_answers)
            answers = [lf.answer_of(c.text, self.s.answer) for c in comps]
            rewards = lf.match_rewards(answers, label)
            truth = req.meta["truth"]
            for c, a, r in zip(comps, answers, rewards):
                eps.append(Episode("solver", req.prompt, c, r, bucket=f"q{i}",
                                   info={"answer": a, "label": label}))
            t_groups.append((t_answers, label, truth))
            s_groups.append((answers, lf.majority(answers)[0], truth))
            acc += lf.answer_accuracy(answers, truth)
            agree_ts.append(float(label is not None and lf.majority(answers)[0] == label))
        metrics = {**lf.label_metrics("teacher", t_groups), **lf.label_metrics("solver", s_groups),
                   "solver/teacher_student_majority_agreement": float(np.mean(agree_ts)) if agree_ts else 0.0}
        # solver/label_accuracy: how often the label the solver trains on (the teacher's) is right.
        if "teacher/label_accuracy" in metrics:
            metrics["solver/majority_label_accuracy"] = metrics.pop("solver/label_accuracy")
            metrics["solver/label_accuracy"] = metrics["teacher/label_accuracy"]
        if acc:
            metrics["solver/accuracy"] = float(np.mean(acc))
        nxt = requests[0].meta["next"] if requests else state["questions"]
        return {**state, "questions": nxt}, eps, metrics


def make(s: Settings) -> CoRewardingII:
    return CoRewardingII(s)


__all__ = ["ema_rate", "Settings", "CoRewardingII", "make"]
