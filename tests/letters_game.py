"""A test double game for the loop tests: the solver is rewarded for the share of even token ids
in its answer, the proposer (its own policy) for the share of token ids below 100. Deterministic,
no verifier; rewards vary between samples, so every update moves the params."""
from __future__ import annotations

import dataclasses

from zeroplay.games.base import Episode, Game, Request


@dataclasses.dataclass(frozen=True)
class Settings:
    prompts: int = 2
    samples: int = 2
    filter_all: bool = False  # drop every episode (the "nothing trainable" path)
    solver_only_even_steps: bool = False
    snapshot_then_rollback: bool = False  # snapshot the solver after step 1, roll back after step 2


class LettersGame(Game):
    roles = ("proposer", "solver")

    def __init__(self, s: Settings):
        self.s = s

    def init_state(self, ctx):
        return {"history": [], "seen": 0}

    def requests(self, phase, state, ctx):
        out = []
        for i in range(self.s.prompts):
            word = "".join(ctx.rng.choice(list("abc"), size=3))
            out.append(Request("solver", ctx.encode(f"say {word}:"), self.s.samples, {"word": word}))
            out.append(Request("proposer", ctx.encode(f"ask {i}:"), self.s.samples))
        return out

    def score(self, phase, requests, rollouts, state, ctx):
        eps = []
        for i, (req, comps) in enumerate(zip(requests, rollouts)):
            for c in comps:
                if req.role == "solver":
                    r = sum(t % 2 == 0 for t in c.tokens) / max(len(c.tokens), 1)
                else:
                    r = sum(t < 100 for t in c.tokens) / max(len(c.tokens), 1)
                eps.append(Episode(req.role, req.prompt, c, r, bucket=f"{req.role}/{i}"))
        state = {"history": (state["history"] + [requests[0].meta["word"]])[-5:], "seen": state["seen"] + len(eps)}
        return state, eps, {"solver/first_word_len": float(len(requests[0].meta["word"]))}

    def filter(self, episodes):
        return [] if self.s.filter_all else episodes

    def after_step(self, state, step, metrics, ctx):
        if not self.s.snapshot_then_rollback:
            return state, {}
        return state, ({"snapshot": ("solver",)} if step == 1 else {"rollback": ("solver",)})

    def trains(self, step, state):
        if self.s.solver_only_even_steps and step % 2:
            return ("proposer",)
        return self.roles


def make(s: Settings) -> LettersGame:
    return LettersGame(s)


def tiny_config(steps=2, **game):
    shape = dict(family="qwen2", vocab_size=258, hidden_size=32, intermediate_size=64, num_layers=2,
                 num_heads=2, num_kv_heads=1, tie_word_embeddings=True, attention_bias=True,
                 max_position_embeddings=512)
    policy = lambda lr: dict(model=dict(name="random", shape=shape, tokenizer="byte"),
                             train=dict(lr=lr, aggregation="token_mean"),
                             sampling=dict(max_new_tokens=8, temperature=1.0, max_prompt_tokens=64))
    return {"seed": 0, "steps": steps, "game": {"name": "letters", **game},
            "roles": {"proposer": "coach", "solver": "player"},
            "policies": {"coach": policy(1e-2), "player": policy(1e-2)},
            "loop": {"progress": False, "train_len_multiple": 16, "train_row_multiple": 4},
            "mesh": {"data": 1, "fsdp": -1, "tensor": 1}}
