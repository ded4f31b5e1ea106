"""Majority vote over extracted answers (TTRL, R-Zero, Co-rewarding, CPMöbius player labels).

Answers are canonicalised before counting (`canonical_key`): light LaTeX normalisation, and
plain numbers reduced to one exact form, so `0.5`, `1/2`, `\\frac{1}{2}` and `\\dfrac12` are
one vote. With `equivalence="math"` the remaining distinct answers are also merged when
`is_equivalent` says so (e.g. `x^2+2x+1` and `(x+1)^2`), at the cost of pool calls.

Policies, all explicit:
- empty answers (None, blank, nothing left after normalisation) never win. `empty="ignore"`
  (default, Co-rewarding) leaves them out of the agreement denominator; `empty="count"` keeps
  them in (a group where half the samples gave no answer has agreement <= 0.5).
- ties between top answers: `tie="none"` (default) gives no label (CPMöbius treats that as a
  failed vote); `"first"` takes the tied answer that appeared first; `"smallest"` the smallest
  canonical key (order-independent); or a callable that picks from the tied representatives.
`agreement` is the share of votes held by the top answer (R-Zero's p-hat), also under a tie.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from zeroplay.verifiers.math import as_number, is_equivalent_batch, normalize_answer


@dataclasses.dataclass(frozen=True)
class Vote:
    label: str | None            # the winning answer as first written, None without a winner
    key: str | None              # its canonical key
    count: int                   # votes for the top answer
    n_valid: int                 # non-empty answers
    n_total: int                 # all answers
    agreement: float             # count / (n_valid, or n_total with empty="count")
    tie: bool                    # several answers share the top count
    matches: tuple[bool, ...]    # per answer: does it belong to the winning class?
    counts: dict                 # canonical key -> votes


def canonical_key(answer) -> str | None:
    """The key answers are counted under; None for an empty answer."""
    if answer is None:
        return None
    s = normalize_answer(str(answer))
    if not s:
        return None
    number = as_number(s)
    if number is not None:
        if number.denominator == 1:
            return str(number.numerator)
        return f"{number.numerator}/{number.denominator}"
    return s


def _merge_equivalent(order: list[str], reps: dict[str, str], timeout_s: float) -> dict:
    """Map each key to the key of the first (most voted) equivalent class."""
    parent: dict[str, str] = {}
    heads: list[str] = []
    for key in order:
        if heads:
            same = is_equivalent_batch([(reps[key], reps[h]) for h in heads], timeout_s=timeout_s)
            hit = next((h for h, s in zip(heads, same) if s), None)
        else:
            hit = None
        if hit is None:
            heads.append(key)
            parent[key] = key
        else:
            parent[key] = hit
    return parent


def majority_vote(answers: Sequence, *, tie: str | Callable = "none", empty: str = "ignore",
                  equivalence: str = "canonical", timeout_s: float = 5.0) -> Vote:
    """Plurality answer of `answers` (strings or None) under the policies above."""
    if empty not in ("ignore", "count"):
        raise ValueError(f"empty must be 'ignore' or 'count', not {empty!r}")
    if equivalence not in ("canonical", "math"):
        raise ValueError(f"equivalence must be 'canonical' or 'math', not {equivalence!r}")
    keys = [canonical_key(a) for a in answers]
    first_seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k is not None and k not in first_seen:
            first_seen[k] = i
    reps = {k: str(answers[i]) for k, i in first_seen.items()}
    if equivalence == "math" and len(first_seen) > 1:
        raw_counts: dict[str, int] = {}
        for k in keys:
            if k is not None:
                raw_counts[k] = raw_counts.get(k, 0) + 1
        order = sorted(first_seen, key=lambda k: (-raw_counts[k], first_seen[k]))
        parent = _merge_equivalent(order, reps, timeout_s)
        keys = [None if k is None else parent[k] for k in keys]
    counts: dict[str, int] = {}
    for k in keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    n_total, n_valid = len(keys), sum(counts.values())
    denominator = n_valid if empty == "ignore" else n_total
    if not counts:
        return Vote(None, None, 0, n_valid, n_total, 0.0, False, (False,) * n_total, {})
    top = max(counts.values())
    tied = sorted((k for k, c in counts.items() if c == top), key=lambda k: first_seen[k])
    winner: str | None
    if len(tied) == 1:
        winner = tied[0]
    elif callable(tie):
        choice = tie([reps[k] for k in tied])
        winner = next((k for k in tied if reps[k] == choice), None)
    elif tie == "none":
        winner = None
    elif tie == "first":
        winner = tied[0]
    elif tie == "smallest":
        winner = min(tied)
    else:
        raise ValueError(f"tie must be 'none', 'first', 'smallest' or a callable, not {tie!r}")
    agreement = top / denominator if denominator else 0.0
    return Vote(label=None if winner is None else reps[winner], key=winner, count=top,
                n_valid=n_valid, n_total=n_total, agreement=agreement, tie=len(tied) > 1,
                matches=tuple(winner is not None and k == winner for k in keys), counts=counts)
