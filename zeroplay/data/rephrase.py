"""Deterministic procedural rephrasings of reasoning-gym questions (Co-rewarding-I's x').

The paper rewrites each question offline with Qwen3-32B (different wording, same mathematics and
answer). Without that model, a reasoning-gym item is rephrased from its metadata: an arithmetic
item's expression is asked again in another template, and any other item is wrapped in another
framing of the same text. Deterministic in the item id, so a resumed run sees the same pairs.
Data-provided rephrasings (the `rephrasing` field of a JSON lines record) always win.

Model-made rephrasings (Co-rewarding-I with game.rephrasings="generate"): `rephrase_prompt` (the
paper's instruction), `parse_rephrasing` (the rewrite in a reply, or None), and the run folder's
cache file (`read_rephrasings` / `write_rephrasings`: JSON lines {"question", "rephrasing",
"fallback"}, written atomically).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
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


# -- model-made rephrasings (Co-rewarding-I, game.rephrasings="generate") ------------------------
# The paper rewrites every training question once, offline, with Qwen3-32B (paper App. C.2). The
# instruction below is the one in the reference implementation's rewrite script
# (tmlr-group Co-Reward, coreward/rewrite_questions.py): a different wording and a new real-world
# scenario, same mathematics and answer, and the reply between fixed markers. The question follows
# the instruction after one newline, as one user turn of the chat template; sampled at T=0.7,
# top-p 0.8 there. A reply the script cannot parse is dropped there (with its question); here the
# question keeps itself as its rephrasing and the fallback is counted.

REPHRASE_INSTRUCTION = """You are given a math problem. Please rewrite it using different wording and a different real-world scenario, while keeping the underlying mathematical meaning and answer exactly the same.

Guidelines:
1. Do not change the math logic or the final answer.
2. Use different words and a new context to make it look like a different problem.
3. Avoid copying phrases or sentence structures from the original.
4. Make sure the rewritten question is natural, clear, and solvable.
5. Output ONLY between the following markers, and strictly in this format (no extra explanation):

### RESULT_START
ORIGINAL:
<original question>
REWRITE:
<rewritten question>
### RESULT_END
"""  # noqa: E501  (the paper's text, kept as written)
START_MARKER, END_MARKER = "### RESULT_START", "### RESULT_END"
_THINK = re.compile(r"<think>.*?</think>", re.S)
# Where the rewrite starts: the paper's "REWRITE:" label, or the labels small models write instead.
_LABEL = re.compile(r"(?:REWRITE|Rewritten question|Rephrased question|Rephrasing)\s*:", re.I)
_QUOTES = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("`", "`"))


def rephrase_prompt(question: str) -> str:
    """The user turn that asks for a rephrasing of `question` (instruction, newline, question)."""
    return REPHRASE_INSTRUCTION + "\n" + question.strip()


def parse_rephrasing(reply: str) -> str | None:
    """The rewritten question in a rephraser's reply, or None when there is none.

    Think blocks are dropped first (so is everything before a lone `</think>`; a reply still inside
    an unclosed `<think>` has no answer). With
    the paper's markers, the text between them must hold a "REWRITE:" label and the rewrite is what
    follows it (a start marker without an end marker: cut off, None, as the reference script
    treats it). Without markers, the rewrite follows the first label ("REWRITE:", "Rephrased
    question:", "Rewritten question:", "Rephrasing:"); a reply with no label is None. The result
    loses surrounding whitespace, a stray end marker and one pair of enclosing quotes or bold
    marks; empty is None.
    """
    text = _THINK.sub("", reply or "")
    if "</think>" in text:  # the opening tag was in the prompt (a chat template's thinking turn)
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return None
    start = text.find(START_MARKER)
    if start >= 0:
        end = text.find(END_MARKER, start)
        if end < 0:
            return None
        text = text[start + len(START_MARKER):end]
    else:
        text = text.split(END_MARKER, 1)[0]
    m = _LABEL.search(text)
    if m is None:
        return None
    out = text[m.end():].strip()
    if out.startswith("**") and out.endswith("**") and len(out) > 4:
        out = out[2:-2].strip()
    for a, b in _QUOTES:
        if len(out) >= 2 and out.startswith(a) and out.endswith(b):
            out = out[1:-1].strip()
            break
    return out or None


def read_rephrasings(path: str) -> dict[str, dict]:
    """The cache file's entries, {question: {"question", "rephrasing", "fallback"}} ({} if absent)."""
    if not os.path.exists(path):
        return {}
    out = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) \
                    or not isinstance(rec.get("rephrasing"), str):
                raise ValueError(f"{path}:{i + 1}: expected {{'question': str, 'rephrasing': str}}")
            out[rec["question"]] = rec
    return out


def write_rephrasings(path: str, entries) -> None:
    """Write the cache atomically (a temporary file in the same folder, then os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".rephrasings.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in entries:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
