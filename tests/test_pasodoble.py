"""PasoDoble: the reward, diversity and history rules on hand-computed cases, parsing and the
anti-hacking checks, score() on scripted model output (bad output included), the skip rules, the
offline schedule, question buffer and round-robin reads, and an exact resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import selfplay_doubles as doubles  # noqa: E402

from zeroplay.games import make_game, pasodoble as pd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("p, d, want", [
    (0.0, 1.0, 0.0), (0.2, 1.0, 0.0), (0.5, 0.3, 0.0), (0.5, 0.31, 1.1 - 0.5 + 0.2 * 0.31),
    (1.0, 1.0, 0.3), (2 / 3, 0.5, 1.1 - 2 / 3 + 0.1), (0.21, 1.0, 1.1 - 0.21 + 0.2)])
def test_proposer_reward(p, d, want):
    assert pd.proposer_reward(p, d) == pytest.approx(want, abs=1e-12)


def test_diversity_and_jaccard():
    assert pd.diversity([1, 2, 3], []) == 1.0
    history = [[1, 2, 3, 4], [1, 2, 3, 4, 5], [9], [4, 3, 2, 1, 1]]
    # Jaccard: 1.0, 0.8 (counts as different: <= 0.8), 0.0, 1.0 -> 2 of 4.
    assert pd.jaccard([1, 2, 3, 4], [1, 2, 3, 4, 5]) == pytest.approx(0.8)
    assert pd.diversity([1, 2, 3, 4], history) == 0.5
    assert pd.diversity([7, 8], history) == 1.0


def test_history_update_rule():
    h = [[1], [2]]
    assert pd.update_history(h, [[3], [4]], [0.2, 0.0], size=100) == h  # nobody above 0.2: unchanged
    assert pd.update_history(h, [[3], [], [4]], [0.5, 0.0, 0.0], size=100) == [[1], [2], [3], [4]]
    assert pd.update_history(h, [[3], [4]], [1.0, 0.0], size=3) == [[2], [3], [4]]  # the last `size`


def test_parsing_and_validity():
    text = ("<think>scratch <problem>old</problem> \\boxed{1}</think>\n<problem> What is 2+3? </problem>"
            "<answer>2+3=\\boxed{5}</answer><problem>second</problem>")
    assert pd.parse_proposal(text) == ("What is 2+3?", "5")
    assert pd.parse_proposal("<problem>q</problem><answer>\\boxed{1}</answer>") == (None, None)  # no </think>
    assert pd.parse_proposal("</think><problem>q</problem>\\boxed{1}") == ("q", None)  # no <answer>
    assert pd.parse_proposal("</think><problem></problem><answer>\\boxed{}</answer>") == (None, None)
    assert pd.parse_proposal("") == (None, None)
    assert pd.is_valid("What is 2+3?", "5")
    assert not pd.is_valid("What is 2+3? \\boxed{5}", "7")    # a box in the question
    assert not pd.is_valid("2+3", "2+3")                       # the question inside the answer
    assert not pd.is_valid("What is 2+5, i.e. 7?", "7")       # the answer inside the question
    assert not pd.is_valid(None, "5") and not pd.is_valid("q", None)


def _props(*texts):
    return texts


def test_score_online_on_scripted_output_including_bad_output():
    game = make_game("pasodoble", {"proposals": 4, "solver_samples": 3})
    proposals = ["</think><problem>What is 2+3?</problem><answer>\\boxed{5}</answer>",
                 "</think><problem>What is 2+5, that is 7?</problem><answer>\\boxed{7}</answer>",  # leaks
                 "</think>I forgot the tags. \\boxed{3}",                                         # no problem
                 ""]                                                                               # empty
    solver = ["\\boxed{5}", "\\boxed{5.0}", "\\boxed{4}",  # question 0: p = 2/3
              "\\boxed{7}", "\\boxed{7}", "no box"]         # question 1: raw 2/3, invalid -> p = 0
    ctx = doubles.fake_ctx({"solver": solver})
    state = game.init_state(ctx)
    reqs = game.requests("play", state, ctx)
    assert len(reqs) == 1 and reqs[0].role == "proposer" and reqs[0].n == 4
    assert "External knowledge: " in ctx.decode(reqs[0].prompt) and ctx.decode(reqs[0].prompt).endswith("<think>\n")
    rollouts = [[doubles.completion(t) for t in proposals]]
    new, eps, m = game.score("play", reqs, rollouts, state, ctx)
    (role, prompts, n, _), = ctx.sample.calls
    assert role == "solver" and n == 3 and len(prompts) == 2  # only the parsed questions are asked
    prop = [e for e in eps if e.role == "proposer"]
    assert [e.reward for e in prop] == pytest.approx([1.1 - 2 / 3 + 0.2, 0.0, 0.0, 0.0])
    assert [e.info["valid"] for e in prop] == [True, False, False, False]
    sol = [e for e in eps if e.role == "solver"]
    assert [e.reward for e in sol] == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert [e.info["train"] for e in sol] == [True] * 3 + [False] * 3
    kept = game.filter(eps)
    assert len([e for e in kept if e.role == "proposer"]) == 4 and len([e for e in kept if e.role == "solver"]) == 3
    assert m["proposer/valid_rate"] == 0.25 and m["game/skipped"] == 0.0
    assert m["proposer/pass_rate_mean"] == pytest.approx(2 / 3 / 4)
    assert m["solver/pass_rate"] == pytest.approx(4 / 6) and m["solver/band_keep_rate"] == 0.25
    # History: a proposal had p > 0.2, so both questions joined it (the ones without none).
    assert new["history"] == [list(b"What is 2+3?"), list(b"What is 2+5, that is 7?")]
    json.dumps(new)  # plain JSON state

    # The same question again is a duplicate of a history item: d = 1/2 (0.5 > 0.3, rewarded).
    ctx2 = doubles.fake_ctx({"solver": ["\\boxed{5}", "\\boxed{4}", "\\boxed{4}"]})
    _, eps2, m2 = game.score("play", reqs, [[doubles.completion(proposals[0])]], new, ctx2)
    assert eps2[0].info["diversity"] == 0.5
    assert eps2[0].reward == pytest.approx(1.1 - 1 / 3 + 0.1)
    # One proposal alone: its group has no advantage -> the whole step is skipped.
    assert m2["game/skipped"] == 1.0 and game.filter(eps2) == []


def test_skip_when_no_question_in_the_band():
    game = make_game("pasodoble", {"proposals": 2, "solver_samples": 2})
    ctx = doubles.fake_ctx({"solver": ["\\boxed{5}"] * 2 + ["\\boxed{9}"] * 2})  # p = 1 and p = 1
    state = game.init_state(ctx)
    reqs = game.requests("play", state, ctx)
    props = ["</think><problem>What is 2+3?</problem><answer>\\boxed{5}</answer>",
             "</think><problem>Name 4+5.</problem><answer>\\boxed{9}</answer>"]
    new, eps, m = game.score("play", reqs, [[doubles.completion(t) for t in props]], state, ctx)
    assert [e.reward for e in eps if e.role == "proposer"] == pytest.approx([0.3, 0.3])
    assert m["game/skipped"] == 1.0 and game.filter(eps) == [] and new["skipped"] == 1
    assert len(new["history"]) == 2  # skipped steps still feed the history


def test_offline_schedule_buffer_and_round_robin():
    game = make_game("pasodoble", {"mode": "offline", "proposer_updates": 2, "solver_updates": 1,
                                   "proposals": 2, "solver_samples": 2, "solver_batch": 2})
    assert [game.trains(s, {}) for s in range(1, 7)] == [("proposer",), ("proposer",), ("solver",)] * 2
    assert [game.phases({}, s) for s in (1, 3, 4)] == [("propose",), ("solve",), ("propose",)]
    ctx = doubles.fake_ctx({"solver": ["\\boxed{5}", "\\boxed{4}", "\\boxed{9}", "\\boxed{9}"]})
    state = game.init_state(ctx)
    reqs = game.requests("propose", state, ctx)
    props = ["</think><problem>What is 2+3?</problem><answer>\\boxed{5}</answer>",
             "</think><problem>Name 4+5.</problem><answer>\\boxed{9}</answer>"]
    state, eps, m = game.score("propose", reqs, [[doubles.completion(t) for t in props]], state, ctx)
    assert [e.role for e in eps] == ["proposer", "proposer"]  # the frozen solver makes no episodes
    assert state["buffer"] == [{"question": "What is 2+3?", "answer": "5"}]  # p = 1/2 in band, p = 1 not
    state = dict(state, buffer=state["buffer"] + [{"question": "Q1", "answer": "1"}, {"question": "Q2", "answer": "2"}])
    reads = []
    for _ in range(2):
        reqs = game.requests("solve", state, ctx)
        reads.append([r.meta["question"] for r in reqs])
        rollouts = [[doubles.completion(f"\\boxed{{{r.meta['answer']}}}"), doubles.completion("x")] for r in reqs]
        state, eps, m = game.score("solve", reqs, rollouts, state, ctx)
        assert all(e.role == "solver" for e in eps) and len(game.filter(eps)) == 4  # p = 1/2: re-filtered in
    assert reads == [["What is 2+3?", "Q1"], ["Q2", "What is 2+3?"]] and state["cursor"] == 1
    ctx_solved = doubles.fake_ctx()
    reqs = game.requests("solve", state, ctx_solved)
    rollouts = [[doubles.completion(f"\\boxed{{{r.meta['answer']}}}")] * 2 for r in reqs]
    _, eps, _ = game.score("solve", reqs, rollouts, state, ctx_solved)
    assert game.filter(eps) == []  # p = 1: out of the band


def test_passages_default_and_from_a_file(tmp_path):
    ps = pd.load_passages()
    assert len(ps) >= 100 and all(20 < len(p) < 600 for p in ps)
    f = tmp_path / "kb.jsonl"
    f.write_text(json.dumps({"text": "A passage."}) + "\n\n" + json.dumps({"passage": "Another."}) + "\n")
    assert pd.load_passages(str(f)) == ["A passage.", "Another."]
    with pytest.raises(FileNotFoundError, match="game.passages"):
        pd.load_passages(str(tmp_path / "missing.jsonl"))


# -- resume after SIGKILL ------------------------------------------------------------------------

def _rows(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _final(workdir):
    import jax

    from zeroplay.checkpoint import Checkpointer

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    names = ["policy/proposer", "policy/solver"]
    trees, host = ckpt.restore(ckpt.latest_step(), names=names)
    ckpt.close()
    out = {}
    for n in names:
        for p, v in jax.tree_util.tree_flatten_with_path(trees[n])[0]:
            out[n + jax.tree_util.keystr(p)] = np.asarray(v)
    return out, host


def test_sigkill_and_resume_equal_an_uninterrupted_run(tmp_path, tmp_path_factory):
    """pasodoble.py:tiny with the scripted sampler (so that both policies train): killed after
    step 1's checkpoint, resumed to step 3, equals 3 uninterrupted steps."""
    ref_dir, dir_ = str(tmp_path / "uninterrupted"), str(tmp_path / "interrupted")
    cache = tmp_path_factory.getbasetemp() / "jax_cache"  # shared by this session's tiny runs
    proc = subprocess.Popen(doubles.runner("pasodoble.py:tiny", dir_, 3), cwd=ROOT, env=doubles.cached_env(cache),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (
            len(_rows(dir_)) >= 1 and os.path.isdir(os.path.join(dir_, "checkpoints", "1"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, out
    assert 1 <= len(_rows(dir_)) < 3
    out = doubles.run_subprocess("pasodoble.py:tiny", dir_, 3, cache)
    assert "resumed from step" in out.stdout
    doubles.run_subprocess("pasodoble.py:tiny", ref_dir, 3, cache)
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith(("time/", "verify/"))}
    rows, ref_rows = _rows(dir_), _rows(ref_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [strip(r) for r in rows] == [strip(r) for r in ref_rows]
    assert any(r["proposer/trained"] == 1.0 for r in rows) and any(r["solver/trained"] == 1.0 for r in rows)
    (params, host), (ref_params, ref_host) = _final(dir_), _final(ref_dir)
    assert params.keys() == ref_params.keys()
    for k in params:
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)
    assert host["game"] == ref_host["game"] and host["rng"] == ref_host["rng"]
    assert len(host["game"]["history"]) > 0
