"""The Game interface: what a self-play method supplies to the loop, and nothing else.

A game names its roles (proposer, solver, ...); the run config maps each role to a policy, so
two roles may share one model (AZR) or own one each (PasoDoble). A step of the loop
(`zeroplay/loop.py`) is, for each phase the game names:

    requests = game.requests(phase, state, ctx)          # prompts to sample, per role
    rollouts = ctx.sample(...) for each role              # the loop samples, live params
    state, episodes, metrics = game.score(phase, requests, rollouts, state, ctx)

then `game.filter` drops what should not train, the loop turns rewards into advantages with the
game's `estimator` within each bucket (a GRPO group, an AZR (task, role) pair, ...), and runs one jitted update
per policy whose roles `game.trains(step, state)` names; last, `game.after_step(state, step,
metrics, ctx)` sees the updated policies (it may sample them through `ctx.sample`, e.g. CPMöbius's
probe) and returns snapshot / rollback actions.

A game sees the sampler only through `ctx.sample` (nested samples while scoring, e.g. AZR's
learnability estimate) and the tokenizer through `ctx.encode` / `ctx.decode`; it never imports
`zeroplay.sampling` or `zeroplay.rl`. Its state is plain data (dicts, lists, strings, numbers)
that the checkpoint stores as JSON, so a run resumes with every buffer and history exactly.
Host randomness comes from `ctx.rng` (a numpy Generator the loop checkpoints).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Sampling settings of one request; None fields take the role's configured value."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_new_tokens: int | None = None
    token_stats: bool = False  # also return each token's entropy and self-certainty (RENT, Intuitor)


@dataclasses.dataclass
class Request:
    """One prompt to sample `n` completions of, for `role`; `meta` is the game's own."""
    role: str
    prompt: list[int]
    n: int = 1
    meta: dict = dataclasses.field(default_factory=dict)
    sampling: Sampling | None = None  # None: the role's configured sampling


@dataclasses.dataclass
class Completion:
    """One sampled completion: tokens, the sampler's logprobs of them, the decoded text."""
    tokens: list[int]
    logprobs: np.ndarray  # float32 [len(tokens)]
    text: str
    finished: bool  # ended on eos (False: cut at max_new_tokens)
    # With Sampling(token_stats=True), per generated token, from the logits the sampler computed
    # (model's own distribution, before temperature): entropy H(p) and self-certainty KL(U || p).
    entropy: np.ndarray | None = None
    self_certainty: np.ndarray | None = None
    prompt: list[int] | None = None  # the prompt as sampled (cut from the left to the role's cap)


@dataclasses.dataclass
class Episode:
    """A completion with its reward, ready to train: `bucket` groups episodes for the advantage
    estimator (a GRPO group, an AZR (task, role) pair); `info` holds per-episode figures."""
    role: str
    prompt: list[int]
    completion: Completion
    reward: float
    bucket: str
    info: dict = dataclasses.field(default_factory=dict)


SampleFn = Callable[..., list[list[Completion]]]


@dataclasses.dataclass
class Context:
    """What the loop hands a game: sampling, tokenizer, host randomness, timing, the step."""
    sample: SampleFn  # sample(role, prompts: list[list[int]], n, sampling: Sampling | None) -> [N][n]
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    rng: np.random.Generator
    step: int
    timer: Any = None  # zeroplay.rollouts.StageTimer: `with ctx.timer("verify"):` (None: untimed)
    chat: Callable[[str], list[int]] | None = None  # the tokenizer's chat template, when it has one
    sampling_of: Callable[[str], Sampling] | None = None  # a role's configured sampling settings
    workdir: str | None = None  # the run folder (a game's files beside the run, e.g. caches); None: none

    def timed(self, stage: str):
        import contextlib

        return self.timer(stage) if self.timer is not None else contextlib.nullcontext()


class Game(abc.ABC):
    """A self-play method. Subclasses set `roles` and implement the abstract methods."""

    roles: tuple[str, ...] = ()
    # The advantage estimator the loop applies within each bucket of episodes (a name from
    # zeroplay.rl.advantages.ESTIMATORS) and its keyword arguments.
    estimator: str = "grpo"
    estimator_kwargs: Mapping[str, Any] = {}

    @abc.abstractmethod
    def init_state(self, ctx: Context) -> dict:
        """The state before step 0 (plain data). May sample through ctx (e.g. AZR's seeding)."""

    def phases(self, state: Mapping, step: int) -> tuple[str, ...]:
        """The phases of this step, in order (default: one phase, "play")."""
        return ("play",)

    @abc.abstractmethod
    def requests(self, phase: str, state: Mapping, ctx: Context) -> list[Request]:
        """The prompts this phase samples (the loop samples each role's requests in one call)."""

    @abc.abstractmethod
    def score(self, phase: str, requests: Sequence[Request], rollouts: Sequence[Sequence[Completion]],
              state: Mapping, ctx: Context) -> tuple[dict, list[Episode], dict]:
        """(new state, episodes, metrics) for one phase: verify, reward, update buffers."""

    def filter(self, episodes: list[Episode]) -> list[Episode]:
        """The episodes that train (default: all)."""
        return episodes


    def trains(self, step: int, state: Mapping) -> tuple[str, ...]:
        """The roles whose policies update this step (default: every role): a function of the
        step and the game state after this step's scoring only, so a resumed run decides alike."""
        return self.roles

    def after_step(self, state: Mapping, step: int, metrics: dict[str, float],
                   ctx: Context) -> tuple[dict, dict]:
        """(new state, actions) after the updates of a step. `metrics` is the step's row: a game
        may add its own entries. `ctx` is the step's context; `ctx.sample` here samples the freshly
        updated policies (CPMöbius probes its player after the update). Actions (default none):
        {"snapshot": roles} keeps a copy of those roles' policies (params and optimizer state,
        checkpointed); {"rollback": roles} puts them back to their last snapshot (CPMöbius rolls
        its player back after `patience` steps without progress); the loop applies them after
        after_step returns."""
        return dict(state), {}

    def evaluate(self, state: Mapping, ctx: Context) -> dict[str, float]:
        """The game's own held-out figures, logged under the names it gives (e.g. arith_world's
        `heldout_accuracy`) at the loop's evaluation points (`loop.eval_at_start`, every
        `loop.eval_every` steps, the last step); `ctx.sample` samples the live policies. Default: none."""
        return {}

    def sampling(self, role: str) -> Sampling:
        """Per-role sampling the game insists on (default: the configured one)."""
        return Sampling()
