"""AZR game: rewards, buffers, parsing, sandbox validation, and a scripted policy through score.

The policy here is a test double: a fake `Context` whose `sample` answers from scripted strings,
with a char-level codec for `encode`/`decode`. The sandbox is real (one module-scoped pool).
"""
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from zeroplay.games import Completion, Context, Request, make_game
from zeroplay.games import azr
from zeroplay.games import azr_text as T
from zeroplay.verifiers import code as executor

IDENTITY = "def f(a):\n    return a"


# -- test doubles ---------------------------------------------------------------------------------

def encode(s):
    return [ord(c) for c in s]


def decode(ids):
    return "".join(chr(i) for i in ids)


def completion(text):
    toks = encode(text) if isinstance(text, str) else [0]
    return Completion(tokens=toks, logprobs=np.zeros(len(toks), np.float32), text=text,
                      finished=True)


class FakeSampler:
    """`ctx.sample`: `policy(role, prompt_text, i)` gives the i-th of n completions."""

    def __init__(self, policy, until=None):
        self.policy, self.until, self.calls = policy, until, []

    def __call__(self, role, prompts, n, sampling=None):
        t0 = time.monotonic()
        texts = [decode(p) for p in prompts]
        out = [[completion(self.policy(role, p, i)) for i in range(n)] for p in texts]
        while self.until is not None and not self.until() and time.monotonic() < t0 + 20:
            time.sleep(0.01)  # "device work" lasting until the condition holds
        self.calls.append({"role": role, "n": n, "sampling": sampling, "prompts": texts,
                           "t0": t0, "t1": time.monotonic(),
                           "thread": threading.current_thread().name})
        return out


class FakeTimer:
    def __init__(self):
        self.stages = []

    def __call__(self, stage):
        import contextlib
        self.stages.append(stage)
        return contextlib.nullcontext()


class RecordingPool:
    """Delegates to the real pool; records which thread used it, and when."""

    def __init__(self, pool):
        self.pool, self.calls, self.lock = pool, [], threading.Lock()

    def execute(self, jobs, **kw):
        t0 = time.monotonic()
        out = self.pool.execute(jobs, **kw)
        with self.lock:
            self.calls.append((threading.current_thread().name, t0, time.monotonic(), len(jobs)))
        return out


def ctx_for(sampler=None, step=0, seed=0, timer=None):
    return Context(sample=sampler or FakeSampler(lambda *a: ""), encode=encode, decode=decode,
                   rng=np.random.default_rng(seed), step=step, timer=timer)


def fmt(body, think="thinking"):
    """A well-formatted response (the prompt already ends with <think>)."""
    return f"{think}</think>\n<answer>\n{body}\n</answer>"


def proposal(code, inp, think="plan"):
    return fmt(f"```python\n{code}\n```\n```input\n{inp}\n```", think)


def induction(inputs, message="msg", tag="message"):
    blocks = "\n".join(f"```input\n{x}\n```" for x in inputs)
    msg = f"```message\n{message}\n```" if tag == "message" else f"<message>{message}</message>"
    return fmt(f"{blocks}\n{msg}")


def settings(**kw):
    base = dict(batch_per_task_role=2, max_prompt_tokens=10**6, timeout_s=2.0, seed_size=4,
                seed_max_rounds=2)
    base.update(kw)
    return azr.Settings(**base)


@pytest.fixture(scope="module")
def pool():
    p = executor.SandboxPool()
    yield p
    p.close()


def identity_state(step_tag=-1):
    t = azr.seed_triplet()
    p = azr.seed_problem()
    return {"buffers": {"input": [t], "output": [t], "problem": [p]},
            "step_added": {"input": [step_tag], "output": [step_tag], "problem": [step_tag]}}


# -- rewards --------------------------------------------------------------------------------------

def test_proposer_reward():
    assert azr.proposer_reward(0.0) == 0.0
    assert azr.proposer_reward(1.0) == 0.0
    assert azr.proposer_reward(0.25) == 0.75
    assert azr.proposer_reward(3 / 8) == pytest.approx(5 / 8)
    assert azr.proposer_reward(1 - 1e-9) == pytest.approx(1e-9)


