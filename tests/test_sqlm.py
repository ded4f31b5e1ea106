"""SQLM: the proposer and solver rewards on hand-computed votes, parsing, bad output."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import selfplay_doubles as doubles  # noqa: E402

from zeroplay.games import make_game, sqlm  # noqa: E402


@pytest.mark.parametrize("agree, n, want", [(0, 4, 0.0), (1, 4, 1.0), (3, 4, 1.0), (4, 4, 0.0)])
def test_proposer_reward(agree, n, want):
    assert sqlm.proposer_reward(agree, n) == want


def test_parse_question():
    assert sqlm.parse_question("x</think> <question> What is 3*4? </question>") == "What is 3*4?"
    assert sqlm.parse_question("What is 3*4?") == "What is 3*4?"
    assert sqlm.parse_question("What is 3*4?", require_tags=True) is None
    assert sqlm.parse_question("") is None and sqlm.parse_question("</think>   ") is None


def test_score_on_scripted_output():
    game = make_game("sqlm", {"proposals": 3, "solver_samples": 4, "require_tags": True})
    solver = ["\\boxed{12}", "\\boxed{12}", "\\boxed{13}", "none",      # q0: majority 12, 2 of 4 agree
              "\\boxed{7}", "\\boxed{7.0}", "\\boxed{7}", "\\boxed{7}"]  # q1: unanimous
    ctx = doubles.fake_ctx({"solver": solver})
    reqs = game.requests("play", game.init_state(ctx), ctx)
    assert len(reqs) == 1 and reqs[0].n == 3
    texts = ["<question>What is 3*4?</question>", "<question>What is 3+4?</question>", ""]  # last: empty
    state, eps, m = game.score("play", reqs, [[doubles.completion(t) for t in texts]], {}, ctx)
    assert [e.reward for e in eps if e.role == "solver"] == [1, 1, 0, 0, 1, 1, 1, 1]
    assert [e.reward for e in eps if e.role == "proposer"] == [1.0, 0.0, 0.0]
    assert ctx.sample.calls[0][0] == "solver" and len(ctx.sample.calls[0][1]) == 2
    assert m["proposer/valid_rate"] == pytest.approx(2 / 3) and m["solver/unanimous_rate"] == 0.5
    assert m["solver/majority_agreement"] == pytest.approx(0.75)


def test_all_bad_output_never_raises():
    game = make_game("sqlm", {"proposals": 2, "solver_samples": 2, "require_tags": True})
    ctx = doubles.fake_ctx()
    reqs = game.requests("play", {}, ctx)
    _, eps, m = game.score("play", reqs, [[doubles.completion(""), doubles.completion("no tags")]], {}, ctx)
    assert [e.reward for e in eps] == [0.0, 0.0] and ctx.sample.calls == []
