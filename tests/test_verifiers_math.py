"""Math answer extraction and equivalence."""
import json
import time
from pathlib import Path

import pytest

from zeroplay.verifiers import _pool
from zeroplay.verifiers import math as vm

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HANG = "9^{9^{9^{9}}}"  # sympy evaluates the tower for ever


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        pytest.skip(f"missing {path}")
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.mark.parametrize("text,want", [
    (r"so \boxed{42}.", "42"),
    (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\frac{a^{2}}{b_{1}}}", r"\frac{a^{2}}{b_{1}}"),
    (r"\fbox{7}", "7"),
    (r"\boxed{3} and \fbox{4}", "4"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"\boxed 5 apples", "5"),
    (r"\boxed{2} and later \boxed{unclosed", "2"),
    (r"\boxed{}", ""),
    ("no box here", None),
    ("", None),
    (None, None),
    (12, None),
])
def test_extract_boxed(text, want):
    assert vm.extract_boxed(text) == want


def test_extract_answer_tag_and_gsm8k():
    assert vm.extract_answer_tag("<think>x</think> <answer> 12 </answer>") == "12"
    assert vm.extract_answer_tag("<answer>1</answer><answer>\n2\n</answer>") == "2"
    assert vm.extract_answer_tag("<answer>unclosed") is None
    assert vm.extract_gsm8k("so 3 + 4 = 7\n#### 7") == "7"
    assert vm.extract_gsm8k("#### 1 \n#### 1,234\nThe end") == "1,234"
    assert vm.extract_gsm8k("no marker") is None
    assert vm.extract_answer(r"<answer>The answer is \boxed{5}</answer>") == "5"
    assert vm.extract_answer(r"<answer>5</answer> \boxed{6}") == "5"
    assert vm.extract_answer(r"thus \boxed{6}") == "6"
    assert vm.extract_answer("#### 8") == "8"
    assert vm.extract_answer("nothing") is None


def test_gsm8k_answers_extract_as_numbers():
    items = _jsonl(DATA / "gsm8k" / "test.jsonl")
    answers = [vm.extract_gsm8k(d["answer"]) for d in items]
    assert None not in answers
    assert all(vm.as_number(vm.normalize_answer(a)) is not None for a in answers)


def test_math500_boxed_solutions_match_their_answers():
    items = _jsonl(DATA / "math500" / "test.jsonl")
    pairs = [(vm.extract_boxed(d["solution"]), d["answer"]) for d in items]
    assert all(vm.is_equivalent_batch(pairs))


EQUIVALENT = [
    ("0.5", r"\frac{1}{2}"), (r"\frac12", "0.5"), (r"\dfrac{3}{4}", "0.75"), ("72.0", "72"),
    ("1,000", "1000"), ("-2/4", r"-\frac{1}{2}"), (r"\{2, 1\}", r"\{1,2\}"),
    ("[0,1)", r"[0, 1)"), (r"x^2+2x+1", r"(x+1)^2"), (r"\sqrt{2}/2", r"\frac{\sqrt2}{2}"),
    (r"10\%", "0.1"), ("x = 5", "5"), (r"\text{(B)}", "B"), ("3.0000001", "3"),
    (r"\left( 1, 2 \right)", "(1,2)"), (r"2\sqrt{5}", r"\sqrt{20}"), (r"$\pi/2$", r"\frac{\pi}{2}"),
    ("6+9i", "9i+6"), (r"76^\circ", "76"), (r"\boxed{7}", "7"),
]
NOT_EQUIVALENT = [
    ("0.5", "0.6"), ("(1,2)", "(2,1)"), ("(0,1]", "(0,1)"), ("3.14159", "3.1416"),
    (r"\{1,2\}", r"\{1,3\}"), ("x+1", "x+2"), ("2", "-2"), ("", "1"), ("1", ""),
    ("   ", " "), (r"\frac{1}{0}", "0"), ("A", "B"),
]


def test_is_equivalent_table():
    pairs = EQUIVALENT + NOT_EQUIVALENT
    got = vm.is_equivalent_batch(pairs)
    want = [True] * len(EQUIVALENT) + [False] * len(NOT_EQUIVALENT)
    assert [(p, g) for (p, g), a, b in zip(pairs, got, want) if a != b] == []
    assert vm.is_equivalent("0.5", r"\frac{1}{2}") is True


@pytest.mark.parametrize("pred,gold", [
    (None, "1"), ("1", None), (1, 1), (b"1", "1"), ("\x00\xff\ud800", "1"), ([1], "1"),
    ("(" * 5000, "1"), ("x" * 100_000, "1"), (r"\frac{" * 300, r"\frac{1}{2}"),
    (r"\begin{pmatrix}", "1"),
])
def test_never_raises(pred, gold):
    assert vm.is_equivalent(pred, gold, timeout_s=3.0) in (True, False)


def test_hard_timeout_kills_and_replaces_the_worker():
    assert vm.is_equivalent("1", "1.0")  # pool up (fast path: no worker needed)
    vm.is_equivalent(r"\sqrt{4}", "2")   # workers started and warm
    before = vm.pool_restarts()
    start = time.monotonic()
    assert vm.is_equivalent(HANG, "3", timeout_s=1.0) is False
    assert time.monotonic() - start < 3.0
    assert vm.pool_restarts() > before
    assert vm.is_equivalent(r"\sqrt{9}", "3")  # the replacement works


def test_batch_deadline_bounds_a_batch_of_hangs():
    pairs = [(HANG, str(i)) for i in range(6)] + [(r"\sqrt{16}", "4")]
    start = time.monotonic()
    got = vm.is_equivalent_batch(pairs, timeout_s=30.0, deadline_s=1.5)
    assert time.monotonic() - start < 4.0
    assert got[:6] == [False] * 6
    assert vm.is_equivalent(r"\sqrt{25}", "5")


def test_workers_are_recycled():
    pool = _pool.WorkerPool(_pool.python_argv(vm._WORKER_SCRIPT), num_workers=1,
                            max_tasks_per_worker=3)
    try:
        tasks = [{"pred": rf"\sqrt{{{k * k}}}", "gold": str(k)} for k in range(2, 12)]
        got = pool.map(tasks, [10.0] * len(tasks), fail=lambda i, r: None)
        assert got == [True] * len(tasks)
        assert pool.restarts >= 3
    finally:
        pool.close()


def test_pool_restarts_after_shutdown():
    vm.shutdown()
    assert vm.is_equivalent(r"\sqrt{36}", "6")


def test_extraction_stays_linear_on_hostile_completions():
    start = time.monotonic()
    assert vm.extract_boxed(r"\boxed{" * 200_000 + "x") is None
    assert vm.extract_boxed(r"\boxed{" * 100_000 + r"\boxed{7}") == "7"
    assert vm.extract_answer_tag("<answer>" * 200_000 + "x") is None
    assert vm.extract_answer("<answer>" * 100_000 + "y</answer>") == "y"
    assert vm.is_equivalent(r"\boxed{" * 100_000, "1") is False
    assert time.monotonic() - start < 5.0
