"""Math answers: extraction (`\\boxed{}`, `<answer>` tags, GSM8K `####`) and equivalence.

`is_equivalent(pred, gold)` never raises and never hangs. It first normalises both strings
(light LaTeX clean-up) and settles plain numbers in this process; everything else goes to
math-verify (LaTeX or plain text, numeric tolerance, sets, intervals, ordered tuples) in a
pool of worker processes (`_math_worker.py`) with a hard deadline per pair: a pair that runs
past it counts as not equivalent and its worker is killed and replaced. Workers are recycled
after `MAX_TASKS_PER_WORKER` pairs (sympy's caches grow). The pool starts on first use and
is shut down at exit. `is_equivalent_batch(pairs)` spreads pairs over all cores.
"""
from __future__ import annotations

import atexit
import math as _math
import os
import re
import threading
from fractions import Fraction
from typing import Sequence

from zeroplay.verifiers import _pool

DEFAULT_TIMEOUT_S = 5.0
MAX_TASKS_PER_WORKER = 5000
MAX_ANSWER_CHARS = 2000
_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_math_worker.py")

# -- extraction ------------------------------------------------------------------------------

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_SPACE_RE = re.compile(r"\\boxed +([^\s$]+)")


def _balanced(text: str, start: int) -> str | None:
    """Content from `start` (just after an opening brace) to its matching closing brace."""
    depth = 1
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            i += 2  # escaped brace: \{ \}
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def extract_boxed(text) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` (balanced braces), or None.
    `\\boxed 5` (no braces) counts too. An unclosed last box is skipped. Linear time: one pass
    with a brace stack, so a hostile completion full of unclosed boxes cannot stall it."""
    if not isinstance(text, str):
        return None
    box_opens = {m.end() - 1 for m in _BOXED_RE.finditer(text)}  # index of each box's "{"
    found, found_at = None, -1
    if box_opens:
        stack: list[int] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n and text[i + 1] in "{}":
                i += 2  # escaped brace: \{ \}
                continue
            if c == "{":
                stack.append(i)
            elif c == "}" and stack:
                start = stack.pop()
                if start in box_opens and start > found_at:
                    found, found_at = text[start + 1:i], start
            i += 1
    for m in _BOXED_SPACE_RE.finditer(text):
        if m.start() > found_at:
            found, found_at = m.group(1), m.start()
    return None if found is None else found.strip()


def extract_answer_tag(text) -> str | None:
    """Content of the last `<answer>...</answer>`, or None."""
    if not isinstance(text, str):
        return None
    low = text.lower()
    end = low.rfind("</answer>")
    if end < 0:
        return None
    start = low.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return text[start + len("<answer>"):end].strip()


def extract_gsm8k(text) -> str | None:
    """The GSM8K final answer: what follows the last `####` on its line, or None."""
    if not isinstance(text, str) or "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip().split("\n", 1)[0].strip()
    return answer or None


def extract_answer(text) -> str | None:
    """The answer of a completion: inside the last `<answer>` tag if any (its last box if it
    has one), else the last box, else a GSM8K `####` answer."""
    tag = extract_answer_tag(text)
    if tag is not None:
        return extract_boxed(tag) or tag
    return extract_boxed(text) or extract_gsm8k(text)


# -- normalisation ---------------------------------------------------------------------------

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_WHOLE_BOX_RE = re.compile(r"^\\(?:boxed|fbox)\s*\{")
_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_ASSIGN_RE = re.compile(r"^[a-zA-Z]\s*=\s*(?!.*=)")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_FRAC_RE = re.compile(r"^([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}$")
_SLASH_RE = re.compile(r"^([+-]?\d+)/([+-]?\d+)$")


def normalize_answer(text) -> str:
    """Light, meaning-preserving clean-up used for the fast path and for voting keys."""
    if not isinstance(text, str):
        return ""
    s = text.strip()
    for a, b in (("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", "")):
        s = s.replace(a, b)
    s = s.strip().strip("$").strip()
    boxed = _WHOLE_BOX_RE.match(s)
    if boxed is not None:
        inner = _balanced(s, boxed.end())
        if inner is not None and len(inner) == len(s) - boxed.end() - 1:
            s = inner.strip()
    for _ in range(3):
        s = _TEXT_CMD_RE.sub(r"\1", s)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""),
                 ("\\:", ""), ("\\ ", ""), ("~", ""), ("\\dfrac", "\\frac"),
                 ("\\tfrac", "\\frac"), ("^{\\circ}", ""), ("^\\circ", ""), ("\\displaystyle", "")):
        s = s.replace(a, b)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    s = _ASSIGN_RE.sub("", s)
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    return s