def test_composite_reward():
    c = azr.composite_reward
    assert c(0.75, True) == 0.75
    assert c(1.0, True) == 1.0
    assert c(0.0, True) == -0.5            # well formatted, wrong / unlearnable
    assert c(0.75, False) == -1.0          # format error or invalid proposal
    assert c(0.0, False) == -1.0
    assert c(0.0, True, wrong_penalty=-0.25) == -0.25
    assert c(0.3, False, format_penalty=-2.0) == -2.0


def test_settings_and_registry():
    with pytest.raises(ValueError, match="greedy"):
        azr.Settings(learnability_temperature=0.0)
    with pytest.raises(ValueError, match="induction_shown"):
        azr.Settings(induction_shown=10)
    with pytest.raises(ValueError, match="tasks"):
        azr.Settings(tasks=("code_e",))
    game = make_game("azr", {"batch_per_task_role": 4, "tasks": ["code_o", "code_i"]})
    assert game.settings.tasks == ("code_o", "code_i") and game.settings.batch_per_task_role == 4
    with pytest.raises(ValueError, match="unknown game.nope"):
        make_game("azr", {"nope": 1})
    d = azr.Settings()
    assert (d.batch_per_task_role, d.k_references, d.learnability_samples, d.induction_inputs,
            d.induction_shown, d.buffer_cap, d.seed_size, d.new_mix, d.timeout_s) == (
        64, 6, 8, 10, 5, 16384, 256, 64, 10.0)
    assert d.banned_imports == executor.AZR_BANNED_IMPORTS
    assert game.roles == ("proposer", "solver")
    assert game.estimator == "reinforce_pp" and game.estimator_kwargs == {"token_weighted": True}


