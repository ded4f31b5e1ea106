"""RENT (entropy minimisation as the reward, as in the Co-rewarding paper's baseline): the reward
of a rollout is minus the mean over its tokens of the entropy H(p_t) of the model's own
(untempered) next-token distribution, from the sampler's logits (`Sampling(token_stats=True)`).
A rollout without a boxed answer gets the same kind of reward: RENT never looks at answers."""
from __future__ import annotations

import dataclasses

from zeroplay.games import label_free as lf


@dataclasses.dataclass(frozen=True)
class Settings(lf.CommonSettings):
    pass


def reward(entropy) -> float:
    """-mean_t H(p_t) over the response's tokens (0 for an empty response)."""
    return -lf.token_mean(entropy)


class RENT(lf.TokenRewardGame):
    stat = "entropy"


def make(s: Settings) -> RENT:
    return RENT(s, reward)


__all__ = ["Settings", "RENT", "make", "reward"]
