"""R-Zero: challenger reward with the BLEU-cluster repetition penalty, the solver's band-filtered
question set with majority labels, the solver reward, the outer-iteration schedule, bad output."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import selfplay_doubles as doubles  # noqa: E402

from zeroplay.games import make_game, r_zero  # noqa: E402


@pytest.mark.parametrize("p, c, want", [(0.5, 0.25, 0.25), (0.8, 0.25, 0.2 - 0.25), (None, 0.5, -1.5),
                                        (1.0, 0.1, -0.1), (0.0, 0.0, 0.0)])
def test_challenger_reward(p, c, want):
    assert r_zero.challenger_reward(p, c) == pytest.approx(want)


def test_bleu_and_cluster_shares():
    a = "what is the sum of the first ten odd numbers"
    assert r_zero.bleu(a, a) == pytest.approx(1.0)
    assert r_zero.bleu(a, "find the area of a circle whose radius is three meters") < 0.2
    qs = [a, a, "find the area of a circle whose radius is three meters", "", ""]
    # Two identical questions form one cluster (2/5); unrelated and empty questions are alone.
    assert r_zero.cluster_shares(qs) == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.2])
    near = a.replace("ten", "twelve")
    assert r_zero.cluster_shares([a, near]) == [1.0, 1.0]  # BLEU > 0.5: distance < 0.5, merged
    assert r_zero.cluster_shares([a]) == [1.0] and r_zero.cluster_shares([]) == []


def test_parse_agreement_and_solver_reward():
    assert r_zero.parse_proposal("think <question>Q?</question> so \\boxed{4}") == ("Q?", "4")
    assert r_zero.parse_proposal("<question> </question>\\boxed{4}") == (None, "4")
    assert r_zero.parse_proposal("") == (None, None)
    assert r_zero.agreement(["5", "5.0", "6", None]) == ("5", 0.5)
    assert r_zero.agreement([None, None]) == (None, 0.0)
    assert r_zero.solver_reward("\\boxed{5}", "5", True) == pytest.approx(1.0)
    assert r_zero.solver_reward("\\boxed{4}", "5", False) == pytest.approx(0.1)
    assert r_zero.solver_reward("no box", "5", False) == 0.0
    assert r_zero.solver_reward("x</think>\\boxed{4}", "5", False, require_think=True) == pytest.approx(0.1)
    assert r_zero.solver_reward("\\boxed{4}", "5", False, require_think=True) == 0.0


def test_schedule():
    game = make_game("r_zero", {"challenger_steps": 2, "solver_steps": 3})
    assert [game.trains(s, {})[0] for s in range(1, 11)] == ["challenger"] * 2 + ["solver"] * 3 + \
        ["challenger"] * 2 + ["solver"] * 3
    assert [game.phases({}, s) for s in (1, 3, 4, 8)] == [("challenge",), ("build", "solve"), ("solve",),
                                                          ("build", "solve")]


def test_challenge_step_on_scripted_output_including_bad_output():
    game = make_game("r_zero", {"challenger_prompts": 1, "challenger_samples": 4, "votes": 4})
    ctx = doubles.fake_ctx({"solver": ["\\boxed{5}"] * 3 + ["\\boxed{6}",
                                       "\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "nothing"]})
    reqs = game.requests("challenge", game.init_state(ctx), ctx)
    texts = ["<question>what is the sum of the first ten odd numbers</question> \\boxed{100}",
             "<question>find the area of a circle whose radius is three meters</question> \\boxed{9\\pi}",
             "<question>no answer given</question>", ""]
    state, eps, m = game.score("challenge", reqs, [[doubles.completion(t) for t in texts]], game.init_state(ctx), ctx)
    # p = 3/4 and 1/4 (a four-way split, ties to the first): min(p, 1 - p) = 1/4 for both; the four
    # proposals are four clusters (penalty 1/4 each); the unparsed ones get -1 - 1/4.
    assert [e.reward for e in eps] == pytest.approx([0.0, 0.0, -1.25, -1.25])
    assert m["challenger/valid_rate"] == 0.5 and len(ctx.sample.calls[0][1]) == 2
    assert state == game.init_state(ctx)


def test_build_band_filter_majority_labels_and_round_robin_solve():
    game = make_game("r_zero", {"solver_pool": 3, "votes": 4, "solver_batch": 2, "solver_samples": 2})
    ctx = doubles.fake_ctx({"solver": ["\\boxed{5}"] * 3 + ["\\boxed{6}",    # p = 0.75: kept, label 5
                                       "\\boxed{1}"] * 1 + ["\\boxed{2}", "\\boxed{3}", "\\boxed{4}",  # p = 0.25
                                       ] + ["\\boxed{7}"] * 4})                 # p = 1: dropped
    state = game.init_state(ctx)
    reqs = game.requests("build", state, ctx)
    assert reqs[0].n == 3 and reqs[0].role == "challenger"
    texts = [f"<question>question {w}</question>\\boxed{{{i}}}" for i, w in enumerate(["one", "two", "three"])]
    state, eps, m = game.score("build", reqs, [[doubles.completion(t) for t in texts]], state, ctx)
    assert eps == [] and state["solver_set"] == [{"question": "question one", "label": "5", "p": 0.75}]
    assert m["solver/set_size"] == 1 and state["iteration"] == 1
    state["solver_set"].append({"question": "question four", "label": "8", "p": 0.5})
    reqs = game.requests("solve", state, ctx)
    assert [r.meta["question"] for r in reqs] == ["question one", "question four"]
    rollouts = [[doubles.completion("\\boxed{5}"), doubles.completion("")],
                [doubles.completion("\\boxed{9}"), doubles.completion("\\boxed{8}")]]
    state, eps, m = game.score("solve", reqs, rollouts, state, ctx)
    assert [e.reward for e in eps] == pytest.approx([1.0, 0.0, 0.1, 1.0])
    assert state["cursor"] == 0 and m["solver/accuracy"] == 0.5
