"""CPMöbius (Coach-Player; Li et al. 2026, arXiv 2602.02979) as a zeroplay `Game`.

Two policies. Rules follow the reference code (ASL-r/CPMobius @ e212778, methods.md section 2):

- the `coach` samples instructions from one fixed prompt ("Generate a valid math problem.");
- the `player` samples `player_samples` answers per instruction; player reward: +1 when the exact
  last `\\boxed{...}` string equals the unique plurality answer of the group, else -1; a tie for
  the plurality or no answer at all gives the whole group -1;
- band filter: keep the instruction groups whose share of +1 lies in [band_low, band_high]; more
  coach instructions are sampled (`max_resample_rounds`) until `groups` groups are kept;
- the probe: every step the player answers the probe questions (greedy by default); score V =
  accuracy against the labels. `probe_mode="label_free"` (default): unlabeled questions whose
  pseudo-labels are the initial player's majority votes (`probe_votes` samples, computed once in
  init_state); `"labeled"`: the questions' ground truth (the reference scores AMC this way).
  Questions come from reasoning-gym (`probe_task`) when it is importable, else from a built-in
  arithmetic generator;
- coach reward of an instruction: `coach_reward(V_t - V_{t-1}, a)` with a = the token-weighted mean
  of the player's nonzero GRPO advantages on its group, -1 when the group has none. Coach groups
  are singletons (one bucket per instruction; GRPO keeps a singleton's raw reward);
- no coach update when the score did not change (`trains`); rollback: a snapshot of the player
  whenever the last delta is > 0 (which resets the counter); after step `rollback_after`, once
  `patience` non-positive deltas were counted since the last improvement, the player is put back
  to its snapshot (`after_step` actions).

Order. The reference's step t (`RayPPOTrainer.fit`): the coach samples, the player answers and is
band-filtered, the player updates (after saving itself when delta_{t-1} > 0), the probe scores the
updated player (V_t), the coach's instructions of step t get 100 * (V_t - V_{t-1}) * a and the
coach updates on them unless V_t == V_{t-1}, then the rollback check. zeroplay's loop runs every
update of a step together, between scoring and `after_step`, and `after_step` may sample (it gets
the step's `Context`, whose sampler reads the live, just-updated params) but cannot train. So
step t here is:

1. `score`: the coach episodes of step t - 1 (in the state, already rewarded with delta_{t-1})
   are emitted; the coach samples step t's instructions, the player answers them, band filter and
   resampling; player episodes of step t; step t's instructions (with their mean advantage a)
   become `pending`, not yet rewarded;
2. the updates: the player on step t's groups; the coach on step t - 1's instructions, unless
   delta_{t-1} == 0 (`trains(step, state)` reads `state["last_delta"]`, a pure function of the
   checkpointed state);
3. `after_step`: the probe scores the player just updated at step t -> V_t, delta_t = V_t -
   V_{t-1}; each pending instruction of step t gets `coach_reward(delta_t, a)` (-1 without a);
   snapshot when delta_t > 0, rollback after `patience` (the loop applies them after the probe).

V_t, delta_t, the coach rewards, the coach skip and the snapshot / rollback are therefore exactly
the reference's; the one difference is that step t's coach update runs at step t + 1 alongside the
player's, so the coach samples step t + 1's instructions before its step-t update (one update
behind the reference), and the last step's instructions are never trained. The player's entropy
coefficient (-0.01) and KL (0.001) are its policy's train settings (configs/cpmobius.py).

State (plain JSON; everything a resumed run needs): {"probe": [{"question", "label"}], "score":
V of the last probe, "last_delta": the delta the pending coach episodes are rewarded with, "bad":
int, "pending": [step t's coach episodes with their "adv" and (after `after_step`) "reward"],
"rollbacks": int, "snapshots": int}.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from zeroplay.games.base import Completion, Context, Episode, Game, Request, Sampling
from zeroplay.games.pasodoble import role_prompt, sampled_prompt

ROLES = ("coach", "player")
COACH_PROMPT = "Generate a valid math problem."
PLAYER_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."


@dataclasses.dataclass(frozen=True)
class Settings:
    """CPMöbius's constants; defaults are the reference 7B-Instruct script's."""
    coach_prompt: str = COACH_PROMPT
    groups: int = 16                  # instructions kept per step
    player_samples: int = 16          # G answers per instruction
    band_low: float = 0.2
    band_high: float = 0.8
    max_resample_rounds: int = 4      # extra coach batches while fewer than `groups` are kept
    probe_mode: str = "label_free"    # "label_free" | "labeled"
    probe_task: str = "basic_arithmetic"  # reasoning-gym task (built-in generator when unavailable)
    probe_size: int = 83
    probe_seed: int = 1234
    probe_samples: int = 1            # answers per probe question per evaluation
    probe_temperature: float = 0.0    # 0: greedy (the 7B script)
    probe_votes: int = 8              # label-free: initial player's votes per question
    coach_reward_scale: float = 100.0
    patience: int = 15
    rollback_after: int = 200
    chat: bool = True

    def __post_init__(self):
        if self.probe_mode not in ("label_free", "labeled"):
            raise ValueError(f"cpmobius probe_mode must be 'label_free' or 'labeled', got {self.probe_mode!r}")
        for name in ("groups", "player_samples", "probe_size", "probe_samples", "probe_votes", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"cpmobius {name} must be >= 1")
        if not 0 <= self.band_low <= self.band_high <= 1:
            raise ValueError("cpmobius needs 0 <= band_low <= band_high <= 1")


# -- pure rules ---------------------------------------------------------------------------------

def coach_reward(score_delta: float, mean_player_advantage: float) -> float:
    """100 * delta * advantage."""
    return 100.0 * float(score_delta) * float(mean_player_advantage)


def last_boxed_string(text: str) -> str | None:
    """The exact last `\\boxed{...}` string (the whole box, as the reference votes on it)."""
    from zeroplay.verifiers.math import extract_boxed

    inner = extract_boxed(text or "")
    return None if inner is None else "\\boxed{" + inner + "}"


def player_rewards(answers: Sequence[str | None]) -> list[float]:
    """+1 for the unique plurality answer, -1 otherwise; all -1 on a tie or without answers."""
    counts: dict[str, int] = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    if not counts:
        return [-1.0] * len(answers)
    top = max(counts.values())
    winners = [a for a, c in counts.items() if c == top]
    if len(winners) > 1:
        return [-1.0] * len(answers)
    return [1.0 if a == winners[0] else -1.0 for a in answers]


def in_band(rewards: Sequence[float], low: float = 0.2, high: float = 0.8) -> bool:
    share = sum(r > 0 for r in rewards) / max(len(rewards), 1)
    return low <= share <= high


def grpo_advantages(rewards: Sequence[float], eps: float = 1e-6) -> np.ndarray:
    """The loop's GRPO z-score of one group (unbiased std, zeroplay.rl.advantages.grpo)."""
    r = np.asarray(rewards, np.float64)
    if r.size < 2:
        return r.copy()
    return (r - r.mean()) / (r.std(ddof=1) + eps)


