"""Co-rewarding-I's model-made rephrasings (game.rephrasings="generate"): the reply parser on
hand-written replies, the cache in the run folder (made once before training, reused on resume,
never remade), the pairs built from it, strict settings, and the tiny config with generation on
the random model."""
import importlib.util
import json
import os

import numpy as np
import pytest

from zeroplay import loop, runconfig
from zeroplay.data import parse_rephrasing, read_rephrasings, rephrase_prompt, write_rephrasings
from zeroplay.data.rephrase import REPHRASE_INSTRUCTION
from zeroplay.games import co_rewarding_i, make_game
from zeroplay.games.base import Completion, Context

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(arg=None):
    spec = importlib.util.spec_from_file_location("cfg_cri", os.path.join(ROOT, "configs", "co_rewarding_i.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def marked(rewrite: str, original: str = "...") -> str:
    return f"### RESULT_START\nORIGINAL:\n{original}\nREWRITE:\n{rewrite}\n### RESULT_END"


def rewrite_of(question: str) -> str:
    return f"In a shop, {question.strip()} (same numbers)"


# -- the parser ------------------------------------------------------------------------------------

def test_parser_on_hand_written_replies():
    assert parse_rephrasing(marked("A baker has 2 buns and bakes 3 more.", "What is 2+3?")) == \
        "A baker has 2 buns and bakes 3 more."
    # Think blocks go first, also a lone closing tag whose opening was in the prompt.
    assert parse_rephrasing("<think>REWRITE: not this</think>\n" + marked("Real one?")) == "Real one?"
    assert parse_rephrasing("let me see... REWRITE: no</think>" + marked("After thinking?")) == "After thinking?"
    # Labels small models write instead of the markers; quotes and bold marks are stripped.
    assert parse_rephrasing('Rephrased question: "How many apples are left?"') == "How many apples are left?"
    assert parse_rephrasing("Sure.\nRewritten question:\n**Find x if x + 1 = 3.**") == "Find x if x + 1 = 3."
    assert parse_rephrasing("REWRITE: \u201cWhat is 7 - 2?\u201d\n### RESULT_END") == "What is 7 - 2?"
    # A multi-line rewrite stays whole.
    assert parse_rephrasing(marked("Line one.\nLine two?")) == "Line one.\nLine two?"
    # No rewrite: empty, unclosed think, cut off before the end marker, no label, empty label.
    for reply in ("", "   ", "<think>still thinking", "### RESULT_START\nORIGINAL: q\nREWRITE: cut off",
                  "Sure! Here is a different problem: 3 + 4.", marked("   "), marked('""'),
                  "### RESULT_START\nORIGINAL: q\n### RESULT_END"):
        assert parse_rephrasing(reply) is None, reply


def test_prompt_is_the_papers_instruction_then_the_question():
    p = rephrase_prompt("  What is 2 + 3?\n")
    assert p == REPHRASE_INSTRUCTION + "\nWhat is 2 + 3?"
    for phrase in ("different real-world scenario", "answer exactly the same", "### RESULT_START", "REWRITE:",
                   "### RESULT_END"):
        assert phrase in REPHRASE_INSTRUCTION


def test_cache_file_round_trip_is_atomic(tmp_path):
    path = str(tmp_path / "run" / "rephrasings.jsonl")
    entries = [{"question": "q1", "rephrasing": "r1", "fallback": False},
               {"question": "q\u00e9 2\nline", "rephrasing": "q\u00e9 2\nline", "fallback": True}]
    write_rephrasings(path, entries)
    assert read_rephrasings(path) == {e["question"]: e for e in entries}
    assert os.listdir(tmp_path / "run") == ["rephrasings.jsonl"]  # no temporary file left
    assert read_rephrasings(str(tmp_path / "absent.jsonl")) == {}
    (tmp_path / "bad.jsonl").write_text('{"question": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_rephrasings(str(tmp_path / "bad.jsonl"))


# -- the game with a stand-in sampler --------------------------------------------------------------

class Rephraser:
    """ctx.sample double: the rephraser rewrites (or, for questions in `junk`, babbles); every call
    is recorded."""

    def __init__(self, junk=()):
        self.junk = set(junk)
        self.calls = []

    def __call__(self, role, prompts, n=1, sampling=None):
        self.calls.append((role, len(prompts), sampling))
        out = []
        for p in prompts:
            q = bytes(p).decode().split(REPHRASE_INSTRUCTION + "\n", 1)[1]
            text = "no markers at all" if q in self.junk else marked(rewrite_of(q), q)
            out.append([Completion(tokens=[1] * n, logprobs=np.zeros(1, np.float32), text=text, finished=True)
                        for _ in range(n)])
        return out


def ctx_with(sample, workdir=None):
    return Context(sample=sample, encode=lambda s: list(s.encode()), decode=lambda t: bytes(t).decode(),
                   rng=np.random.default_rng(0), step=0, workdir=workdir)


def _game(**kw):
    s = dict(source="rg:basic_arithmetic", size=6, questions_per_step=3, samples=2, rephrasings="generate",
             rephrase_max_new_tokens=64)
    return make_game("co_rewarding_i", {**s, **kw})


def test_settings_are_strict_and_the_rephraser_never_trains():
    for bad in (dict(rephrasings="model"), dict(rephrasings="generate", rephrase_max_new_tokens=0),
                dict(rephrase_top_p=0.0), dict(rephrase_temperature=-1.0)):
        with pytest.raises(ValueError, match=r"game\.rephras") as e:
            make_game("co_rewarding_i", bad)
        assert "\n" not in str(e.value)
    assert make_game("co_rewarding_i", {}).roles == ("solver",)
    g = _game()
    assert g.roles == ("solver", "rephraser")
    assert g.trains(1, {}) == ("solver",) and g.trains(1) == ("solver",)


def test_generated_once_cached_and_used_by_the_pairs(tmp_path):
    game = _game()
    questions = [q.text for q in game.stream.questions]
    sample = Rephraser(junk=questions[:1])
    ctx = ctx_with(sample, str(tmp_path))
    state = game.init_state(ctx)
    # One call for every question of the source, with the paper's sampling and the configured cap.
    assert [(r, n) for r, n, _ in sample.calls] == [("rephraser", len(questions))]
    s = sample.calls[0][2]
    assert (s.temperature, s.top_p, s.max_new_tokens) == (0.7, 0.8, 64)
    cache = read_rephrasings(str(tmp_path / co_rewarding_i.CACHE_FILE))
    assert set(cache) == set(questions)
    assert cache[questions[0]] == {"question": questions[0], "rephrasing": questions[0], "fallback": True}
    for q in questions[1:]:
        assert cache[q] == {"question": q, "rephrasing": rewrite_of(q), "fallback": False}
    # The pairs: x and the cached x' (the fallback pairs x with itself); the rephraser is not asked again.
    reqs = game.requests("play", state, ctx)
    assert [r.role for r in reqs] == ["solver"] * 6 and len(sample.calls) == 1
    for orig, reph in zip(reqs[::2], reqs[1::2]):
        q = bytes(orig.prompt).decode().split("\n" + game.s.prompt_suffix)[0]
        assert bytes(reph.prompt).decode() == cache[q]["rephrasing"] + "\n" + game.s.prompt_suffix
    comps = [[Completion([1], np.zeros(1, np.float32), "\\boxed{1}", True)] * 2] * 6
    _, eps, m = game.score("play", reqs, comps, state, ctx)
    fell = [cache[bytes(r.prompt).decode().split("\n" + game.s.prompt_suffix)[0]]["fallback"] for r in reqs[::2]]
    assert m["rephrase/fallback_rate"] == pytest.approx(np.mean(fell))
    assert all(e.role == "solver" for e in eps)

    # A later game in the same folder reads the file and never calls the rephraser.
    again, sample2 = _game(), Rephraser()
    again.requests("play", again.init_state(ctx_with(sample2, str(tmp_path))), ctx_with(sample2, str(tmp_path)))
    assert sample2.calls == []
    # A question missing from the file (the source grew) is rephrased alone; present ones stay.
    bigger, sample3 = _game(size=7), Rephraser()
    bigger.init_state(ctx_with(sample3, str(tmp_path)))
    assert [(r, n) for r, n, _ in sample3.calls] == [("rephraser", 1)]
    cache2 = read_rephrasings(str(tmp_path / co_rewarding_i.CACHE_FILE))
    assert len(cache2) == 7 and all(cache2[q] == cache[q] for q in questions)


def test_without_a_workdir_the_rephrasings_stay_in_memory(tmp_path):
    game, sample = _game(), Rephraser()
    ctx = ctx_with(sample)
    state = game.init_state(ctx)
    game.requests("play", state, ctx)
    assert len(sample.calls) == 1 and not os.listdir(tmp_path)


# -- through the loop ------------------------------------------------------------------------------

class LoopDouble:
    """sample_fn for loop.run on the byte tokenizer: the rephraser rewrites, the solver answers 1."""

    def __init__(self):
        from zeroplay.models.byte_tokenizer import byte_tokenizer

        self.tok = byte_tokenizer()
        self.calls = []

    def __call__(self, role, prompts, n=1, sampling=None):
        texts = [self.tok.decode(list(p), skip_special_tokens=True) for p in prompts]
        self.calls.append((role, texts))
        out = []
        for t in texts:
            reply = marked(rewrite_of(t.rsplit("\n", 1)[-1])) if role == "rephraser" else "so \\boxed{1}"
            ids = self.tok.encode(reply, add_special_tokens=False) + [self.tok.eos_token_id]
            out.append([Completion(ids, np.full(len(ids), -1.0, np.float32), reply, True) for _ in range(n)])
        return out


def _tiny(arg="tiny,generate", steps=2):
    c = load(arg)
    c.mesh.fsdp = 1
    c.steps = steps
    return runconfig.parse(c)


def test_loop_generates_the_cache_once_and_a_resumed_run_reuses_it(tmp_path):
    workdir = str(tmp_path / "run")
    double = LoopDouble()
    rows = loop.run(_tiny(steps=2), workdir, sample_fn=double, log=lambda s: None)
    assert [r["step"] for r in rows] == [1, 2]
    reph_calls = [c for c in double.calls if c[0] == "rephraser"]
    assert len(reph_calls) == 1 and len(reph_calls[0][1]) == 16  # every question of the tiny source, once
    assert double.calls[0][0] == "rephraser"  # before any solver sample, hence before the first update
    path = os.path.join(workdir, co_rewarding_i.CACHE_FILE)
    with open(path) as f:
        first = f.read()
    cache = {e["question"]: e for e in map(json.loads, first.splitlines())}
    assert len(cache) == 16 and not any(e["fallback"] for e in cache.values())
    for r in rows:
        assert r["rephrase/fallback_rate"] == 0.0 and r["policy/trained"] == 1.0 and r["rephraser/episodes"] == 0.0
    # The solver's groups: each question and its cached rephrasing, nothing else.
    solver = [t.rsplit("\n", 1)[0] for role, texts in double.calls if role == "solver" for t in texts]
    origs, rephs = solver[0::2], solver[1::2]
    assert len(solver) == 2 * 2 * 2  # 2 steps x 2 questions x (x, x')
    assert [cache[q]["rephrasing"] for q in origs] == rephs

    again = LoopDouble()
    rows2 = loop.run(_tiny(steps=3), workdir, sample_fn=again, log=lambda s: None)
    assert [r["step"] for r in rows2] == [3]
    assert [c[0] for c in again.calls] == ["solver"] and rows2[0]["rephrase/fallback_rate"] == 0.0
    with open(path) as f:
        assert f.read() == first
    solver = [t.rsplit("\n", 1)[0] for t in again.calls[0][1]]
    assert [cache[q]["rephrasing"] for q in solver[0::2]] == solver[1::2]


def test_tiny_config_generates_with_the_random_model(tmp_path):
    """configs/co_rewarding_i.py:tiny,generate_separate on the real sampler: a random rephraser
    policy of its own writes no parsable rewrite, so every question falls back to itself; the
    rephraser's policy never trains."""
    workdir = str(tmp_path / "run")
    cfg = _tiny("tiny,generate_separate", steps=1)
    assert cfg.roles == {"solver": "policy", "rephraser": "rephraser"}
    rows = loop.run(cfg, workdir, log=lambda s: None)
    assert [r["step"] for r in rows] == [1]
    cache = read_rephrasings(os.path.join(workdir, co_rewarding_i.CACHE_FILE))
    assert len(cache) == 16
    for e in cache.values():
        assert e["rephrasing"] == e["question"] or not e["fallback"]
    r = rows[0]
    assert 0.0 <= r["rephrase/fallback_rate"] <= 1.0
    assert r["policy/trained"] == 1.0 and r["rephraser/trained"] == 0.0 and np.isfinite(r["policy/loss"])