def as_number(text: str) -> Fraction | float | None:
    """A normalised answer that is a plain number (int, decimal, a/b, \\frac{a}{b}) as an
    exact Fraction (or a float for exponents too large for one), else None."""
    m = _FRAC_RE.match(text) or _SLASH_RE.match(text)
    try:
        if m is not None:
            groups = m.groups()
            sign = -1 if len(groups) == 3 and groups[0] == "-" else 1
            num, den = int(groups[-2]), int(groups[-1])
            return None if den == 0 else sign * Fraction(num, den)
        if _NUMBER_RE.match(text) and len(text) <= 100:
            return Fraction(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


def _numbers_equal(a: Fraction, b: Fraction) -> bool:
    if a == b:
        return True
    fa, fb = float(a), float(b)  # math-verify's float_rounding=6 / relative tolerance
    return round(fa, 6) == round(fb, 6) or _math.isclose(fa, fb, rel_tol=1e-9)


def _fast(pred, gold) -> bool | None:
    """Decide without sympy when possible: None means "ask the pool"."""
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return bool(pred.strip()) and pred.strip() == gold.strip()
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    np_, ng = as_number(p), as_number(g)
    if np_ is not None and ng is not None:
        return _numbers_equal(np_, ng)
    return None


# -- the pool --------------------------------------------------------------------------------

_pool_lock = threading.Lock()
_the_pool: _pool.WorkerPool | None = None


def _get_pool() -> _pool.WorkerPool:
    global _the_pool
    with _pool_lock:
        if _the_pool is None:
            _the_pool = _pool.WorkerPool(_pool.python_argv(_WORKER_SCRIPT) + [str(os.getpid())],
                                         num_workers=min(os.cpu_count() or 1, 32),
                                         max_tasks_per_worker=MAX_TASKS_PER_WORKER)
            atexit.register(shutdown)
        return _the_pool


def shutdown() -> None:
    """Stop the worker pool (it restarts on the next call that needs it)."""
    global _the_pool
    with _pool_lock:
        if _the_pool is not None:
            _the_pool.close()
            _the_pool = None


def pool_restarts() -> int:
    """How many workers were replaced (timeouts, deaths, recycling) since the pool started."""
    return 0 if _the_pool is None else _the_pool.restarts


def is_equivalent_batch(pairs: Sequence[tuple], *, timeout_s: float = DEFAULT_TIMEOUT_S,
                        deadline_s: float | None = None) -> list[bool]:
    """`is_equivalent` for (pred, gold) pairs over all cores. `timeout_s` bounds each pair;
    `deadline_s` bounds the whole batch (pairs not done by then are False)."""
    results: list[bool | None] = []
    tasks: list[dict] = []
    where: dict[tuple[str, str], list[int]] = {}  # a repeated pair is checked once
    for pred, gold in pairs:
        verdict = _fast(pred, gold)
        results.append(verdict)
        if verdict is None:
            key = (pred, gold)
            if key not in where:
                where[key] = []
                tasks.append({"pred": pred, "gold": gold})
            where[key].append(len(results) - 1)
    if tasks:
        try:
            raw = _get_pool().map(tasks, [timeout_s] * len(tasks), deadline_s=deadline_s,
                                  fail=lambda i, reason: False)
        except Exception:  # noqa: BLE001 -- no worker at all: never raise into the trainer
            raw = [False] * len(tasks)
        for task, r in zip(tasks, raw):
            for i in where[(task["pred"], task["gold"])]:
                results[i] = r is True
    return [bool(r) for r in results]


def is_equivalent(pred, gold, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Are two answer strings (plain or LaTeX) mathematically equivalent? Never raises; returns
    within about `timeout_s` (False when the check takes longer)."""
    return is_equivalent_batch([(pred, gold)], timeout_s=timeout_s)[0]
