"""Prompts, answer extraction and grading for each benchmark kind.

    text = prompt_text(kind, item)                       # the user turn
    extracted, scores = score(name, items, responses)    # responses: [N][k] strings

Kinds (methods.md sections 6 and 7):
- "math": the last `\\boxed{}` (or `<answer>` tag), graded by `is_equivalent_batch` (math-verify
  behind a hard timeout).
- "gsm8k": the boxed answer, else the last number of the response; graded the same way.
- "cruxeval_output": the literal between `[ANSWER]` and `[/ANSWER]` (an `assert f(..) == X` is cut
  to X), equal to the gold output as a Python value (compared in a worker process).
- "cruxeval_input": the call (or argument list) in the answer, executed in the sandbox: correct
  when `f(<input>) == gold output`. Arguments must be literals.
- "humaneval": the last code block (a whole function, or the body continuing the prompt) followed
  by the tests, run as one script in the sandbox: correct when it finishes without an error.
- "rg": the boxed answer (else the last number for numeric answers, else the last line), scored
  by the reasoning-gym dataset's own `score_answer`; correct when the score is 1.
"""
from __future__ import annotations

import ast
import re
from typing import Sequence

from zeroplay.evaluation.benchmarks import Item, kind_of, parse_rg, rg_dataset

MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_RE = re.compile(r"\[ANSWER\](.*?)(?:\[/ANSWER\]|$)", re.DOTALL | re.IGNORECASE)
_CODE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|$)", re.DOTALL)


# -- prompts -------------------------------------------------------------------------------------

def prompt_text(kind: str, item: Item) -> str:
    """The user turn of one item (wrapped in the chat template by the caller when there is one)."""
    if kind in ("math", "gsm8k", "rg"):
        return f"{item.question.strip()}\n\n{MATH_SUFFIX}"
    if kind == "cruxeval_output":
        return ("Here is a Python function and an input. What does the function return?\n\n"
                f"```python\n{item.meta['code']}\n```\n\nInput: f({item.meta['input']})\n\n"
                "Think it through, then write the returned value as a Python literal between [ANSWER] and "
                "[/ANSWER], for example [ANSWER][1, 2][/ANSWER].")
    if kind == "cruxeval_input":
        return ("Here is a Python function and the value it returned. Find an input that makes it return "
                f"this value.\n\n```python\n{item.meta['code']}\n```\n\nReturned value: {item.answer}\n\n"
                "Think it through, then write the call with literal arguments between [ANSWER] and [/ANSWER], "
                "for example [ANSWER]f([1, 2], 'a')[/ANSWER].")
    if kind == "humaneval":
        return ("Complete the following Python function. Write the whole function in one ```python code "
                f"block.\n\n```python\n{item.meta['prompt']}```")
    raise ValueError(f"unknown benchmark kind {kind!r}")


# -- extraction ----------------------------------------------------------------------------------

def last_number(text: str) -> str | None:
    nums = _NUMBER_RE.findall(text or "")
    return nums[-1].replace(",", "").rstrip(".") if nums else None


def _clean_number(ans: str) -> str:
    a = ans.strip().strip("$").strip()
    a = re.sub(r"^\\\$|\\%$|%$", "", a).strip()
    return a.replace(",", "") if re.fullmatch(r"-?[\d,]+(\.\d+)?", a) else a


def extract_math(text: str, gsm8k: bool = False) -> str | None:
    from zeroplay.verifiers.math import extract_answer

    ans = extract_answer(text)
    if ans is None and gsm8k:
        ans = last_number(text)
    if ans is None:
        return None
    ans = ans.strip()
    return (_clean_number(ans) if gsm8k else ans) or None


def _answer_block(text: str) -> str | None:
    """The last [ANSWER] block, else the last code block, else the last box, else the last line."""
    from zeroplay.verifiers.math import extract_boxed

    text = text or ""
    found = _ANSWER_RE.findall(text)
    if found and found[-1].strip():
        return found[-1].strip()
    blocks = _CODE_RE.findall(text)
    if blocks and blocks[-1][1].strip():
        return blocks[-1][1].strip()
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def _strip_assert(src: str) -> ast.AST | None:
    try:
        node = ast.parse(src.strip(), mode="exec").body
    except SyntaxError:
        return None
    if len(node) != 1:
        return None
    stmt = node[0]
    if isinstance(stmt, ast.Assert):
        return stmt.test
    return stmt.value if isinstance(stmt, ast.Expr) else None


def extract_crux_output(text: str) -> str | None:
    ans = _answer_block(text)
    if ans is None:
        return None
    node = _strip_assert(ans)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
        return ast.get_source_segment(ans.strip(), node.comparators[0]) or ans
    return ans


