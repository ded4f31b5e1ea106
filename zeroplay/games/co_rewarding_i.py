"""Co-rewarding-I (Zhang et al. 2025, arXiv 2508.00410), data side: question and rephrasing
label each other.

For each unlabeled question x and its rephrasing x' (same mathematics and answer), the policy
samples G rollouts of each; y_v = majority answer to x, y'_v = majority answer to x' (last
`\\boxed{}` content, exact string, empty answers ignored). Cross-referenced rewards:
r(y_i) = 1[ans(y_i) = y'_v != empty], r(y'_i) = 1[ans(y'_i) = y_v != empty]. GRPO within each
of the two groups; both groups go into one update (J_orig + J_rephrased); KL 0.005 to the
initial model (config).

Rephrasings (`game.rephrasings`):
- "data" (default): the source's `rephrasing` field where the data has one (the paper's come from
  Qwen3-32B offline), else a deterministic procedural rephrasing (`zeroplay.data.rephrase`:
  reasoning-gym arithmetic expressions asked in another template; other questions in another
  framing).
- "generate": every question of the source is rephrased once, before the first update (in
  `init_state`, with the initial params), by the game's "rephraser" role with the paper's prompt
  (`zeroplay.data.rephrase.REPHRASE_INSTRUCTION`), sampled at `rephrase_temperature` /
  `rephrase_top_p` (the reference script's 0.7 / 0.8; 0 is greedy) up to `rephrase_max_new_tokens`.
  The config maps "rephraser" to a policy: the trained policy itself (the same model as the
  solver, as zero-data training implies), or a policy of its own that no role trains (a bigger
  model; the loop still gives it an optimizer state and checkpoints it, see configs/
  co_rewarding_i.py). `trains` never names the rephraser. The results are cached in the run
  folder, `<workdir>/rephrasings.jsonl` (one {"question", "rephrasing", "fallback"} per line,
  written atomically), and read back on resume and by later runs in the same folder: a question
  with an entry is never rephrased again (one without, e.g. after the source grew, is, and the
  file is rewritten with all entries; a resumed run whose file was deleted rephrases with the
  current params). A reply with no parsable rewrite
  (`zeroplay.data.rephrase.parse_rephrasing`) leaves the question as its own rephrasing,
  `"fallback": true`; `rephrase/fallback_rate` is the share of a step's questions that did.
  Without a workdir (`ctx.workdir` None, unit tests) the rephrasings live in memory only.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from zeroplay.data import parse_rephrasing, procedural_rephrasing, read_rephrasings, rephrase_prompt, write_rephrasings
from zeroplay.games import label_free as lf
from zeroplay.games.base import Episode, Game, Request, Sampling

REPHRASINGS = ("data", "generate")
CACHE_FILE = "rephrasings.jsonl"  # in the run folder


@dataclasses.dataclass(frozen=True)
class Settings(lf.CommonSettings):
    rephrasings: str = "data"             # "data": the source's field (else procedural); "generate": the rephraser
    rephrase_max_new_tokens: int = 1024   # the rephraser's reply cap ("generate")
    rephrase_temperature: float = 0.7     # the reference rewrite script's sampling; 0: greedy
    rephrase_top_p: float = 0.8

    def __post_init__(self):
        super().__post_init__()
        if self.rephrasings not in REPHRASINGS:
            raise ValueError(f"game.rephrasings={self.rephrasings!r}: use one of {list(REPHRASINGS)}")
        if self.rephrase_max_new_tokens < 1:
            raise ValueError(f"game.rephrase_max_new_tokens={self.rephrase_max_new_tokens}: must be >= 1")
        if self.rephrase_temperature < 0 or not 0 < self.rephrase_top_p <= 1:
            raise ValueError(f"game.rephrase_temperature={self.rephrase_temperature}, "
                             f"rephrase_top_p={self.rephrase_top_p}: need temperature >= 0, 0 < top_p <= 1")


def cross_rewards(answers: list, answers_rephrased: list) -> tuple[list[float], list[float], str | None, str | None]:
    """(rewards of x's rollouts, rewards of x''s rollouts, y_v, y'_v)."""
    y, _, _ = lf.majority(answers)
    y2, _, _ = lf.majority(answers_rephrased)
    return lf.match_rewards(answers, y2), lf.match_rewards(answers_rephrased, y), y, y2


def generate_rephrasings(texts, s: Settings, ctx) -> dict[str, dict]:
    """{question: {"question", "rephrasing", "fallback"}}: one reply of the "rephraser" role per
    question (the paper's prompt as one chat turn when the tokenizer has a template), parsed; a
    reply without a rewrite falls back to the question itself."""
    texts = list(dict.fromkeys(texts))
    prompts = [list(ctx.chat(rephrase_prompt(t)) if s.chat and ctx.chat is not None else ctx.encode(rephrase_prompt(t)))
               for t in texts]
    sampling = Sampling(temperature=s.rephrase_temperature, top_p=s.rephrase_top_p,
                        max_new_tokens=s.rephrase_max_new_tokens)
    with ctx.timed("rephrase"):
        rows = ctx.sample("rephraser", prompts, 1, sampling) if prompts else []
    out = {}
    for t, comps in zip(texts, rows):
        r = parse_rephrasing(comps[0].text if comps else "")
        out[t] = {"question": t, "rephrasing": r if r is not None else t, "fallback": r is None}
    return out


class CoRewardingI(Game):
    estimator = "grpo"

    def __init__(self, s: Settings):
        self.s = s
        self.stream = lf.QuestionStream(s)
        self.generate = s.rephrasings == "generate"
        self.roles = ("solver", "rephraser") if self.generate else ("solver",)
        self._made: dict[str, dict] | None = None  # the rephraser's rephrasings, by question text

    def trains(self, step, state=None):
        return ("solver",)  # never the rephraser

    def made_rephrasings(self, ctx) -> dict[str, dict]:
        """The rephraser's rephrasings of every question of the source: read from the run folder's
        cache, the missing ones generated (all of them, the first time) and the cache rewritten."""
        if self._made is not None:
            return self._made
        path = os.path.join(ctx.workdir, CACHE_FILE) if getattr(ctx, "workdir", None) else None
        made = read_rephrasings(path) if path else {}
        missing = [q.text for q in self.stream.questions if q.text not in made]
        if missing:
            made.update(generate_rephrasings(missing, self.s, ctx))
            if path:
                write_rephrasings(path, made.values())
        self._made = made
        return made

    def rephrasing_of(self, q, ctx) -> tuple[str, bool]:
        """(x', fell back to the question itself)."""
        if self.generate:
            e = self.made_rephrasings(ctx)[q.text]
            return e["rephrasing"], bool(e.get("fallback", False))
        return q.rephrasing or procedural_rephrasing(q.text, {}, q.id), False

    def init_state(self, ctx):
        if self.generate:  # before the first update: the rephraser samples with the initial params
            self.made_rephrasings(ctx)
        return {"questions": {"epoch": 0, "cursor": 0}}

    def requests(self, phase, state, ctx):
        qs, nxt = self.stream.take(state["questions"], self.s.questions_per_step)
        out = []
        for i, q in enumerate(qs):
            reph, fallback = self.rephrasing_of(q, ctx)
            meta = {"q": i, "id": q.id, "truth": q.answer, "next": nxt, "fallback": fallback}
            out.append(Request("solver", lf.prompt_ids(q.text, self.s, ctx), self.s.samples, {**meta, "kind": "orig"}))
            out.append(Request("solver", lf.prompt_ids(reph, self.s, ctx), self.s.samples, {**meta, "kind": "reph"}))
        return out

    def score(self, phase, requests, rollouts, state, ctx):
        pairs: dict = {}
        for req, comps in zip(requests, rollouts):
            pairs.setdefault(req.meta["q"], {})[req.meta["kind"]] = (req, comps)
        eps, groups, cross_agree, acc, fallback = [], [], [], [], []
        for i, pair in sorted(pairs.items()):
            (req, comps), (req2, comps2) = pair["orig"], pair["reph"]
            a = [lf.answer_of(c.text, self.s.answer) for c in comps]
            a2 = [lf.answer_of(c.text, self.s.answer) for c in comps2]
            r, r2, y, y2 = cross_rewards(a, a2)
            truth = req.meta["truth"]
            for kind, rq, cs, ans, rs, lab in (("orig", req, comps, a, r, y2), ("reph", req2, comps2, a2, r2, y)):
                for c, ai, ri in zip(cs, ans, rs):
                    eps.append(Episode("solver", rq.prompt, c, ri, bucket=f"q{i}/{kind}",
                                       info={"answer": ai, "label": lab}))
            # The label each group trains on is the other group's majority.
            groups += [(a, y2, truth), (a2, y, truth)]
            cross_agree.append(float(y is not None and y == y2))
            fallback.append(float(req.meta.get("fallback", False)))
            acc += lf.answer_accuracy(a + a2, truth)
        metrics = {**lf.label_metrics("solver", groups),
                   "solver/cross_label_agreement": float(np.mean(cross_agree)) if cross_agree else 0.0}
        if acc:
            metrics["solver/accuracy"] = float(np.mean(acc))
        if self.generate and fallback:
            metrics["rephrase/fallback_rate"] = float(np.mean(fallback))
        nxt = requests[0].meta["next"] if requests else state["questions"]
        return {**state, "questions": nxt}, eps, metrics


def make(s: Settings) -> CoRewardingI:
    return CoRewardingI(s)


__all__ = ["Settings", "CoRewardingI", "make", "cross_rewards", "generate_rephrasings", "CACHE_FILE"]