def test_game_imports_no_jax_sampler_or_rl():
    code = ("import sys, zeroplay.games.azr\n"
            "bad = [m for m in sys.modules if m == 'jax' or m.startswith(('jax.', "
            "'zeroplay.sampling', 'zeroplay.rl'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- buffers --------------------------------------------------------------------------------------

def test_buffer_cap_keeps_first_and_tags():
    entries, steps, dropped = azr.add_to_buffer(["a", "b", "c"], [-1, -1, 0], ["d", "e", "f"], 1, 5)
    assert entries == ["a", "b", "c", "d", "e"] and steps == [-1, -1, 0, 1, 1] and dropped == 1
    entries, steps, dropped = azr.add_to_buffer(entries, steps, ["g"], 2, 5)
    assert entries == ["a", "b", "c", "d", "e"] and dropped == 1      # full: new ones dropped
    entries, steps, dropped = azr.add_to_buffer([], [], ["x", "y"], 7, 5)
    assert entries == ["x", "y"] and steps == [7, 7] and dropped == 0


def test_new_mix_selection():
    steps = [-1] * 10 + [3] * 4 + [4] * 6          # six programs added in step 4
    rng = np.random.default_rng(0)
    got = azr.select_solve_indices(steps, 5, 8, 64, 1, rng)
    assert len(got) == 8 and set(range(14, 20)) <= set(got)   # every new one, the rest uniform
    got = azr.select_solve_indices(steps, 5, 8, 4, 1, rng)
    assert len(got) == 8 and len(set(got[:4])) == 4 and set(got[:4]) <= set(range(14, 20))
    assert azr.select_solve_indices(steps, 5, 8, 0, 1, rng)   # new_mix 0: uniform only
    got = azr.select_solve_indices([-1, -1], 0, 5, 64, 1, rng)  # small buffer: with replacement
    assert len(got) >= 5 and set(got) <= {0, 1}
    assert azr.select_solve_indices([], 0, 5, 64, 1, rng) == []
    a = azr.select_solve_indices(steps, 5, 8, 4, 1, np.random.default_rng(3))
    b = azr.select_solve_indices(steps, 5, 8, 4, 1, np.random.default_rng(3))
    assert a == b  # reproducible from ctx.rng


def test_seed_dedup():
    seed = [azr.seed_triplet()]
    e = {"snippet": "def f(x):\n    return x + 1", "input": "1", "output": "2", "imports": []}
    assert azr.dedup_extend(seed, [e, dict(e), azr.seed_triplet()]) == 1
    assert seed == [azr.seed_triplet(), e]
    assert azr.seed_triplet() == {"snippet": IDENTITY, "input": '"Hello world"',
                                  "output": '"Hello world"', "imports": []}


# -- text: prompts and parsing --------------------------------------------------------------------

def test_prompts():
    refs = [{"snippet": f"def f(a):\n    return a + {i}", "input": str(i), "output": str(2 * i)}
            for i in range(6)]
    body = T.propose_prompt("code_o", refs, ("logging", "random"))
    full = T.r1_prompt(body)
    assert full.startswith("This is a conversation between a User and an Assistant.")
    assert full.endswith("User: " + body + "\nAssistant: <think>")
    assert "<snippet_5>" in body and "<snippet_6>" not in body and "return a + 5" in body
    assert "even in comments: logging, random" in body
    assert "deduce the output from the input" in body
    assert "deduce one possible input" in T.propose_prompt("code_i", refs[:1], ())
    ind = T.induction_propose_prompt(IDENTITY, 10)
    assert "write 10 inputs" in ind
    assert IDENTITY + "\nf(<your input goes here>)" in ind
    e = {"snippet": "def f(x):\n    return x * 2", "input": "21", "output": "42"}
    ded, abd = T.solve_prompt("code_o", e), T.solve_prompt("code_i", e)
    assert "```input\n21\n```" in ded and "42" not in ded
    assert "```output\n42\n```" in abd and "21" not in abd
    p = {"inputs": [str(i) for i in range(10)], "outputs": [f"'o{i}'" for i in range(10)],
         "message": "doubles", "n_shown": 5, "snippet": "SECRET", "imports": []}
    ind = T.solve_prompt("code_f", p)
    assert "```input_4\n4\n```\n```output_4\n'o4'\n```" in ind and "'o5'" not in ind
    assert "```message\ndoubles\n```" in ind and "SECRET" not in ind


def test_format_and_answer():
    g = T.generation_text
    assert T.is_well_formatted(g("a</think> <answer>x</answer>"))
    assert T.is_well_formatted(g("</think>\n\n<answer></answer> trailing"))
    assert T.is_well_formatted(g("a</think>b</think> <answer>x</answer>"))
    assert not T.is_well_formatted(g("a</think> b <answer>x</answer>"))   # text between
    assert not T.is_well_formatted(g("a <answer>x</answer>"))
    assert not T.is_well_formatted(g("a</think><answer>x"))
    assert not T.is_well_formatted(g(""))
    assert not T.is_well_formatted("no think tag</think><answer>x</answer>")
    assert g('x</think><answer>"a"</answer>"') == '<think>x</think><answer>"a"</answer>'
    assert T.extract_answer("<answer>1</answer><answer> 2 </answer>") == "2"
    assert T.extract_answer("<answer> open") == "open"
    assert T.extract_answer("none") == ""


def test_parse_proposal():
    p = T.parse_proposal("```python\ndef solve(n):\n    return n if n < 2 else solve(n - 1) + "
                         "solve(n - 2)\n```\n```input\n10\n```")
    assert p["snippet"].startswith("def f(n):") and "f(n - 1) + f(n - 2)" in p["snippet"]
    assert p["input"] == "10" and p["imports"] == []
    p = T.parse_proposal("```python\nimport math\nfrom collections import deque as dq\n"
                         "def f(x):\n    return math.floor(x)\n```\n# Input: 2.5")
    assert p["input"] == "2.5" and p["imports"] == ["import math",
                                                     "from collections import deque as dq"]
    two = "```python\ndef g(x):\n    return x\ndef f(x):\n    return g(x)\n```\n```input\n1\n```"
    assert T.parse_proposal(two) is None
    assert T.parse_proposal(two, reject_multiple_functions=False)["snippet"].startswith("def f")
    nested = ("```python\ndef f(x):\n    def h(y):\n        return y\n    return h(x)\n```\n"
              "```input\n1\n```")
    assert T.parse_proposal(nested) is None                      # reference: nested defs count
    assert T.parse_proposal(nested, nested_defs=False) is not None
    assert T.parse_proposal("```python\nx = 1\n```\n```input\n1\n```") is None  # no function
    assert T.parse_proposal("```python\ndef f(x):\n    return x\n```") is None   # no input
    assert T.parse_proposal("no blocks at all") is None
    # Like the reference, the first fenced block is the program, even an input block.
    assert T.parse_proposal("```input\n1\n```\n```python\ndef f(x):\n    return x\n```") is None


def test_parse_induction_proposal():
    inputs = [str(i) for i in range(12)]
    p = T.parse_induction_proposal(induction(inputs, "hello"), 10)
    assert p == {"inputs": inputs[-10:], "message": "hello"}
    assert T.parse_induction_proposal(induction(inputs[:9]), 10) is None
    p = T.parse_induction_proposal(induction(inputs[:10], " tagged ", tag="xml"), 10)
    assert p["message"] == "tagged"
    no_msg = "\n".join(f"```input\n{x}\n```" for x in inputs[:10])
    assert T.parse_induction_proposal(no_msg, 10) is None
    assert T.parse_induction_proposal(no_msg + "\n# Message: says hi", 10)["message"] == "says hi"


def test_solver_answer_extraction():
    x = T.extract_io_answer
    assert x("```output\n[1, 2]\n```", "output") == "[1, 2]"
    assert x("```output\n1\n```\nmore\n```output\n 'b' \n```", "output") == "'b' "
    assert x("# Output: 42", "output") == "42"
    assert x("<input>'abc'</input>", "input") == "'abc'"
    assert x("<input> 7  ", "input") == "7"
    assert x("so the input is 5.", "input") == "5"
    assert x("call input(3, 4)", "input") == "3, 4"
    assert x("'raw'", "input") == "'raw'"                      # the whole answer
    assert T.extract_code_answer("```python\ndef f(a):\n    return 1\n```\ntext\n```\ndef f(a):"
                                 "\n    return 2\n```") == "def f(a):\n    return 2"
    assert T.extract_code_answer("def f(a): return a") is None


def test_parsers_are_linear_on_hostile_text():
    hostile = ["</think><answer>" * 20000, "```python" + " " * 200000, "```input" + "\n" * 200000,
               "<input>" + " " * 200000 + "x", "input(" * 30000, "\n" * 200000 + "def",
               "# Input:" * 20000, "<message>" + " " * 200000, "the input is" + " " * 200000]
    t0 = time.monotonic()
    for h in hostile:
        g = T.generation_text(h)
        T.is_well_formatted(g)
        a = T.extract_answer(g) or h
        T.parse_proposal(a)
        T.parse_induction_proposal(a, 10)
        T.extract_io_answer(a, "input")
        T.extract_io_answer(a, "output")
        T.extract_code_answer(a)
        T.function_defs(h)
    assert time.monotonic() - t0 < 5.0


# -- validation in the sandbox --------------------------------------------------------------------

def test_validate_hand_written_programs(pool):
    game = azr.AZRGame(settings(timeout_s=1.0), pool=pool)
    progs = [
        ("def f(xs):\n    return sorted(xs)[::-1]", "[3, 1, 2]"),                # ok
        ("def f(x):\n    pass", "1"),                                             # ok: None
        ("def f(x):\n    return x +\n", "1"),                                     # syntax
        ("import random\ndef f(x):\n    return random.random()", "1"),            # banned
        ("import time\ndef f(x):\n    return x", "1"),                            # banned
        ("n = [0]\ndef f(x):\n    n[0] += 1\n    return n[0]", "1"),              # counter
        ("class A:\n    pass\ndef f(x):\n    return id(A())", "1"),               # id()
        ("def f(x):\n    while True:\n        pass", "1"),                        # timeout
        ("def f(x):\n    return 1 / 0", "1"),                                     # raises
        ("def f(x):\n    return x", "undefined_name"),                            # not literal
        ("def f(x):\n    return x" + "\0", "1"),                                  # NUL byte
    ]
    parsed = [{"snippet": c, "input": i, "imports": []} for c, i in progs] + [None]
    t0 = time.monotonic()
    got = game._validate_triplets(parsed)
    assert time.monotonic() - t0 < 20
    assert got[0] == {"snippet": progs[0][0], "input": "[3, 1, 2]", "output": "[3, 2, 1]",
                      "imports": []}
    assert got[1]["output"] == "None"
    assert [g is not None for g in got] == [True, True] + [False] * 10


def test_validate_induction(pool):
    game = azr.AZRGame(settings(), pool=pool)
    prog = {"snippet": "def f(x):\n    return x * 2", "imports": []}
    ok = {"inputs": [str(i) for i in range(10)], "message": "twice"}
    bad = {"inputs": [str(i) for i in range(9)] + ["'a' + 1"], "message": "twice"}
    raises = {"inputs": [str(i) for i in range(9)] + ["None"], "message": "twice"}
    got = game._validate_problems([ok, bad, raises, None], [prog] * 4)
    assert got[0]["outputs"] == [str(2 * i) for i in range(10)] and got[0]["n_shown"] == 5
    assert got[1:] == [None, None, None]


# -- requests -------------------------------------------------------------------------------------

def test_requests_shapes_and_prompts():
    game = azr.AZRGame(settings(batch_per_task_role=3))
    state = identity_state()
    extra = [{"snippet": f"def f(a):\n    return a * {i}", "input": "2", "output": str(2 * i),
              "imports": []} for i in range(8)]
    state["buffers"]["output"] = state["buffers"]["output"] + extra
    state["step_added"]["output"] = [-1] + [4] * 4 + [5] * 4      # four new in step 5
    reqs = game.requests("play", state, ctx_for(step=6))
    kinds = [(r.role, r.meta["kind"], r.meta["task"]) for r in reqs]
    for task in azr.TASKS:
        assert kinds.count(("proposer", "propose", task)) == 3
        assert kinds.count(("solver", "solve", task)) == 3
    props = {r.meta["task"]: decode(r.prompt) for r in reqs if r.meta["kind"] == "propose"}
    assert props["code_o"].count("<snippet_") == 6                 # K = 6 references
    assert props["code_i"].count("<snippet_") == 1                 # buffer of one
    assert props["code_f"].endswith("Assistant: <think>")
    assert all(r.n == 1 for r in reqs)
    ded = [r for r in reqs if r.meta["kind"] == "solve" and r.meta["task"] == "code_o"]
    assert all(r.meta["step_added"] == 5 for r in ded)             # new_mix: the newest first
    again = game.requests("play", state, ctx_for(step=6))
    assert [r.prompt for r in again] == [r.prompt for r in reqs]     # reproducible from ctx.rng
    # Prompts over the token cap are not used: the propose prompts here, not the solve ones.
    # (With the char codec, the solve prompts here are under 1.8k tokens, the propose ones over.)
    short = azr.AZRGame(settings(batch_per_task_role=3, max_prompt_tokens=1800))
    reqs = short.requests("play", state, ctx_for(step=6))
    assert {r.meta["kind"] for r in reqs} == {"solve"} and len(reqs) == 9


# -- a scripted policy through score --------------------------------------------------------------

# Deduction proposals: (label, response, expected validity)
P_HARD = ("def f(xs):\n    return sorted(xs)[::-1]", "[3, 1, 2]")
P_EASY = ("def f(a):\n    return a + 1", "1")
P_NEVER = ("def f(s):\n    return s[::-1]", "'abc'")
P_BADFMT = ("def f(t):\n    return t * 3", "2")
DEDUCTION = [
    ("hard", proposal(*P_HARD), True),
    ("easy", proposal(*P_EASY), True),
    ("never", proposal(*P_NEVER), True),
    ("counter", proposal("c = [0]\ndef f(x):\n    c[0] += 1\n    return c[0]", "1"), False),
    ("banned", proposal("import random\ndef f(x):\n    return random.random()", "1"), False),
    ("no_answer", "just thinking, no tags at all", False),
    ("badfmt", f"no closing think <answer>```python\n{P_BADFMT[0]}\n```\n```input\n2\n```</answer>",
     True),
]
A_HALF = ("def f(x):\n    return x * 2", "4")
A_FIB = ("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)", "10")
ABDUCTION = [
    ("half", proposal(*A_HALF), True),
    ("fib", proposal(*A_FIB), True),
    ("two_funcs", proposal("def g(x):\n    return x\ndef f(x):\n    return g(x)", "1"), False),
    ("syntax", proposal("def f(x):\n    return (x", "1"), False),
    ("empty", "", False),
    ("garbage", "\x00\x01\ufffe\ud800 bytes \udcff</think><answer>```python\n\x00```", False),
    ("none", None, False),
]
F_OK = [str(i) for i in range(10)]
INDUCTION = [
    ("ok", induction(F_OK, "M-one"), True),
    ("nine", induction(F_OK[:9], "M-nine"), False),
    ("twelve", induction([str(i) for i in range(100, 112)], "M-twelve", tag="xml"), True),
    ("nonliteral", induction(F_OK[:9] + ["x"], "M-bad"), False),
    ("no_message", fmt("\n".join(f"```input\n{x}\n```" for x in F_OK)), False),
]
# How many of the 8 learnability samples are right, per proposal (found by a marker in the
# solve prompt), with a right and a wrong answer body.
LEARN = {
    "sorted(xs)[::-1]": (3, "```output\n[3, 2, 1]\n```", "```output\n[1, 2, 3]\n```"),
    "return a + 1": (8, "```output\n2\n```", "```output\n3\n```"),
    "return s[::-1]": (0, "```output\n'cba'\n```", "```output\n'abc'\n```"),
    "return t * 3": (4, "```output\n6\n```", "```output\n5\n```"),
    "return x * 2": (3, "```input\n4\n```", "```input\n5\n```"),
    "f(n - 1) + f(n - 2)": (1, "```input\n10\n```", "```input\n9\n```"),
    "M-one": (3, "```python\ndef f(a):\n    return a\n```",
              "```python\ndef f(a):\n    return 0\n```"),
    "M-twelve": (8, "```python\ndef f(a):\n    return a\n```", "no code block"),
}


def learn_policy(role, prompt, i):
    assert role == "solver"
    hits = [k for k in LEARN if k in prompt]
    assert len(hits) == 1, (hits, prompt[-400:])
    k, right, wrong = LEARN[hits[0]]
    # Learnability samples need an <answer> but not the whole format (reference).
    return f"t</think><answer>{right}</answer>" if i < k else f"<answer>{wrong}</answer>"


# Solver answers for the identity seed entries: right, wrong, malformed.
SOLVE = {
    "code_o": [fmt("```output\n'Hello world'\n```"), fmt("```output\n'hello'\n```"), "no format"],
    "code_i": [fmt("```input\n'Hello world'\n```"), fmt("```input\n'x'\n```"),
               "<answer>```input\n'Hello world'\n```</answer>"],
    "code_f": [fmt("```python\ndef f(a):\n    return a\n```"),
               fmt("```python\ndef f(a):\n    return None\n```"),
               fmt("def f(a): return a")],                       # no code block: format error
}


def build_step(enc=encode):
    reqs, rolls, labels = [], [], []
    for task, cases in (("code_o", DEDUCTION), ("code_i", ABDUCTION), ("code_f", INDUCTION)):
        for label, response, _ in cases:
            meta = {"kind": "propose", "task": task}
            if task == "code_f":
                meta["program"] = {"snippet": IDENTITY, "imports": []}
            reqs.append(Request("proposer", enc(f"propose {task} {label}"), 1, meta))
            rolls.append([completion(response)])
            labels.append((task, "proposer", label))
    state = identity_state()
    for task, key in azr.BUFFER_OF.items():
        entry = state["buffers"][key][0]
        for j, response in enumerate(SOLVE[task]):
            reqs.append(Request("solver", enc(f"solve {task} {j}"), 1,
                                {"kind": "solve", "task": task, "entry": entry}))
            rolls.append([completion(response)])
            labels.append((task, "solver", j))
    return state, reqs, rolls, labels


def test_scripted_policy_through_score(pool):
    rec = RecordingPool(pool)
    game = azr.AZRGame(settings(), pool=rec)
    # The nested sampling lasts until the background thread has used the pool: the overlap.
    sampler = FakeSampler(learn_policy, until=lambda: any(
        c[0].startswith("azr-verify") for c in list(rec.calls)))
    timer = FakeTimer()
    state, reqs, rolls, labels = build_step()
    t0 = time.monotonic()
    new_state, episodes, metrics = game.score("play", reqs, rolls, state,
                                              ctx_for(sampler, step=3, timer=timer))
    elapsed = time.monotonic() - t0
    assert len(episodes) == len(reqs)
    by = {lab: ep for lab, ep in zip(labels, episodes)}

    expected_prop = {
        ("code_o", "hard"): 1 - 3 / 8, ("code_o", "easy"): -0.5, ("code_o", "never"): -0.5,
        ("code_o", "counter"): -1.0, ("code_o", "banned"): -1.0, ("code_o", "no_answer"): -1.0,
        ("code_o", "badfmt"): -1.0,
        ("code_i", "half"): 1 - 3 / 8, ("code_i", "fib"): 1 - 1 / 8,
        ("code_i", "two_funcs"): -1.0, ("code_i", "syntax"): -1.0, ("code_i", "empty"): -1.0,
        ("code_i", "garbage"): -1.0, ("code_i", "none"): -1.0,
        ("code_f", "ok"): 1 - 3 / 8, ("code_f", "twelve"): -0.5, ("code_f", "nine"): -1.0,
        ("code_f", "nonliteral"): -1.0, ("code_f", "no_message"): -1.0,
    }
    for (task, label), want in expected_prop.items():
        ep = by[(task, "proposer", label)]
        assert ep.reward == pytest.approx(want), (task, label, ep.info)
        assert ep.bucket == f"{task}/proposer" and ep.role == "proposer"
    assert by[("code_o", "proposer", "hard")].info["solve_rate"] == pytest.approx(3 / 8)
    assert by[("code_o", "proposer", "badfmt")].info["valid"]          # valid, but -1
    for task in azr.TASKS:
        got = [by[(task, "solver", j)].reward for j in range(3)]
        assert got == [1.0, -0.5, -1.0], (task, got)
        assert all(by[(task, "solver", j)].bucket == f"{task}/solver" for j in range(3))
    assert len({ep.bucket for ep in episodes}) == 6

    # Learnability: one nested call, on the solver role, 8 samples at temperature 1, for each
    # valid proposal (badfmt included: it is valid).
    (call,) = sampler.calls
    assert call["role"] == "solver" and call["n"] == 8
    assert call["sampling"].temperature == 1.0
    assert len(call["prompts"]) == 8

    # Buffers: every valid proposal appended, tagged with the step; the seed entry stays first.
    buf, tags = new_state["buffers"], new_state["step_added"]
    assert [e["snippet"] for e in buf["output"]] == [IDENTITY, P_HARD[0], P_EASY[0], P_NEVER[0],
                                                     P_BADFMT[0]]
    assert tags["output"] == [-1, 3, 3, 3, 3]
    assert buf["output"][1]["output"] == "[3, 2, 1]"
    assert buf["input"][2]["snippet"].startswith("def f(n)") and buf["input"][2]["output"] == "55"
    assert tags["input"] == [-1, 3, 3]
    assert [e["message"] for e in buf["problem"][1:]] == ["M-one", "M-twelve"]
    assert buf["problem"][2]["inputs"] == [str(i) for i in range(102, 112)]
    assert state["buffers"]["output"] == [azr.seed_triplet()]     # the input state is untouched
    assert json.loads(json.dumps(new_state)) == new_state           # plain JSON data

    assert metrics["proposer/valid_rate/code_o"] == pytest.approx(4 / 7)
    assert metrics["proposer/valid_rate/code_f"] == pytest.approx(2 / 5)
    assert metrics["solver/solve_rate"] == pytest.approx(1 / 3)
    assert metrics["solver/solve_rate/code_i"] == pytest.approx(1 / 3)
    assert metrics["buffer/code_o"] == 5.0 and metrics["buffer/code_f"] == 3.0
    assert metrics["buffer/added/code_i"] == 2.0
    assert metrics["proposer/learnability_mean/code_o"] == pytest.approx((5 / 8 + 0 + 0 + 0.5) / 4)
    assert metrics["solver/format_error_rate"] == pytest.approx(1 / 3)
    assert all(isinstance(v, float) for v in metrics.values())
    assert "verify" in timer.stages

    # Pool use: one thread at a time; the solver checks ran in the background thread while the
    # nested sampling ran, the proposal checks before it and the learnability checks after it.
    calls = sorted(rec.calls, key=lambda c: c[1])
    for a, b in zip(calls, calls[1:]):
        assert a[2] <= b[1], "two threads used the sandbox pool at once"
    background = [c for c in calls if c[0].startswith("azr-verify")]
    assert background and all(c[0] == threading.main_thread().name or c in background
                              for c in calls)
    assert background[0][2] <= call["t1"]                  # overlapped with the sampling
    main = [c for c in calls if c not in background]
    assert all(c[0] == threading.main_thread().name for c in main)
    before = [c for c in main if c[2] <= background[0][1]]      # proposal validation
    after = [c for c in main if c[1] >= max(call["t1"], background[-1][2])]  # after the join
    assert before and after and len(before) + len(after) == len(main)
    assert elapsed < 30


def test_requests_then_score_round_trip(pool):
    """requests() -> scripted completions -> score(): shapes, buckets, state grows."""
    game = azr.AZRGame(settings(batch_per_task_role=2), pool=pool)
    state = identity_state()

    def policy(role, prompt, i):
        if "deduce the output from the input" in prompt:
            return proposal("def f(x):\n    return x - 1", "5")
        if "deduce one possible input" in prompt:
            return proposal("def f(x):\n    return [x, x]", "'k'")
        if "inputs for the snippet below" in prompt:
            return induction(F_OK, "copies")
        if "# Task: predict what the code below returns" in prompt:
            return fmt("```output\n'Hello world'\n```")
        return fmt("```input\n'nope'\n```")

    sampler = FakeSampler(policy)
    ctx = ctx_for(sampler, step=0)
    reqs = game.requests("play", state, ctx)
    rolls = sampler("proposer", [r.prompt for r in reqs], 1)
    sampler.calls.clear()
    new_state, episodes, metrics = game.score("play", reqs, rolls, state, ctx)
    assert len(episodes) == 12
    assert {e.bucket for e in episodes} == {f"{t}/{r}" for t in azr.TASKS
                                           for r in ("proposer", "solver")}
    assert metrics["buffer/code_o"] == 3.0 and metrics["buffer/code_f"] == 3.0
    assert new_state["step_added"]["output"] == [-1, 0, 0]
    ded = [e for e in episodes if e.bucket == "code_o/solver"]
    assert [e.reward for e in ded] == [1.0, 1.0]
    # The learnability samples all answer "'nope'" / the seed's output: solve rate 0 or 1 -> -0.5.
    assert all(e.reward == -0.5 for e in episodes if e.role == "proposer")
    assert sampler.calls[0]["n"] == 8


# -- seeding --------------------------------------------------------------------------------------

def test_init_state_seeding(pool):
    game = azr.AZRGame(settings(batch_per_task_role=3, seed_size=4, seed_max_rounds=3), pool=pool)
    programs = iter([("def f(x):\n    return x + 1", "1"), ("def f(x):\n    return x + 1", "1"),
                     ("bad", "1"), ("def f(x):\n    return -x", "3"),
                     ("def f(x):\n    return x * x", "3"), ("def f(x):\n    return [x]", "3")]
                    + [("def f(x):\n    return 0", "1")] * 20)
    # Seeding reads the raw completion: no <think>/<answer> needed.
    raw = lambda c, i: f"```python\n{c}\n```\n```input\n{i}\n```"   # noqa: E731

    def policy(role, prompt, i):
        assert role == "proposer"
        if "inputs for the snippet below" in prompt:
            return "\n".join(f"```input\n{x}\n```" for x in F_OK) + "\n```message\nhi\n```"
        return raw(*next(programs))

    sampler = FakeSampler(policy)
    state = game.init_state(ctx_for(sampler, step=0))
    seed = state["buffers"]["input"]
    assert seed == state["buffers"]["output"] and len(seed) == 4
    assert seed[0] == azr.seed_triplet()
    assert [e["output"] for e in seed[1:]] == ["2", "-3", "9"]      # deduplicated, capped
    assert state["step_added"]["input"] == [-1] * 4
    assert state["seed"]["triplet_rounds"] == 1
    problems = state["buffers"]["problem"]
    assert len(problems) == 4 and problems[0] == azr.seed_problem()
    assert problems[0]["n_shown"] == 3 and problems[1]["n_shown"] == 5
    assert all(c["sampling"].temperature is None for c in sampler.calls)  # configured sampling
    json.dumps(state)

    # A model that never proposes a valid program: seeding stops after seed_max_rounds.
    sampler = FakeSampler(lambda role, prompt, i: "nothing useful")
    state = game.init_state(ctx_for(sampler, step=5))
    assert state["buffers"]["input"] == [azr.seed_triplet()]
    assert state["buffers"]["problem"] == [azr.seed_problem()]
    assert state["seed"] == {"triplets": 1, "triplet_rounds": 3, "problems": 1,
                             "problem_rounds": 3}
    assert state["step_added"]["output"] == [4]
    assert len(sampler.calls) == 6