def extract_crux_input(text: str) -> str | None:
    """The argument list of the predicted call (`f(1, 'a')` -> `1, 'a'`; a bare list stays)."""
    ans = _answer_block(text)
    if ans is None:
        return None
    src = ans.strip()
    node = _strip_assert(src)
    if isinstance(node, ast.Compare):
        node = node.left
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "f":
        parts = [ast.get_source_segment(src, a) for a in node.args]
        parts += [f"{k.arg}={ast.get_source_segment(src, k.value)}" for k in node.keywords if k.arg]
        return ", ".join(p for p in parts if p is not None)
    return src


def extract_code(text: str) -> str:
    """The last ```python (or any fenced) block, else the whole response."""
    blocks = _CODE_RE.findall(text or "")
    py = [b for lang, b in blocks if lang.lower() in ("python", "py", "python3")]
    if py:
        return py[-1]
    return blocks[-1][1] if blocks else (text or "")


def humaneval_script(meta: dict, code: str) -> str:
    prompt, entry = meta["prompt"], meta["entry_point"]
    if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        program = prompt + "\n    pass\n\n" + code  # helpers and imports of the prompt stay defined
    else:
        program = prompt + code  # the body continuing the prompt
    return f"{program}\n\n{meta['test']}\n\ncheck({entry})\n"


def extract_rg(text: str, gold: str) -> str | None:
    from zeroplay.verifiers.math import extract_answer

    ans = extract_answer(text)
    if ans is not None:
        return ans.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", gold.strip()):
        return last_number(text)
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else None


# -- grading -------------------------------------------------------------------------------------

def score(name: str, items: Sequence[Item], responses: Sequence[Sequence[str]], *, timeout_s: float = 10.0,
          rg_size: int | None = None) -> tuple[list[list[str | None]], list[list[float]]]:
    """(extracted answers [N][k], scores [N][k] in [0, 1]) for the responses to `items`.
    Every score is 0 or 1 except reasoning-gym's own partial credit."""
    kind = kind_of(name)
    flat = [(i, j, r) for i, rs in enumerate(responses) for j, r in enumerate(rs)]
    extracted: list[list[str | None]] = [[None] * len(rs) for rs in responses]
    scores: list[list[float]] = [[0.0] * len(rs) for rs in responses]
    todo = []  # (i, j, verifier input)
    for i, j, r in flat:
        item = items[i]
        if kind in ("math", "gsm8k"):
            e = extract_math(r, gsm8k=kind == "gsm8k")
        elif kind == "cruxeval_output":
            e = extract_crux_output(r)
        elif kind == "cruxeval_input":
            e = extract_crux_input(r)
        elif kind == "humaneval":
            e = extract_code(r)
        else:
            e = extract_rg(r, item.answer)
        extracted[i][j] = e
        if e is not None and (kind != "humaneval" or e.strip()):
            todo.append((i, j, e))
    if not todo:
        return extracted, scores
    if kind in ("math", "gsm8k"):
        from zeroplay.verifiers.math import is_equivalent_batch

        ok = is_equivalent_batch([(e, items[i].answer) for i, _, e in todo], timeout_s=min(timeout_s, 5.0))
    elif kind == "cruxeval_output":
        from zeroplay.verifiers.code import check_output_prediction_batch

        ok = check_output_prediction_batch([(e, items[i].answer) for i, _, e in todo])
    elif kind == "cruxeval_input":
        from zeroplay.verifiers.code import check_input_prediction_batch

        ok = check_input_prediction_batch([(items[i].meta["code"], e, items[i].answer) for i, _, e in todo],
                                          timeout_s=timeout_s)
    elif kind == "humaneval":
        from zeroplay.verifiers.code import run_script_batch

        res = run_script_batch([humaneval_script(items[i].meta, e) for i, _, e in todo], timeout_s=timeout_s)
        ok = [bool(r.ok) for r in res]
    else:
        ds = rg_dataset(name, rg_size if rg_size is not None else len(items))
        ok = []
        for i, _, e in todo:
            try:
                entry = items[i].meta.get("entry") or ds[items[i].index]
                ok.append(float(ds.score_answer(e, entry)))
            except Exception:  # noqa: BLE001 -- a scorer choking on odd model text is a wrong answer
                ok.append(0.0)
    for (i, j, _), v in zip(todo, ok):
        scores[i][j] = float(v)
    return extracted, scores


def check_rg_task(name: str) -> None:
    """Raise BenchmarkError early for an rg: name that does not parse or exist."""
    parse_rg(name)
    rg_dataset(name, 1)
