"""Intuitor (self-certainty as the reward, as in the Co-rewarding paper's baseline): the reward of
a rollout is the mean over its tokens of KL(U || p_t) = -log V - mean_v log p_t(v), the model's
own (untempered) next-token distribution, from the sampler's logits (`Sampling(token_stats=True)`).
A rollout without a boxed answer gets the same kind of reward: Intuitor never looks at answers."""
from __future__ import annotations

import dataclasses

from zeroplay.games import label_free as lf


@dataclasses.dataclass(frozen=True)
class Settings(lf.CommonSettings):
    pass


def reward(self_certainty) -> float:
    """mean_t KL(U || p_t) over the response's tokens (0 for an empty response)."""
    return lf.token_mean(self_certainty)


class Intuitor(lf.TokenRewardGame):
    stat = "self_certainty"


def make(s: Settings) -> Intuitor:
    return Intuitor(s, reward)


__all__ = ["Settings", "Intuitor", "make", "reward"]
