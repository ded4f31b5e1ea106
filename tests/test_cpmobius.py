"""CPMöbius: the coach reward, the player's exact-box majority vote, the band filter with
resampling, the probe (label-free and labeled), pending coach episodes, the coach's skip, and the
player's snapshot / rollback after `patience`; bad output never raises."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import selfplay_doubles as doubles  # noqa: E402

from zeroplay.games import cpmobius as cp, make_game  # noqa: E402


@pytest.mark.parametrize("delta, adv, want", [(0.1, 0.5, 5.0), (0.0, 3.0, 0.0), (-0.05, 2.0, -10.0)])
def test_coach_reward(delta, adv, want):
    assert cp.coach_reward(delta, adv) == pytest.approx(want)


def test_player_vote_band_and_advantages():
    b = cp.last_boxed_string
    assert b("so \\boxed{1} then \\boxed{2}") == "\\boxed{2}" and b("none") is None
    assert cp.player_rewards([b("\\boxed{1}"), "\\boxed{1}", "\\boxed{2}", None]) == [1, 1, -1, -1]
    assert cp.player_rewards(["\\boxed{1}", "\\boxed{1.0}", "\\boxed{1}"]) == [1, -1, 1]  # exact strings
    assert cp.player_rewards(["\\boxed{1}", "\\boxed{2}", None]) == [-1, -1, -1]  # tie
    assert cp.player_rewards([None, None]) == [-1, -1]  # no answer at all
    assert cp.in_band([1, -1, -1, -1, -1]) and cp.in_band([1, 1, 1, 1, -1]) and not cp.in_band([1] * 5)
    assert not cp.in_band([-1] * 4)
    np.testing.assert_allclose(cp.grpo_advantages([1, 1, 1, -1]), [0.5, 0.5, 0.5, -1.5], rtol=1e-5)
    assert cp.mean_nonzero_advantage([1.0, -1.0, 0.0], [2, 1, 5]) == pytest.approx(1 / 3)
    assert cp.mean_nonzero_advantage([0.0, 0.0], [3, 3]) is None


def _player(prompt, g):
    if "P1" in prompt:
        return "\\boxed{3}"
    if "ins A" in prompt:
        return ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}", "\\boxed{2}"][g]  # tie: all -1, out of band
    if "ins B" in prompt:
        return ["\\boxed{1}", "\\boxed{1}", "\\boxed{1}", "so \\boxed{2}"][g]  # 3/4 of +1: kept
    if "ins D" in prompt:
        return ["\\boxed{5}", "x \\boxed{6}", "\\boxed{5}", "\\boxed{5}"][g]
    return ""


def _state(**kw):
    s = {"probe": [{"question": "P1", "label": "3"}], "score": 0.0, "last_delta": 0.0, "bad": 0, "pending": [],
         "rollbacks": 0, "snapshots": 0}
    s.update(kw)
    return s


def test_score_band_filter_resampling_pending_coach_episodes():
    game = make_game("cpmobius", {"groups": 2, "player_samples": 4, "probe_mode": "labeled"})
    ctx = doubles.fake_ctx({"player": _player, "coach": lambda p, g: "ins D"}, step=7)
    pending = [{"id": "6/0", "prompt": [1, 2], "tokens": [3, 4], "logprobs": [-1.0, -1.0], "text": "old",
                "finished": True, "adv": 0.5},
               {"id": "6/1", "prompt": [1, 2], "tokens": [5], "logprobs": [-1.0], "text": "old2", "finished": True,
                "adv": None}]
    reqs = game.requests("play", _state(), ctx)
    assert reqs[0].role == "coach" and reqs[0].n == 2 and ctx.decode(reqs[0].prompt).startswith(cp.COACH_PROMPT)
    rollouts = [[doubles.completion("ins A"), doubles.completion("ins B"), doubles.completion("")]]
    new, eps, m = game.score("play", reqs, rollouts, _state(pending=pending), ctx)
    probe_call = ctx.sample.calls[0]
    assert probe_call[0] == "player" and probe_call[3].temperature == 0.0  # greedy probe
    assert m["probe/score"] == 1.0 and m["probe/delta"] == 1.0 and new["score"] == 1.0
    coach = [e for e in eps if e.role == "coach"]
    assert [e.reward for e in coach] == pytest.approx([100 * 1.0 * 0.5, -1.0])
    assert len({e.bucket for e in coach}) == 2  # singleton groups
    player = [e for e in eps if e.role == "player"]
    assert [e.reward for e in player] == [1, 1, 1, -1, 1, -1, 1, 1]  # groups B and D (resampled)
    assert m["coach/resample_rounds"] == 1 and m["player/groups_kept"] == 2
    assert m["player/band_keep_rate"] == pytest.approx(2 / 4) and m["coach/valid_rate"] == pytest.approx(3 / 4)
    assert [p["text"] for p in new["pending"]] == ["ins B", "ins D"]
    adv = [0.5, 0.5, 0.5, -1.5]
    lens = [9, 9, 9, 12]
    want = sum(a * n for a, n in zip(adv, lens)) / sum(lens)
    assert new["pending"][0]["adv"] == pytest.approx(want, rel=1e-5)
    assert game.trains(7) == ("coach", "player")
    # Same score next step: no coach update.
    ctx8 = doubles.fake_ctx({"player": _player, "coach": lambda p, g: "ins D"}, step=8)
    game.score("play", reqs, rollouts, new, ctx8)
    assert game.trains(8) == ("player",)


def test_bad_output_never_raises():
    game = make_game("cpmobius", {"groups": 2, "player_samples": 2, "probe_mode": "labeled",
                                  "max_resample_rounds": 1})
    ctx = doubles.fake_ctx({"player": lambda p, g: "", "coach": lambda p, g: ""})
    reqs = game.requests("play", _state(), ctx)
    new, eps, m = game.score("play", reqs, [[doubles.completion(""), doubles.completion("ins A")]], _state(), ctx)
    assert eps == [] and new["pending"] == [] and m["probe/score"] == 0.0 and m["player/groups_kept"] == 0


def test_snapshot_and_rollback_after_patience():
    game = make_game("cpmobius", {"patience": 2, "rollback_after": 3})
    state, actions = {**_state(), "last_delta": 0.5}, []
    for step, delta in zip(range(1, 9), [0.5, 0.0, -0.1, 0.0, -0.2, 0.0, 0.1, 0.0]):
        state, act = game.after_step({**state, "last_delta": delta}, step, {})
        actions.append(act)
    assert actions == [{"snapshot": ("player",)}, {}, {}, {"rollback": ("player",)}, {}, {"rollback": ("player",)},
                       {"snapshot": ("player",)}, {}]
    assert state["rollbacks"] == 2 and state["snapshots"] == 2 and state["bad"] == 1


def test_probe_label_free_and_labeled(monkeypatch):
    qs = cp.builtin_probe(3, seed=0)
    assert all(int(q["answer"]) == eval(q["question"][len("Compute "):-1]) for q in qs)
    monkeypatch.setattr(cp, "probe_questions", lambda task, size, seed: qs)
    votes = {0: ["\\boxed{7}", "\\boxed{7}", "\\boxed{8}"]}

    def player(prompt, g):
        i = next(i for i, q in enumerate(qs) if q["question"] in prompt)
        return votes.get(i, ["\\boxed{1}", "\\boxed{2}", "\\boxed{2}"])[g % 3]

    game = make_game("cpmobius", {"probe_size": 3, "probe_votes": 3})
    ctx = doubles.fake_ctx({"player": player})
    state = game.init_state(ctx)
    assert [p["label"] for p in state["probe"]] == ["7", "2", "2"]  # pseudo-labels, never the truth
    assert state["score"] == pytest.approx(1 / 3)  # greedy answers (g = 0): 7 right, 1 and 1 wrong
    game = make_game("cpmobius", {"probe_size": 3, "probe_mode": "labeled"})
    state = game.init_state(doubles.fake_ctx({"player": lambda p, g: "\\boxed{0}"}))
    assert [p["label"] for p in state["probe"]] == [q["answer"] for q in qs]


def test_probe_questions_source():
    qs = cp.probe_questions("basic_arithmetic", 4, 1)
    assert len(qs) == 4 and all(q["question"] and q["answer"] for q in qs)
