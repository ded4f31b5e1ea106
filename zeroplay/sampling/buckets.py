"""Static-shape buckets: round prompt length, batch and max_new_tokens up to a few fixed sizes.

Every distinct (prompt bucket, batch bucket, new-token bucket) is one compiled program, so a
self-play run that draws prompts of many lengths compiles only a handful of programs, once.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence


def _round_up(n: int, sizes: Sequence[int] | None, minimum: int, multiple: int = 1) -> int:
    """The smallest listed size >= n (powers of two from `minimum` when `sizes` is None)."""
    if sizes:
        for s in sorted(sizes):
            if s >= n and s % multiple == 0:
                return int(s)
    size = max(minimum, 1)
    while size < n:
        size *= 2
    return -(-size // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class Buckets:
    """Allowed sizes per dimension; None means powers of two from the minimum.

    A value larger than every listed size falls back to the next power of two (and so compiles
    once more) rather than failing.
    """
    prompt_lengths: tuple[int, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    new_tokens: tuple[int, ...] | None = None
    min_prompt: int = 16
    min_batch: int = 1
    min_new: int = 16

    def prompt(self, n: int) -> int:
        return _round_up(n, self.prompt_lengths, self.min_prompt)

    def batch(self, n: int, multiple: int = 1) -> int:
        return _round_up(n, self.batch_sizes, self.min_batch, multiple)

    def new(self, n: int) -> int:
        return _round_up(n, self.new_tokens, self.min_new)


DEFAULT_BUCKETS = Buckets()