def mean_nonzero_advantage(advantages: Sequence[float], lengths: Sequence[int]) -> float | None:
    """Token-weighted mean of the nonzero advantages (each sequence's advantage on each of its
    tokens), or None when there is none."""
    num = den = 0.0
    for a, n in zip(advantages, lengths):
        if a != 0 and n > 0:
            num += float(a) * n
            den += n
    return num / den if den else None


def builtin_probe(size: int, seed: int) -> list[dict]:
    """Arithmetic questions with exact integer answers (used when reasoning-gym is unavailable)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(size):
        a, b, c = (int(x) for x in rng.integers(2, 50, size=3))
        op = int(rng.integers(3))
        q, ans = ((f"{a} + {b} * {c}", a + b * c), (f"({a} - {b}) * {c}", (a - b) * c),
                  (f"{a} * {b} - {c}", a * b - c))[op]
        out.append({"question": f"Compute {q}.", "answer": str(ans)})
    return out


def probe_questions(task: str, size: int, seed: int) -> list[dict]:
    try:
        import reasoning_gym
    except ImportError:
        return builtin_probe(size, seed)
    data = reasoning_gym.create_dataset(task, size=size, seed=seed)
    return [{"question": str(x["question"]), "answer": str(x["answer"])} for x in data]


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else 0.0


# -- the game -------------------------------------------------------------------------------------

class CPMobiusGame(Game):
    roles = ROLES
    estimator = "grpo"  # player: z-score per instruction; coach: singleton buckets keep raw rewards

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()

    # -- prompts -------------------------------------------------------------------------------
    def _coach_prompt(self, ctx):
        return role_prompt("", self.settings.coach_prompt, ctx, chat=self.settings.chat, think=False)

    def _player_prompt(self, question, ctx):
        return role_prompt("", f"{question}\n{PLAYER_SUFFIX}", ctx, chat=self.settings.chat, think=False)

    def _probe_answers(self, ctx, probe, n, temperature) -> list[list[str | None]]:
        from zeroplay.games.pasodoble import solver_answer

        got = ctx.sample("player", [self._player_prompt(p["question"], ctx) for p in probe], n,
                         Sampling(temperature=float(temperature)))
        return [[solver_answer(c.text) for c in comps] for comps in got]

    def _probe_score(self, ctx, probe) -> float:
        from zeroplay.verifiers.math import is_equivalent_batch

        s = self.settings
        answers = self._probe_answers(ctx, probe, s.probe_samples, s.probe_temperature)
        with ctx.timed("verify"):
            pairs = [(a or "", p["label"]) for p, row in zip(probe, answers) for a in row if p["label"] is not None]
            ok = is_equivalent_batch(pairs) if pairs else []
        return float(sum(ok)) / max(sum(len(r) for r in answers), 1)

    def init_state(self, ctx: Context) -> dict:
        s = self.settings
        qs = probe_questions(s.probe_task, s.probe_size, s.probe_seed)
        if s.probe_mode == "labeled":
            probe = [{"question": q["question"], "label": q["answer"]} for q in qs]
        else:  # pseudo-labels: the initial player's majority vote (no ground truth is read)
            from zeroplay.verifiers.vote import majority_vote

            votes = self._probe_answers(ctx, qs, s.probe_votes, ctx.sampling_of("player").temperature
                                        if ctx.sampling_of else 1.0)
            probe = [{"question": q["question"], "label": majority_vote(v, tie="first").label}
                     for q, v in zip(qs, votes)]
        state = {"probe": probe, "score": None, "last_delta": 0.0, "bad": 0, "pending": [], "rollbacks": 0,
                 "snapshots": 0}
        state["score"] = self._probe_score(ctx, probe)
        return state

    def requests(self, phase: str, state: Mapping, ctx: Context) -> list[Request]:
        return [Request("coach", self._coach_prompt(ctx), self.settings.groups, {"kind": "coach"})]

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, phase: str, requests: Sequence[Request], rollouts: Sequence[Sequence[Completion]],
              state: Mapping, ctx: Context) -> tuple[dict, list[Episode], dict]:
        s = self.settings
        # 1. The coach episodes of the last step, rewarded in its after_step with its delta.
        episodes = []
        for p in state["pending"]:
            comp = Completion(tokens=list(p["tokens"]), logprobs=np.asarray(p["logprobs"], np.float32),
                              text=p["text"], finished=bool(p["finished"]))
            episodes.append(Episode("coach", list(p["prompt"]), comp, float(p["reward"]), bucket=f"coach/{p['id']}",
                                    info={"adv": p["adv"], "delta": float(state["last_delta"])}))
        # 2. Instructions -> player groups, band filter, resampling.
        instructions = [(r.prompt, c) for r, comps in zip(requests, rollouts) for c in comps]
        kept, seen, n_valid, rounds = [], 0, 0, 0
        while True:
            todo = [(pr, c) for pr, c in instructions if c.text.strip()]
            seen += len(instructions)
            n_valid += len(todo)
            if todo:
                prompts = [self._player_prompt(c.text.strip(), ctx) for _, c in todo]
                got = ctx.sample("player", prompts, s.player_samples, Sampling())
                with ctx.timed("verify"):
                    for (pr, c), prompt, comps in zip(todo, prompts, got):
                        rewards = player_rewards([last_boxed_string(x.text) for x in comps])
                        if in_band(rewards, s.band_low, s.band_high) and len(kept) < s.groups:
                            kept.append({"coach_prompt": pr, "instruction": c, "prompt": prompt, "answers": comps,
                                         "rewards": rewards})
            if len(kept) >= s.groups or rounds >= s.max_resample_rounds:
                break
            rounds += 1
            more = ctx.sample("coach", [self._coach_prompt(ctx)], s.groups - len(kept), Sampling())
            instructions = [(sampled_prompt(c, self._coach_prompt(ctx)), c) for c in more[0]]
        pending = []
        for k, g in enumerate(kept):
            adv = grpo_advantages(g["rewards"])
            for c, r in zip(g["answers"], g["rewards"]):
                episodes.append(Episode("player", sampled_prompt(c, g["prompt"]), c, r, bucket=f"player/{k}"))
            a = mean_nonzero_advantage(adv.tolist(), [len(c.tokens) for c in g["answers"]])
            ins = g["instruction"]
            pending.append({"id": f"{ctx.step}/{k}", "prompt": list(g["coach_prompt"]), "tokens": list(ins.tokens),
                            "logprobs": [float(x) for x in ins.logprobs], "text": ins.text,
                            "finished": bool(ins.finished), "adv": a})
        new = dict(state)
        new["pending"] = pending  # rewarded in after_step, once the probe has scored this step's update
        m = {"coach/trains": float("coach" in self.trains(ctx.step, state)),
             "player/band_keep_rate": len(kept) / max(seen, 1), "player/groups_kept": float(len(kept)),
             "coach/instructions": float(seen), "coach/resample_rounds": float(rounds),
             "coach/valid_rate": n_valid / max(seen, 1),
             "player/plus_rate": _mean(r > 0 for g in kept for r in g["rewards"])}
        return new, episodes, m

    def trains(self, step: int, state: Mapping) -> tuple[str, ...]:
        """The player every step; the coach too unless the delta its pending episodes were rewarded
        with is 0 (the reference skips the coach update when V_t == V_{t-1})."""
        return ("coach", "player") if float(state["last_delta"]) != 0 else ("player",)

    def after_step(self, state: Mapping, step: int, metrics: dict[str, float],
                   ctx: Context) -> tuple[dict, dict]:
        """The probe of the player just updated (V_t), the rewards of this step's instructions,
        then snapshot / rollback on delta_t."""
        s = self.settings
        score = self._probe_score(ctx, state["probe"])
        delta = score - float(state["score"])
        scale = s.coach_reward_scale / 100.0
        pending = [{**p, "reward": -1.0 if p["adv"] is None else coach_reward(delta, p["adv"]) * scale}
                   for p in state["pending"]]
        new = dict(state)
        new.update(score=score, last_delta=delta, pending=pending)
        actions: dict = {}
        if delta > 0:
            new.update(bad=0, snapshots=int(state["snapshots"]) + 1)
            actions = {"snapshot": ("player",)}
        else:
            new["bad"] = int(state["bad"]) + 1
            if step > s.rollback_after and new["bad"] >= s.patience:
                new.update(bad=0, rollbacks=int(state["rollbacks"]) + 1)
                actions = {"rollback": ("player",)}
        metrics.update({"probe/score": score, "probe/delta": delta, "player/rollbacks_total": float(new["rollbacks"]),
                        "player/snapshots_total": float(new["snapshots"])})
        return new, actions


def make(settings: Settings | None = None) -> CPMobiusGame:
    return CPMobiusGame(settings or Settings())


__all__ = ["Settings", "CPMobiusGame", "make", "coach_reward", "player_rewards", "last_boxed_string", "in_band",
           "grpo_advantages", "mean_nonzero_advantage", "builtin_probe", "probe_questions", "ROLES"]
