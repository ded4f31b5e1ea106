"""Label-free games (Co-rewarding I / II, TTRL, RENT, Intuitor) and their question sources:
rewards on hand-computed cases, the EMA schedule, the EMA teacher against a NumPy recurrence,
2-step tiny runs of every game, resume after SIGKILL, and the full-size configs."""
import dataclasses
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from zeroplay import loop, runconfig
from zeroplay.checkpoint import Checkpointer
from zeroplay.data import load_questions, procedural_rephrasing
from zeroplay.games import co_rewarding, co_rewarding_i, intuitor, label_free as lf, make_game, rent, ttrl
from zeroplay.games.base import Completion, Context
from zeroplay.models import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAMES = ("co_rewarding_i", "co_rewarding_ii", "ttrl", "rent", "intuitor")


def load(name, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(ROOT, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def comp(text, n=3, entropy=None, sc=None):
    return Completion(tokens=list(range(n)), logprobs=np.zeros(n, np.float32), text=text, finished=True,
                      entropy=entropy, self_certainty=sc)


def fake_ctx(seed=0):
    return Context(sample=None, encode=lambda s: list(s.encode()), decode=lambda t: bytes(t).decode(),
                   rng=np.random.default_rng(seed), step=1)


# -- answers, majority and rewards on hand-computed cases --------------------------------------

def test_answer_extraction_and_majority():
    assert lf.answer_of("so \\boxed{3} then \\boxed{ 4 }") == "4"
    assert lf.answer_of("no box here") is None
    assert lf.answer_of("\\boxed{}") is None and lf.answer_of("\\boxed{  }") is None
    assert lf.majority(["1", "2", "2", None, "1", "2"]) == ("2", 3, 5)
    assert lf.majority(["2", "1", "1", "2"]) == ("2", 2, 4)  # tie: the first seen wins
    assert lf.majority([None, "5", None]) == ("5", 1, 1)  # empties never vote
    assert lf.majority([None, None]) == (None, 0, 0)  # every answer empty: no label
    assert lf.majority(["1/2", "0.5"]) == ("1/2", 1, 2)  # exact strings, no equivalence
    assert lf.match_rewards(["2", None, "3"], "2") == [1.0, 0.0, 0.0]
    assert lf.match_rewards([None, None], None) == [0.0, 0.0]


def test_answer_rule_boxed_or_number():
    rule = "boxed_or_number"
    assert lf.answer_of("5 - 3 = 2\nSo, the answer is 2.", rule) == "2"  # no box: the last number
    assert lf.answer_of("1,234 apples", rule) == "1234"
    assert lf.answer_of("first \\boxed{7}, later 9", rule) == "7"  # a box wins over later numbers
    assert lf.answer_of("\\boxed{} and then 4", rule) == "4"  # an empty box is no answer
    assert lf.answer_of("no digits at all", rule) is None and lf.answer_of("", rule) is None
    assert lf.answer_of("So, the answer is 2.") is None  # the references' rule: boxes only
    with pytest.raises(ValueError, match="game.answer"):
        ttrl.Settings(answer="first_number")
    # The SmolLM2 variants use it (the model rarely boxes); tiny and full-size keep the references'.
    assert load("ttrl").game.answer == "boxed_or_number"
    assert runconfig.parse(load("ttrl", "tiny")).game.answer == "boxed"


def test_excluded_evaluation_questions_never_train():
    held_out = ("rg:basic_arithmetic:min_terms=2:max_terms=2:min_digits=1:max_digits=1:operators=('+','-')"
                ":allow_parentheses=False:allow_negation=False")
    opts = dict(lf.EASY_ARITHMETIC)
    base = lf.CommonSettings(source="rg:basic_arithmetic", size=300, data_seed=1, source_options=opts)
    kept = lf.QuestionStream(dataclasses.replace(base, exclude=held_out, exclude_limit=50)).questions
    evaluated = lf.excluded_texts([held_out], 50)
    everything = lf.QuestionStream(base).questions
    assert evaluated and len(kept) < len(everything)  # one-digit sums repeat: the sets overlap
    assert not {" ".join(q.text.lower().split()) for q in kept} & evaluated
    assert len(kept) == sum(" ".join(q.text.lower().split()) not in evaluated for q in everything)


def test_co_rewarding_i_cross_rewards():
    r, r2, y, y2 = co_rewarding_i.cross_rewards(["4", "4", "5", None], ["5", "5", "4", "5"])
    assert (y, y2) == ("4", "5")
    assert r == [0.0, 0.0, 1.0, 0.0]  # x's rollouts against x''s majority 5
    assert r2 == [0.0, 0.0, 1.0, 0.0]  # x''s rollouts against x's majority 4
    # A rephrased group where every answer is empty: no label, so x's rollouts all get 0.
    r, r2, y, y2 = co_rewarding_i.cross_rewards(["4", "4"], [None, None])
    assert (r, r2, y, y2) == ([0.0, 0.0], [0.0, 0.0], "4", None)
    # A tie in x' goes to its first-seen answer.
    r, _, _, y2 = co_rewarding_i.cross_rewards(["7", "8"], ["8", "7"])
    assert y2 == "8" and r == [0.0, 1.0]


def test_ttrl_vote_rewards():
    assert ttrl.vote_rewards(["3", "3", "4", None]) == ([1.0, 1.0, 0.0, 0.0], "3")
    assert ttrl.vote_rewards([None, None, None]) == ([0.0, 0.0, 0.0], None)


def test_rent_and_intuitor_rewards_by_hand():
    assert rent.reward(np.array([1.0, 2.0, 3.0], np.float32)) == pytest.approx(-2.0)
    assert intuitor.reward(np.array([0.5, 1.5], np.float32)) == pytest.approx(1.0)
    assert rent.reward(np.zeros(0, np.float32)) == 0.0 and intuitor.reward(np.zeros(0, np.float32)) == 0.0


def test_ema_rate_schedule():
    assert co_rewarding.ema_rate(0, 100, 0.01, 1e-5) == pytest.approx(0.01, abs=1e-12)
    assert co_rewarding.ema_rate(50, 100, 0.01, 1e-5) == pytest.approx((0.01 + 1e-5) / 2, abs=1e-12)
    assert co_rewarding.ema_rate(100, 100, 0.01, 1e-5) == pytest.approx(1e-5, abs=1e-12)
    from zeroplay.rl import ema_rate as jnp_rate
    for k in (0, 13, 50, 99, 100):
        assert float(jnp_rate(k, 100, 0.01, 1e-4)) == pytest.approx(co_rewarding.ema_rate(k, 100, 0.01, 1e-4),
                                                                    rel=1e-5)


# -- scoring with a stand-in sampler ------------------------------------------------------------

def _game(name, **kw):
    return make_game(name, dict(source="rg:basic_arithmetic", size=8, questions_per_step=2, samples=3, **kw))


def test_co_rewarding_ii_score_labels_from_the_teacher_and_truth_is_only_reported():
    game = _game("co_rewarding_ii", teacher_samples=3)
    ctx = fake_ctx()
    state = game.init_state(ctx)
    reqs = game.requests("play", state, ctx)
    assert [r.role for r in reqs] == ["teacher", "solver"] * 2
    truth = [r.meta["truth"] for r in reqs[::2]]
    teacher = [[comp(f"\\boxed{{{truth[0]}}}"), comp(f"\\boxed{{{truth[0]}}}"), comp("x")],
               [comp("no answer")] * 3]  # question 1: every teacher answer empty
    solver = [[comp(f"\\boxed{{{truth[0]}}}"), comp("\\boxed{999}"), comp("nothing")],
              [comp("\\boxed{1}"), comp("\\boxed{1}"), comp("\\boxed{2}")]]
    new_state, eps, m = game.score("play", reqs, [teacher[0], solver[0], teacher[1], solver[1]], state, ctx)
    assert [e.reward for e in eps] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert all(e.role == "solver" for e in eps) and len({e.bucket for e in eps}) == 2
    assert m["teacher/label_rate"] == 0.5 and m["solver/label_accuracy"] == 0.5
    assert new_state["questions"] == {"epoch": 0, "cursor": 2}
    # The truth never changes a reward: the same rollouts with other "truths" score the same.
    for r in reqs:
        r.meta["truth"] = "123456"
    _, eps2, m2 = game.score("play", reqs, [teacher[0], solver[0], teacher[1], solver[1]], state, ctx)
    assert [e.reward for e in eps2] == [e.reward for e in eps] and m2["solver/label_accuracy"] == 0.0


def test_co_rewarding_i_pairs_question_and_rephrasing():
    game = _game("co_rewarding_i")
    ctx = fake_ctx()
    reqs = game.requests("play", game.init_state(ctx), ctx)
    assert [r.meta["kind"] for r in reqs] == ["orig", "reph"] * 2
    assert reqs[0].prompt != reqs[1].prompt
    rolls = [[comp("\\boxed{4}")] * 3, [comp("\\boxed{4}"), comp("\\boxed{5}"), comp("none")],
             [comp("none")] * 3, [comp("\\boxed{1}")] * 3]
    _, eps, m = game.score("play", reqs, rolls, game.init_state(ctx), ctx)
    assert [e.reward for e in eps] == [1, 1, 1, 1, 0, 0] + [0, 0, 0, 0, 0, 0]
    assert {e.bucket for e in eps} == {"q0/orig", "q0/reph", "q1/orig", "q1/reph"}
    assert m["solver/cross_label_agreement"] == 0.5


def test_ttrl_trains_on_a_subset_of_the_votes():
    game = _game("ttrl", votes=4, train_samples=2)
    ctx = fake_ctx()
    reqs = game.requests("play", game.init_state(ctx), ctx)
    assert all(r.n == 4 for r in reqs)
    rolls = [[comp("\\boxed{3}"), comp("\\boxed{3}"), comp("\\boxed{4}"), comp("")]] * 2
    _, eps, m = game.score("play", reqs, rolls, game.init_state(ctx), ctx)
    assert len(eps) == 4 and all(e.info["label"] == "3" for e in eps)
    assert all(e.reward == (1.0 if e.info["answer"] == "3" else 0.0) for e in eps)
    assert m["solver/majority_agreement"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("name", ["rent", "intuitor"])
def test_token_reward_games_score_from_sampler_stats(name):
    game = _game(name)
    ent = [np.array([1.0, 3.0], np.float32), np.array([0.5], np.float32), np.array([2.0, 2.0, 2.0], np.float32)]
    seen = []

    def sample(role, prompts, n, sampling):
        seen.append(sampling)
        return [[comp("no box", len(e), entropy=e, sc=e + 1) for e in ent] for _ in prompts]

    ctx = dataclasses.replace(fake_ctx(), sample=sample)
    assert game.requests("play", game.init_state(ctx), ctx) == []
    _, eps, m = game.score("play", [], [], game.init_state(ctx), ctx)
    assert seen[0].token_stats
    want = [-2.0, -0.5, -2.0] if name == "rent" else [3.0, 1.5, 3.0]
    assert [e.reward for e in eps] == pytest.approx(want * 2)  # no boxed answer: still the method's reward


# -- question sources ---------------------------------------------------------------------------

def test_question_sources(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps({"problem": f"q{i}", "answer": i, **({"rephrasing": "r"} if i == 2 else {})})
                              for i in range(6)))
    a = load_questions(f"jsonl:{path}", size=4, seed=3)
    assert len(a) == 4 and a == load_questions(f"jsonl:{path}", size=4, seed=3)
    assert {q.text for q in load_questions(f"jsonl:{path}", size=0, seed=0)} == {f"q{i}" for i in range(6)}
    b = load_questions(f"tfds:{path}", size=4, seed=3)  # the TFDS builder over the same file
    assert [(q.text, q.answer, q.rephrasing) for q in b] == [(q.text, q.answer, q.rephrasing) for q in a]
    assert os.path.exists(str(path) + ".tfds")
    rg = load_questions("rg:basic_arithmetic", size=5, seed=1, options={"max_terms": 2})
    assert len(rg) == 5 and all(q.answer is not None and q.rephrasing for q in rg)
    assert rg == load_questions("rg:basic_arithmetic", size=5, seed=1, options={"max_terms": 2})
    assert procedural_rephrasing("Calculate 1 + 2.", {"expression": "1 + 2"}, "k").count("1 + 2") == 1
    shared = os.path.join(ROOT, "..", "shared", "data", "amc23", "test.jsonl")
    if os.path.exists(shared):
        with pytest.raises(ValueError, match="benchmark"):
            load_questions(f"jsonl:{shared}", size=2, seed=0)
        assert len(load_questions(f"jsonl:{shared}", size=2, seed=0, test_time=True)) == 2
    with pytest.raises(ValueError, match="rg:<task>"):
        load_questions("basic_arithmetic", size=2, seed=0)


def test_question_stream_walks_epochs_deterministically():
    s = lf.CommonSettings(size=3)
    stream = lf.QuestionStream(s)
    qs, cur = stream.take({"epoch": 0, "cursor": 0}, 5)
    assert cur == {"epoch": 1, "cursor": 2} and len({q.id for q in qs[:3]}) == 3
    assert lf.QuestionStream(s).take({"epoch": 0, "cursor": 0}, 5)[0] == qs


# -- tiny runs through the loop -----------------------------------------------------------------

def _tiny(name):
    c = load(name, "tiny")
    c.mesh.fsdp = 1  # one device of the 8 simulated ones (the fused CPU decode where it builds)
    if name == "co_rewarding_ii":  # every update moves the params, so the EMA teacher is not trivial
        c.policies.policy.train.entropy_coef = 0.01
    return c


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return {}


def _run(tiny_runs, tmp_path_factory, name):
    if name not in tiny_runs:
        workdir = str(tmp_path_factory.mktemp(name))
        cfg = runconfig.parse(_tiny(name))
        t0 = time.perf_counter()
        rows = loop.run(cfg, workdir, log=lambda s: None)
        tiny_runs[name] = (cfg, workdir, rows, time.perf_counter() - t0)
    return tiny_runs[name]


@pytest.mark.parametrize("name", GAMES)
def test_tiny_config_runs_two_steps(name, tiny_runs, tmp_path_factory):
    cfg, workdir, rows, seconds = _run(tiny_runs, tmp_path_factory, name)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("solver/reward_mean", "solver/majority_agreement", "solver/label_accuracy",
                    "solver/response_length", "solver/entropy", "policy/kl", "policy/trained"):
            assert key in r, key
        assert r["policy/trained"] == 1.0 and np.isfinite(r["policy/loss"])
        # The random byte model writes no boxed answer: the method's own reward, no crash.
        assert r["solver/answer_rate"] == 0.0
        if name in ("rent", "intuitor"):
            stat = r["solver/token_entropy" if name == "rent" else "solver/token_self_certainty"]
            assert r["solver/reward_mean"] == pytest.approx(-stat if name == "rent" else stat, rel=1e-5)
        else:
            assert r["solver/reward_mean"] == 0.0
    if name == "co_rewarding_ii":
        assert rows[0]["teacher/episodes"] == 0.0 and "policy/ema_rate" in rows[0]


def _flat(tree, strip=""):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, v in flat:
        k = jax.tree_util.keystr(path)
        if k.startswith(strip):
            out[k[len(strip):]] = np.asarray(v)
    return out


def _saved(workdir, step, names):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    trees, _ = ckpt.restore(step, names=names)
    ckpt.close()
    return trees


def test_ema_teacher_follows_the_numpy_recurrence(tiny_runs, tmp_path_factory):
    """T_0 = P_0; before sampling at step s: T_s = (1 - a_{s-1}) T_{s-1} + a_{s-1} P_{s-1}, P_{s-1} the
    params at the start of step s (after step s-1's update), a_k = ema_rate(k, steps, start, end)."""
    cfg, workdir, rows, _ = _run(tiny_runs, tmp_path_factory, "co_rewarding_ii")
    spec = cfg.policies["policy"].teacher
    p0 = _flat(loop.build_policies(cfg, loop.run_mesh(cfg))["policy"].state.params)
    p1 = _flat(_saved(workdir, 1, ["policy/policy"])["policy/policy"], "['params']")
    t2 = _flat(_saved(workdir, 2, ["teacher/policy"])["teacher/policy"])
    assert p0.keys() == p1.keys() == t2.keys()
    a = [np.float32(co_rewarding.ema_rate(k, cfg.steps, spec.ema_start, spec.ema_end)) for k in range(2)]
    assert rows[0]["policy/ema_rate"] == pytest.approx(a[0]) and rows[1]["policy/ema_rate"] == pytest.approx(a[1])
    moved = 0.0
    for k in p0:
        t = (1 - a[0]) * p0[k] + a[0] * p0[k]
        t = (1 - a[1]) * t + a[1] * p1[k]
        np.testing.assert_allclose(t2[k], t, rtol=0, atol=1e-6, err_msg=k)  # float32 rounding only
        moved = max(moved, float(np.abs(p1[k] - p0[k]).max()))
    assert moved > 1e-4  # the policy moved, so the recurrence is not the identity


# -- resume after SIGKILL -------------------------------------------------------------------------

def _cli(workdir, *, kill_after_row=None):
    env = dict(os.environ, XLA_FLAGS="")
    cmd = [sys.executable, "-m", "zeroplay.train", "--config", "configs/co_rewarding_ii.py:tiny", "--workdir",
           workdir, "--config.steps=2", "--config.policies.policy.train.entropy_coef=0.01"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_after_row is not None:
        deadline = time.time() + 600
        ckpt = os.path.join(workdir, "checkpoints", str(kill_after_row))
        metrics = os.path.join(workdir, "metrics.jsonl")
        while time.time() < deadline and proc.poll() is None and not (
                os.path.isdir(ckpt) and os.path.exists(metrics) and len(open(metrics).readlines()) >= kill_after_row):
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


@pytest.mark.slow  # two CLI runs: about 2.5 minutes on the 2-core CPU
def test_resume_after_sigkill_restores_the_teacher(tmp_path):
    workdir = str(tmp_path / "run")
    rc, out = _cli(workdir, kill_after_row=1)
    assert rc == -signal.SIGKILL, out
    rc, out = _cli(workdir)
    assert rc == 0, out
    assert "resumed from step 1" in out
    saved1 = _saved(workdir, 1, ["policy/policy", "teacher/policy"])
    p1, t1 = _flat(saved1["policy/policy"], "['params']"), _flat(saved1["teacher/policy"])
    t2 = _flat(_saved(workdir, 2, ["teacher/policy"])["teacher/policy"])
    cfg = runconfig.parse(load("co_rewarding_ii", "tiny"))
    spec = cfg.policies["policy"].teacher
    a1 = np.float32(co_rewarding.ema_rate(1, 2, spec.ema_start, spec.ema_end))
    moved = 0.0
    for k in t2:  # the restored T_1, not the policy, is what step 2 averaged
        np.testing.assert_allclose(t2[k], (1 - a1) * t1[k] + a1 * p1[k], rtol=0, atol=1e-6, err_msg=k)
        moved = max(moved, float(np.abs(t1[k] - p1[k]).max()))
    assert moved > 1e-4


# -- configs ----------------------------------------------------------------------------------------

def test_default_and_tiny_configs_parse():
    for name in GAMES:
        for arg in (None, "tiny"):
            cfg = runconfig.parse(load(name, arg))
            assert cfg.game_name == name and cfg.policies["policy"].train.total_steps == cfg.steps
        assert runconfig.parse(load(name, "tiny")).policies["policy"].model.tokenizer == "byte"
    assert runconfig.parse(load("co_rewarding_ii")).roles == {"solver": "policy", "teacher": "policy@teacher"}
    with pytest.raises(ValueError):
        load("rent", "nope")


FULL = [(g, f"{m}-{w}") for g in GAMES for m in lf.FULL_SIZE for w in lf.MESHES]
PARAMS = {"qwen3-8b-base": 8.2e9, "qwen3-4b-base": 4.0e9, "qwen2.5-7b": 7.6e9}


@pytest.mark.parametrize("name,variant", FULL)
def test_full_size_variants_are_consistent(name, variant):
    cfg = runconfig.parse(load(name, variant))
    assert math.prod(cfg.mesh.values()) == 4
    g, pol = cfg.game, cfg.policies["policy"]
    assert pol.sampling.temperature == 1.0 and pol.sampling.max_new_tokens == 3072
    assert pol.train.clip_low == pol.train.clip_high == 0.2 and pol.train.schedule == "cosine"
    if name == "ttrl":
        assert (g.questions_per_step, g.votes, g.train_samples) == (8, 64, 32)
        assert pol.train.lr == 5e-7 and pol.train.warmup_steps == round(0.03 * cfg.steps) and pol.train.kl_coef == 0
        rows = g.questions_per_step * g.train_samples
    else:
        assert (g.questions_per_step, g.samples) == (128, 8) and pol.train.lr == 3e-6
        assert pol.train.warmup_steps == cfg.steps // 10 and pol.sampling.max_prompt_tokens == 512
        rows = g.questions_per_step * g.samples * (2 if name == "co_rewarding_i" else 1)
    if name == "co_rewarding_i":
        assert pol.train.kl_coef == 0.005 and pol.teacher is None and 170 <= cfg.steps <= 220
    if name == "co_rewarding_ii":
        assert pol.train.kl_coef == 0.001 and g.teacher_samples == 8 and 300 <= cfg.steps <= 330
        assert (pol.teacher.ema_start, pol.teacher.ema_end, pol.teacher.as_reference) == (0.01, 1e-5, True)
        assert cfg.roles["teacher"] == "policy@teacher"
        paper = runconfig.parse(load(name, variant + ",paper_ema")).policies["policy"].teacher
        assert paper.ema_end == 1e-4
    assert not g.test_time and "shared" not in g.source
    shape = ModelConfig(**pol.model.shape)
    assert shape.num_heads % cfg.mesh["tensor"] == 0 and shape.num_kv_heads % cfg.mesh["tensor"] == 0
    assert shape.max_position_embeddings >= pol.sampling.max_prompt_tokens + pol.sampling.max_new_tokens
    shards = cfg.mesh["data"] * cfg.mesh["fsdp"]
    assert rows % cfg.loop.train_row_multiple == 0
    assert cfg.loop.train_row_multiple % pol.train.micro_batch == 0 and pol.train.micro_batch % shards == 0
    assert cfg.loop.sample_batch % shards == 0
    expected = PARAMS[variant.rsplit("-", 1)[0]]
    assert abs(shape.num_params() - expected) / expected < 0.03


def test_ttrl_test_time_mode_says_so():
    cfg = runconfig.parse(load("ttrl", "tiny,test_time_amc23"))
    assert cfg.game.test_time and "amc23" in cfg.game.source
    assert not runconfig.parse(load("ttrl", "tiny")).game.test_time
