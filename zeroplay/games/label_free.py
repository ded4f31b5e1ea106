"""Shared parts of the label-free games (Co-rewarding I and II, TTRL, RENT, Intuitor).

- `CommonSettings`: the question source (`zeroplay.data`: spec, size, seed, options), questions
  per step, samples per question, the prompt suffix; every game's `Settings` extends it.
- `QuestionStream`: questions in a seeded order, epoch after epoch; the game state keeps only
  the cursor {"epoch", "cursor"} (plain JSON), so a resumed run draws the same questions.
- `answer_of`, `majority`: the last `\\boxed{}` content, stripped (exact string matching, as the
  Co-rewarding reference code; an empty or missing box is no answer; with `answer="boxed_or_number"`
  a response without a box answers its last number, the rule `zeroplay.eval` scores numeric
  benchmarks by, for small models that rarely box), and the majority over the
  non-empty answers: empties never vote, ties go to the answer that appeared first
  (`collections.Counter.most_common`, what the reference code calls); no label without answers.
- `label_metrics`: majority agreement, answer rate, and `label_accuracy` (how often the
  pseudo-label equals the held-back truth, compared after `vote.canonical_key`): monitoring only.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from zeroplay.games.base import Context, Episode, Game, Sampling

SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."  # Co-rewarding's


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    source: str = "rg:basic_arithmetic"   # zeroplay.data spec: rg:<task>, jsonl:<path>, tfds:<path>
    size: int = 500                       # questions drawn from the source (<= 0: all of a file)
    data_seed: int = 1                    # the source's seed (generation and shuffle)
    source_options: Mapping = dataclasses.field(default_factory=dict)  # e.g. reasoning-gym task options
    test_time: bool = False               # may train on a shared benchmark set (TTRL test-time mode)
    questions_per_step: int = 128         # batch of questions
    samples: int = 8                      # G rollouts per question
    prompt_suffix: str = SUFFIX
    chat: bool = True                     # the tokenizer's chat template, when it has one
    answer: str = "boxed"                 # "boxed" (the references') | "boxed_or_number" (see answer_of)
    exclude: Sequence[str] = ()           # evaluation sets (zeroplay.eval names) whose questions never train
    exclude_limit: int = 0                # their first items, as the evaluation reads them (0: all)

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple([self.exclude] if isinstance(self.exclude, str) else self.exclude))
        if self.answer not in ANSWER_RULES:
            raise ValueError(f"game.answer must be one of {ANSWER_RULES}, got {self.answer!r}")


ANSWER_RULES = ("boxed", "boxed_or_number")


def answer_of(text: str, rule: str = "boxed") -> str | None:
    """The answer of a response under `rule` (ANSWER_RULES); None when it has none."""
    from zeroplay.verifiers.math import extract_boxed

    a = extract_boxed(text or "")
    a = a.strip() if a is not None else None
    if not a and rule == "boxed_or_number":
        from zeroplay.evaluation.scoring import last_number

        a = last_number(text or "")
    return a or None


def majority(answers: Sequence[str | None]) -> tuple[str | None, int, int]:
    """(label, votes for it, non-empty answers); label None when no answer is non-empty."""
    valid = [a for a in answers if a]
    if not valid:
        return None, 0, 0
    label, count = collections.Counter(valid).most_common(1)[0]
    return label, count, len(valid)


def match_rewards(answers: Sequence[str | None], label: str | None) -> list[float]:
    """1 for an answer equal to a non-empty label, else 0 (an empty answer never matches)."""
    return [1.0 if (label and a == label) else 0.0 for a in answers]


def same_answer(a: str | None, b: str | None) -> bool:
    from zeroplay.verifiers.vote import canonical_key

    ka, kb = canonical_key(a), canonical_key(b)
    return ka is not None and ka == kb


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def excluded_texts(names: Sequence[str], limit: int = 0) -> set[str]:
    """The (normalised) questions of evaluation sets, read as `zeroplay.eval` reads them: a training
    source drops these, so a run's evaluation is held out by construction even when the source and
    the evaluation come from one small generator (one-digit sums have 200 distinct questions)."""
    from zeroplay.evaluation.benchmarks import load_benchmark

    return {_norm(it.question) for name in names for it in load_benchmark(name, limit=limit or None)}


class QuestionStream:
    """The questions of a source in a seeded order, epoch by epoch (loaded on first use)."""

    def __init__(self, s: CommonSettings):
        self.s = s
        self._questions = None

    @property
    def questions(self):
        if self._questions is None:
            from zeroplay.data import load_questions

            opts = self.s.source_options
            opts = opts.to_dict() if hasattr(opts, "to_dict") else dict(opts or {})
            self._questions = load_questions(self.s.source, size=self.s.size, seed=self.s.data_seed,
                                             options=opts, test_time=self.s.test_time)
            if self.s.exclude:
                held_out = excluded_texts(self.s.exclude, self.s.exclude_limit)
                self._questions = [q for q in self._questions if _norm(q.text) not in held_out]
            if not self._questions:
                raise ValueError(f"question source {self.s.source!r} gave no questions"
                                 + (" outside the excluded evaluation sets" if self.s.exclude else ""))
        return self._questions

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.s.data_seed, epoch]).permutation(len(self.questions))

    def take(self, cursor: Mapping, k: int):
        """(k questions, the next cursor)."""
        epoch, pos = int(cursor.get("epoch", 0)), int(cursor.get("cursor", 0))
        out, order = [], self._order(epoch)
        while len(out) < k:
            if pos >= len(order):
                epoch, pos = epoch + 1, 0
                order = self._order(epoch)
            out.append(self.questions[int(order[pos])])
            pos += 1
        return out, {"epoch": epoch, "cursor": pos}


def prompt_ids(text: str, s: CommonSettings, ctx: Context) -> list[int]:
    full = f"{text}\n{s.prompt_suffix}" if s.prompt_suffix else text
    if s.chat and ctx.chat is not None:
        return list(ctx.chat(full))
    return list(ctx.encode(full))


def label_metrics(prefix: str, groups: Sequence[tuple[Sequence[str | None], str | None, str | None]]) -> dict:
    """Per-step figures over groups of (answers, pseudo-label, truth or None)."""
    agree, answered, correct, labeled = [], [], [], []
    for answers, label, truth in groups:
        lab, count, n_valid = majority(answers)
        agree.append(count / n_valid if n_valid else 0.0)
        answered.append(n_valid / max(len(answers), 1))
        labeled.append(float(label is not None))
        if truth is not None:
            correct.append(float(same_answer(label, truth)))
    out = {f"{prefix}/majority_agreement": float(np.mean(agree)) if agree else 0.0,
           f"{prefix}/answer_rate": float(np.mean(answered)) if answered else 0.0,
           f"{prefix}/label_rate": float(np.mean(labeled)) if labeled else 0.0}
    if correct:
        out[f"{prefix}/label_accuracy"] = float(np.mean(correct))
    return out


def answer_accuracy(answers: Sequence[str | None], truth: str | None) -> list[float]:
    return [float(same_answer(a, truth)) for a in answers] if truth is not None else []


# -- RENT and Intuitor ------------------------------------------------------------------------
# They share everything but the reward: questions, G rollouts sampled with
# `Sampling(token_stats=True)` (per-token entropy and self-certainty from the sampler's own logits,
# no second forward pass), a reward per rollout from those arrays, GRPO per question. The loop
# samples a phase's requests without per-request sampling settings, so these games ask for nothing
# in `requests` and sample inside `score` through `ctx.sample(..., Sampling(token_stats=True))`.
# Answers are still extracted, for monitoring only (majority agreement, label accuracy).

class TokenRewardGame(Game):
    roles = ("solver",)
    estimator = "grpo"
    stat = "entropy"  # the Completion field the reward reads

    def __init__(self, s, reward: Callable[[np.ndarray], float]):
        self.s = s
        self.stream = QuestionStream(s)
        self.reward = reward

    def init_state(self, ctx):
        return {"questions": {"epoch": 0, "cursor": 0}}

    def requests(self, phase, state, ctx):
        return []

    def score(self, phase, requests, rollouts, state, ctx):
        qs, nxt = self.stream.take(state["questions"], self.s.questions_per_step)
        prompts = [prompt_ids(q.text, self.s, ctx) for q in qs]
        rollouts = ctx.sample("solver", prompts, self.s.samples, Sampling(token_stats=True))
        eps, groups, acc, stats = [], [], [], []
        for i, (q, p, comps) in enumerate(zip(qs, prompts, rollouts)):
            answers = [answer_of(c.text, self.s.answer) for c in comps]
            for c, a in zip(comps, answers):
                values = getattr(c, self.stat)
                if values is None:
                    raise RuntimeError(f"{type(self).__name__}: the sampler returned no per-token {self.stat}")
                eps.append(Episode("solver", p, c, self.reward(values), bucket=f"q{i}", info={"answer": a}))
                stats.append(float(np.mean(values)) if len(values) else 0.0)
            groups.append((answers, majority(answers)[0], q.answer))
            acc += answer_accuracy(answers, q.answer)
        metrics = label_metrics("solver", groups)
        metrics[f"solver/token_{self.stat}"] = float(np.mean(stats)) if stats else 0.0
        if acc:
            metrics["solver/accuracy"] = float(np.mean(acc))
        return {**state, "questions": nxt}, eps, metrics


def token_mean(values) -> float:
    v = np.asarray(values, np.float64)
    return float(v.mean()) if v.size else 0.0



# -- run configs ----------------------------------------------------------------------------------

# The SmolLM2 variants' question source: reasoning-gym `basic_arithmetic`, two one-digit terms, + and
# -, no negated terms or parentheses. Measured (24 questions x 8 samples, 96 new tokens, in stop 18):
# SmolLM2-135M-Instruct at T=1 with the TTRL suffix answers 22% of samples right while the majority
# over 8 samples is right 46% of the time, so the vote carries a real signal; with negation and
# parentheses allowed it answered 6% and the majority 6%.
EASY_ARITHMETIC = dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1, operators=["+", "-"],
                       allow_parentheses=False, allow_negation=False)
# configs/{co_rewarding_i,co_rewarding_ii,ttrl,rent,intuitor}.py share one layout, built here.

# The reference models of the Co-rewarding paper (methods.md section 3), read from
# $ZEROPLAY_MODELS/<folder> (Hugging Face folders: nothing is downloaded).
FULL_SIZE = {
    "qwen3-8b-base": ("Qwen3-8B-Base", dict(
        family="qwen3", vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_layers=36,
        num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=1e6, tie_word_embeddings=False, qk_norm=True,
        attention_bias=False, max_position_embeddings=32768, rms_norm_eps=1e-6)),
    "qwen3-4b-base": ("Qwen3-4B-Base", dict(
        family="qwen3", vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_layers=36,
        num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=1e6, tie_word_embeddings=True, qk_norm=True,
        attention_bias=False, max_position_embeddings=32768, rms_norm_eps=1e-6)),
    "qwen2.5-7b": ("Qwen2.5-7B", dict(
        family="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28,
        num_heads=28, num_kv_heads=4, rope_theta=1e6, tie_word_embeddings=False, attention_bias=True,
        max_position_embeddings=32768, rms_norm_eps=1e-6)),
}
# The paper trains on 4 x H100; "tpu" is a v5p-8 slice (4 chips).
MESHES = {"gpu4": dict(data=1, fsdp=4, tensor=1), "tpu": dict(data=1, fsdp=4, tensor=1)}
TINY_SHAPE = dict(family="qwen2", vocab_size=258, hidden_size=64, intermediate_size=128, num_layers=2,
                  num_heads=4, num_kv_heads=2, tie_word_embeddings=True, attention_bias=True,
                  max_position_embeddings=1024)


def run_config(name: str, arg, *, game: dict, roles: dict, train: dict, teacher: dict | None = None,
               tiny_game: dict | None = None, full_game: dict | None = None, full_train: dict | None = None,
               full_steps: int = 200, sampling: dict | None = None, full_sampling: dict | None = None):
    """A label-free game's run config: "" (the embedded SmolLM2-135M-Instruct on a 2-core CPU),
    "tiny" (a random tiny model, byte tokenizer, 2 steps), "<model>-<mesh>" (methods.md's
    reference settings on FULL_SIZE x MESHES)."""
    import os

    import ml_collections

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 4
    c.game = ml_collections.ConfigDict(dict(name=name, **game))
    c.roles = ml_collections.ConfigDict(roles)
    c.policies = ml_collections.ConfigDict()
    policy = dict(
        model=dict(name="smollm2-135m-instruct", dtype="float32", param_dtype="float32", scan_layers=True,
                   remat="none", shape=None, tokenizer=None),
        # micro-batches of 8 rows and a chunked LM head: SmolLM2's 49152-entry vocabulary at full
        # logits over 16 x 256 tokens took 11 GB of host memory in one update.
        train=dict(dict(lr=3e-6, schedule="constant", grad_clip=1.0, clip_low=0.2, clip_high=0.2, kl_coef=0.0,
                        aggregation="token_mean", entropy_coef=0.0, micro_batch=8, logprob_chunk=128), **train),
        sampling=dict(dict(max_new_tokens=128, temperature=1.0, top_p=1.0, top_k=0, max_prompt_tokens=256),
                      **(sampling or {})))
    if teacher is not None:
        policy["teacher"] = dict(teacher)
    c.policies.policy = ml_collections.ConfigDict(policy)
    c.loop = ml_collections.ConfigDict(dict(
        checkpoint_every=1, keep_checkpoints=2, async_checkpoint=True, eval_every=0, sample_batch=32,
        train_row_multiple=8, train_len_multiple=64, progress=True))
    c.verifiers = ml_collections.ConfigDict(dict(code_workers=0))
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.rules = ml_collections.config_dict.placeholder(list)
    p = c.policies.policy
    if arg == "tiny":
        c.steps = 2
        p.model.name = "random"
        p.model.shape = dict(TINY_SHAPE)
        p.model.tokenizer = "byte"
        p.train.lr = 1e-3
        p.train.micro_batch = None
        p.train.logprob_chunk = None
        p.sampling.max_new_tokens = 16
        p.sampling.max_prompt_tokens = 512
        c.game.update(dict(questions_per_step=2, samples=2, size=16, **(tiny_game or {})))
        c.loop.train_row_multiple = 4
        c.loop.train_len_multiple = 16
        c.loop.progress = False
    elif arg and arg.rsplit("-", 1)[0] in FULL_SIZE and arg.rsplit("-", 1)[1] in MESHES:
        model, where = arg.rsplit("-", 1)
        folder, shape = FULL_SIZE[model]
        c.steps = full_steps
        c.game.update(full_game or {})
        p.model.name = os.path.join(os.environ.get("ZEROPLAY_MODELS", "models"), folder)
        p.model.shape = dict(shape)
        p.model.dtype = "bfloat16"
        p.model.param_dtype = "float32"
        p.model.remat = "full"
        p.train.update(full_train or {})
        p.train.compute_dtype = "bfloat16"
        p.train.micro_batch = 16
        p.train.logprob_chunk = 1024
        p.sampling.update(full_sampling or {})
        c.loop.sample_batch = 256
        c.loop.train_row_multiple = 64
        c.loop.train_len_multiple = 512
        c.loop.checkpoint_every = 10
        c.loop.eval_every = 25
        c.mesh = ml_collections.ConfigDict(MESHES[where])
    elif arg not in (None, ""):
        variants = ["tiny"] + [f"{m}-{w}" for m in FULL_SIZE for w in MESHES]
        raise ValueError(f"unknown configs/{name}.py variant {arg!r}; use one of {variants} or nothing")
    else:  # SmolLM2 boxes under 2% of its answers at T=1; it states them as the last number
        c.game.answer = "boxed_or_number"
    return c
