"""Deterministic procedural rephrasings of reasoning-gym questions (Co-rewarding-I's x').

The paper rewrites each question offline with Qwen3-32B (different wording, same mathematics and
answer). Without that model, a reasoning-gym item is rephrased from its metadata: an arithmetic
item's expression is asked again in another template, and any other item is wrapped in another
framing of the same text. Deterministic in the item id, so a resumed run sees the same pairs.
Data-provided rephrasings (the `rephrasing` field of a JSON lines record) always win.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

EXPRESSION_TEMPLATES = (
    "What is the value of {e}?",
    "Evaluate the expression {e}.",
    "Work out {e} and give the result.",
    "Compute the result of {e}.",
)
FRAMES = (
    "Here is a problem for you to solve.\n{q}",
    "A student was given the following task. Help them answer it.\n{q}",
    "Consider the question below and answer it.\n{q}",
)


def _pick(options, key: str) -> str:
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    return options[h % len(options)]


def procedural_rephrasing(text: str, metadata: Mapping, key: str) -> str:
    expr = metadata.get("expression") if isinstance(metadata, Mapping) else None
    if isinstance(expr, str) and expr.strip():
        return _pick(EXPRESSION_TEMPLATES, key).format(e=expr.strip())
    return _pick(FRAMES, key).format(q=text)
