"""PasoDoble (Zhang, Huang, Li, Cardie 2025, arXiv 2511.11881) as a zeroplay `Game`.

Two separate policies: a `proposer` writes a math problem (`<problem>...</problem>`) and its
worked answer (`<answer>... \\boxed{} ...</answer>`) from a knowledge passage; a `solver` answers.
Rules follow the reference code (HCY123902/PasoDoble @ 16dae4f, methods.md section 4):

- the question is the first `<problem>` after the last `</think>` (none: no question); the
  proposer's answer is the last `\\boxed{}` of the `<answer>` section after the last `</think>`;
- each question gets `solver_samples` solver answers; an answer is right when its last `\\boxed{}`
  is equivalent to the proposer's (zeroplay.verifiers.math); pass rate p = mean;
- validity / answer-leak check sets p := 0: no question or answer, a `\\boxed` inside the question,
  the question inside the answer, or the answer string inside the question;
- proposer reward `proposer_reward(p, d)` with `d = diversity(question ids, history)` over the
  last `history_size` questions; after scoring, if at least one proposal of the step had p > 0.2,
  every proposal's question ids join the history (the reference's buffer/add rule);
- the solver trains only on questions with low < p < high (0.2, 1.0);
- skip rules: the step trains nothing when no question lies in that band or when every proposer
  advantage is 0 (every group's rewards equal);
- Dr. GRPO (`estimator="dr_grpo"`; the policies' train config sets the loss aggregation
  "seq_mean_token_sum_norm" and max_tokens), no KL, no reference.

Modes: "online" (both policies update every step) and "offline" (cycles of `proposer_updates`
proposer steps with a frozen solver, which push questions with low < p < high into a FIFO
question buffer, then `solver_updates` solver steps, each on `solver_batch` buffered questions
read round-robin, re-sampled, re-scored and re-filtered).

State (plain JSON): {"history": [[token ids], ...], "buffer": [{"question", "answer"}, ...],
"cursor": int, "skipped": int}.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Mapping, Sequence

from zeroplay.games.base import Completion, Context, Episode, Game, Request, Sampling

ROLES = ("proposer", "solver")
DEFAULT_PASSAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "math_passages.jsonl")

PROPOSER_SYSTEM = (
    "You are the proposer in a proposer-solver game. Your task is to create a challenging, well-structured, "
    "diverse, and unambiguous mathematical problem that has a verifiable answer.\n\n"
    "Enclose the problem statement within <problem>...</problem> tags.\n"
    "Provide a detailed step-by-step solution, including a brief verification or sanity check, within "
    "<answer>...</answer> tags.\n"
    "The final ground truth answer to the problem must be enclosed in \\boxed{} inside the <answer> section.")
PROPOSER_USER = (
    "External knowledge: {knowledge}\n\nNow, please create a challenging, well-structured, diverse, and "
    "unambiguous mathematical problem that has a verifiable answer, using the provided external and internal "
    "knowledge as context.")
SOLVER_SYSTEM = (
    "You are a solver in a proposer-solver game. Your task is to solve the problem proposed by the proposer.\n\n"
    "Present your answer in the format of <answer>...your answer here...</answer>, with the final answer in "
    "\\boxed{}.")


@dataclasses.dataclass(frozen=True)
class Settings:
    """PasoDoble's constants; defaults are the reference 8-GPU scripts'."""
    mode: str = "online"               # "online" | "offline"
    passages: str | None = None        # JSONL of passages ("text" field); None: the packaged default
    passages_per_step: int = 1         # knowledge prompts per step (reference: 1)
    proposals: int = 6                 # G_p proposals per knowledge prompt
    solver_samples: int = 6            # G_s solver answers per question
    low: float = 0.2                   # pass-rate band for the solver (open interval)
    high: float = 1.0
    jaccard_threshold: float = 0.8     # history items with similarity <= this count as different
    history_size: int = 100
    proposer_updates: int = 10         # offline: proposer steps per outer iteration
    solver_updates: int = 5            # offline: solver steps per outer iteration
    solver_batch: int = 6              # offline: buffered questions per solver step
    max_passage_chars: int = 4000      # longer passages are cut
    think: bool = True                 # prompts end with "<think>\n" (the reference's Qwen3 prompts)
    chat: bool = True                  # the tokenizer's chat template, when it has one
    timeout_s: float = 5.0             # per equivalence check

    def __post_init__(self):
        if self.mode not in ("online", "offline"):
            raise ValueError(f"pasodoble mode must be 'online' or 'offline', got {self.mode!r}")
        for name in ("passages_per_step", "proposals", "solver_samples", "history_size", "proposer_updates",
                     "solver_updates", "solver_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"pasodoble {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.low < self.high <= 1:
            raise ValueError(f"pasodoble needs 0 <= low < high <= 1, got {self.low}, {self.high}")


# -- pure rules (the acceptance checks call these) ------------------------------------------

def proposer_reward(pass_rate: float, diversity: float) -> float:
    """0 if p <= 0.2 (invalid, unsolved or wrong) or d <= 0.3 (a near-duplicate), else 1.1 - p + 0.2 d."""
    p, d = float(pass_rate), float(diversity)
    if p <= 0.2 or d <= 0.3:
        return 0.0
    return 1.1 - p + 0.2 * d


def jaccard(a, b) -> float:
    """Jaccard similarity of two token sets (two empty sets: 1.0, identical)."""
    a, b = set(a), set(b)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def diversity(question_token_ids: Sequence[int], history: Sequence[Sequence[int]],
              threshold: float = 0.8) -> float:
    """Share of history items whose token-set Jaccard similarity with the question is <= threshold;
    1.0 for an empty history."""
    if not history:
        return 1.0
    q = set(question_token_ids)
    return sum(jaccard(q, h) <= threshold for h in history) / len(history)


def update_history(history: Sequence[Sequence[int]], questions: Sequence[Sequence[int]],
                   pass_rates: Sequence[float], size: int = 100, low: float = 0.2) -> list[list[int]]:
    """The reference rule: when at least one proposal of the step had p > low, every proposal's
    question ids (those that have a question) join the history, which keeps its last `size`."""
    out = [list(h) for h in history]
    if any(p > low for p in pass_rates):
        out += [list(q) for q in questions if q]
    return out[-size:]


# -- parsing ---------------------------------------------------------------------------------

_PROBLEM_RE = re.compile(r"<problem>(.*?)</problem>", re.DOTALL)


def after_think(text: str) -> str | None:
    """The text after the last `</think>`, or None when there is none (reference: no question)."""
    text = text or ""
    pos = text.rfind("</think>")
    return None if pos < 0 else text[pos + len("</think>"):]


def parse_proposal(text: str, require_think: bool = True) -> tuple[str | None, str | None]:
    """(question, answer): the first `<problem>` after the last `</think>`, and the last `\\boxed{}`
    of the `<answer>` section after it; None for what is missing or empty."""
    from zeroplay.verifiers.math import extract_boxed

    rest = after_think(text)
    if rest is None:
        if require_think:
            return None, None
        rest = text or ""
    m = _PROBLEM_RE.search(rest)
    question = m.group(1).strip() if m else None
    low = rest.lower()
    start = low.find("<answer>")
    answer = None
    if start >= 0:
        end = low.find("</answer>", start)
        section = rest[start + len("<answer>"):end if end >= 0 else len(rest)]
        answer = extract_boxed(section)
    return question or None, (answer.strip() if answer else None) or None


def is_valid(question: str | None, answer: str | None) -> bool:
    """The reference's anti-hacking check: both present, no `\\boxed` in the question, the
    question not inside the answer, the answer not inside the question."""
    from zeroplay.verifiers.math import extract_boxed

    if not question or not answer:
        return False
    if question in answer or extract_boxed(question) is not None or "\\boxed" in question:
        return False
    return answer not in question


def solver_answer(text: str) -> str | None:
    from zeroplay.verifiers.math import extract_boxed

    a = extract_boxed(text or "")
    return a.strip() if a and a.strip() else None


# -- knowledge base ----------------------------------------------------------------------------

def load_passages(path: str | None = None) -> list[str]:
    """Passages from JSON lines (field "text", or "passage" / "content")."""
    path = path or DEFAULT_PASSAGES
    if not os.path.exists(path):
        raise FileNotFoundError(f"pasodoble passages file {path} not found; set game.passages to a JSONL file "
                                "with a 'text' field per line")
    out = []
    with open(path) as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            r = json.loads(line)
            t = next((r[k] for k in ("text", "passage", "content") if isinstance(r.get(k), str)), None)
            if t is None:
                raise ValueError(f"{path}:{i + 1}: a passage needs a 'text' field")
            if t.strip():
                out.append(t.strip())
    if not out:
        raise ValueError(f"{path} holds no passages")
    return out


def role_prompt(system: str, user: str, ctx: Context, *, chat: bool = True, think: bool = True) -> list[int]:
    """The prompt ids: the system text and the user text as one user message (chat template when
    the tokenizer has one), then "<think>\\n" when `think`."""
    body = f"{system}\n\n{user}" if system else user
    ids = list(ctx.chat(body)) if chat and ctx.chat is not None else list(ctx.encode(body + "\n"))
    if think:
        ids += list(ctx.encode("<think>\n"))
    return ids


def sampled_prompt(c: Completion, prompt: Sequence[int]) -> list[int]:
    """The prompt a nested sample was drawn from: as the sampler saw it (cut to the role's cap)
    when it says so, else the one that was asked."""
    return list(c.prompt) if getattr(c, "prompt", None) is not None else list(prompt)


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else 0.0


# -- the game ----------------------------------------------------------------------------------

class PasoDobleGame(Game):
    roles = ROLES
    estimator = "dr_grpo"

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self._passages: list[str] | None = None

    @property
    def passages(self) -> list[str]:
        if self._passages is None:
            self._passages = load_passages(self.settings.passages)
        return self._passages

    # -- schedule ------------------------------------------------------------------------------
    def _offline_phase(self, step: int) -> str:
        s = self.settings
        k = (step - 1) % (s.proposer_updates + s.solver_updates)
        return "propose" if k < s.proposer_updates else "solve"

    def phases(self, state: Mapping, step: int) -> tuple[str, ...]:
        return ("play",) if self.settings.mode == "online" else (self._offline_phase(step),)

    def trains(self, step: int, state: Mapping) -> tuple[str, ...]:
        if self.settings.mode == "online":
            return ROLES
        return ("proposer",) if self._offline_phase(step) == "propose" else ("solver",)

    # -- prompts ---------------------------------------------------------------------------------
    def init_state(self, ctx: Context) -> dict:
        return {"history": [], "buffer": [], "cursor": 0, "skipped": 0}

    def proposer_prompt(self, passage: str, ctx: Context) -> list[int]:
        s = self.settings
        return role_prompt(PROPOSER_SYSTEM, PROPOSER_USER.format(knowledge=passage[:s.max_passage_chars]), ctx,
                           chat=s.chat, think=s.think)

    def solver_prompt(self, question: str, ctx: Context) -> list[int]:
        return role_prompt(SOLVER_SYSTEM, question, ctx, chat=self.settings.chat, think=self.settings.think)

    def requests(self, phase: str, state: Mapping, ctx: Context) -> list[Request]:
        s = self.settings
        if phase in ("play", "propose"):
            out = []
            for _ in range(s.passages_per_step):
                i = int(ctx.rng.integers(len(self.passages)))
                out.append(Request("proposer", self.proposer_prompt(self.passages[i], ctx), s.proposals,
                                   {"kind": "propose", "passage": i}))
            return out
        if phase == "solve":
            buf, cur = state["buffer"], int(state["cursor"])
            if not buf:
                return []
            out = []
            for j in range(s.solver_batch):
                item = buf[(cur + j) % len(buf)]
                out.append(Request("solver", self.solver_prompt(item["question"], ctx), s.solver_samples,
                                   {"kind": "solve", "question": item["question"], "answer": item["answer"]}))
            return out
        raise ValueError(f"pasodoble phase must be play, propose or solve; got {phase!r}")

    # -- scoring ---------------------------------------------------------------------------------
    def _check(self, answers: Sequence[Sequence[str | None]], golds: Sequence[str]) -> list[list[bool]]:
        from zeroplay.verifiers.math import is_equivalent_batch

        pairs = [(a, g) for row, g in zip(answers, golds) for a in row if a is not None]
        verdicts = iter(is_equivalent_batch(pairs, timeout_s=self.settings.timeout_s) if pairs else [])
        return [[bool(next(verdicts)) if a is not None else False for a in row] for row in answers]

    def score(self, phase: str, requests: Sequence[Request], rollouts: Sequence[Sequence[Completion]],
              state: Mapping, ctx: Context) -> tuple[dict, list[Episode], dict]:
        if len(requests) != len(rollouts):
            raise ValueError(f"{len(requests)} requests but {len(rollouts)} rollouts")
        if phase == "solve":
            return self._score_solve(requests, rollouts, state, ctx)
        return self._score_propose(phase, requests, rollouts, state, ctx)

    def _score_propose(self, phase, requests, rollouts, state, ctx):
        s = self.settings
        props = []
        for gi, (req, comps) in enumerate(zip(requests, rollouts)):
            for c in comps:
                q, a = parse_proposal(c.text)
                props.append({"req": req, "comp": c, "group": gi, "question": q, "answer": a,
                              "valid": is_valid(q, a)})
        # Solver answers for every question that parsed (the reference asks the solver about every
        # proposal, then zeroes the pass rate of the invalid ones).
        asked = [p for p in props if p["question"]]
        for p in asked:
            p["solver_prompt"] = self.solver_prompt(p["question"], ctx)
        got = ctx.sample("solver", [p["solver_prompt"] for p in asked], s.solver_samples, Sampling()) if asked else []
        if len(got) != len(asked):
            raise ValueError(f"sampler returned {len(got)} groups for {len(asked)} prompts")
        with ctx.timed("verify"):
            answers = [[solver_answer(c.text) for c in comps] for comps in got]
            correct = self._check(answers, [p["answer"] or "" for p in asked])
        for p, comps, ok in zip(asked, got, correct):
            p["solver"], p["correct"] = list(comps), ok
        history = state["history"]
        for p in props:
            raw = _mean(p.get("correct", []))
            p["raw_pass_rate"] = raw
            p["pass_rate"] = raw if p["valid"] else 0.0
            p["ids"] = list(ctx.encode(p["question"])) if p["question"] else []
            p["diversity"] = diversity(p["ids"], history, s.jaccard_threshold)
            p["reward"] = proposer_reward(p["pass_rate"], p["diversity"])
            p["in_band"] = p["valid"] and s.low < p["pass_rate"] < s.high

        # Skip rules: no question in the band, or no proposer advantage (every group constant).
        groups: dict[int, list[float]] = {}
        for p in props:
            groups.setdefault(p["group"], []).append(p["reward"])
        any_adv = any(max(r) != min(r) for r in groups.values())
        any_band = any(p["in_band"] for p in props)
        skip = not (any_adv and any_band)

        episodes = []
        for p in props:
            episodes.append(Episode(
                "proposer", p["req"].prompt, p["comp"], p["reward"], bucket=f"proposer/{p['group']}",
                info={"valid": p["valid"], "pass_rate": p["pass_rate"], "diversity": p["diversity"], "skip": skip}))
        if s.mode == "online":
            for k, p in enumerate(props):
                for c, ok in zip(p.get("solver", []), p.get("correct", [])):
                    episodes.append(Episode(
                        "solver", sampled_prompt(c, p["solver_prompt"]), c, 1.0 if ok else 0.0, bucket=f"solver/{k}",
                        info={"train": p["in_band"], "skip": skip, "pass_rate": p["pass_rate"]}))

        new = dict(state)
        new["history"] = update_history(history, [p["ids"] for p in props], [p["pass_rate"] for p in props],
                                        s.history_size, s.low)
        if s.mode == "offline":
            new["buffer"] = list(state["buffer"]) + [{"question": p["question"], "answer": p["answer"]}
                                                     for p in props if p["in_band"]]
        new["skipped"] = int(state.get("skipped", 0)) + int(skip)

        n_solver = sum(len(p.get("correct", [])) for p in props)
        m = {"proposer/valid_rate": _mean(p["valid"] for p in props),
             "proposer/parsed_rate": _mean(p["question"] is not None for p in props),
             "proposer/answer_rate": _mean(p["answer"] is not None for p in props),
             "proposer/pass_rate_mean": _mean(p["pass_rate"] for p in props),
             "proposer/diversity_mean": _mean(p["diversity"] for p in props),
             "proposer/rewarded_rate": _mean(p["reward"] > 0 for p in props),
             "solver/pass_rate": _mean(ok for p in props for ok in p.get("correct", [])) if n_solver else 0.0,
             "solver/band_keep_rate": _mean(p["in_band"] for p in props),
             "solver/questions_in_band": float(sum(p["in_band"] for p in props)),
             "game/skipped": float(skip), "game/skipped_total": float(new["skipped"]),
             "game/history": float(len(new["history"])), "game/buffer": float(len(new["buffer"]))}
        return new, episodes, m

    def _score_solve(self, requests, rollouts, state, ctx):
        s = self.settings
        with ctx.timed("verify"):
            answers = [[solver_answer(c.text) for c in comps] for comps in rollouts]
            correct = self._check(answers, [r.meta["answer"] for r in requests])
        episodes, rates = [], []
        for k, (req, comps, ok) in enumerate(zip(requests, rollouts, correct)):
            p = _mean(ok)
            rates.append(p)
            band = s.low < p < s.high
            for c, o in zip(comps, ok):
                episodes.append(Episode("solver", req.prompt, c, 1.0 if o else 0.0, bucket=f"solver/{k}",
                                        info={"train": band, "skip": False, "pass_rate": p}))
        new = dict(state)
        if state["buffer"]:
            new["cursor"] = (int(state["cursor"]) + len(requests)) % len(state["buffer"])
        m = {"solver/pass_rate": _mean(o for ok in correct for o in ok) if requests else 0.0,
             "solver/band_keep_rate": _mean(s.low < r < s.high for r in rates),
             "solver/questions_in_band": float(sum(s.low < r < s.high for r in rates)),
             "game/buffer": float(len(state["buffer"])), "game/cursor": float(new["cursor"])}
        return new, episodes, m

    def filter(self, episodes: list[Episode]) -> list[Episode]:
        return [e for e in episodes if not e.info.get("skip") and e.info.get("train", True)]


def make(settings: Settings | None = None) -> PasoDobleGame:
    return PasoDobleGame(settings or Settings())


__all__ = ["Settings", "PasoDobleGame", "make", "proposer_reward", "diversity", "jaccard", "update_history",
           "parse_proposal", "is_valid", "load_passages", "role_prompt", "ROLES"]
