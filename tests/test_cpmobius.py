"""CPMöbius: the coach reward, the player's exact-box majority vote, the band filter with
resampling, the probe (label-free and labeled) in after_step, pending coach episodes rewarded with
the delta measured after their step's player update, the coach's skip as a function of (step,
state), and the player's snapshot / rollback after `patience`; bad output never raises. Through
loop.run: the probe of step t sees the params of step t's update, and a resumed run repeats."""
import json
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
    # The coach episodes of step 6, rewarded in step 6's after_step with delta_6 = 0.25.
    pending = [{"id": "6/0", "prompt": [1, 2], "tokens": [3, 4], "logprobs": [-1.0, -1.0], "text": "old",
                "finished": True, "adv": 0.5, "reward": 12.5},
               {"id": "6/1", "prompt": [1, 2], "tokens": [5], "logprobs": [-1.0], "text": "old2", "finished": True,
                "adv": None, "reward": -1.0}]
    reqs = game.requests("play", _state(), ctx)
    assert reqs[0].role == "coach" and reqs[0].n == 2 and ctx.decode(reqs[0].prompt).startswith(cp.COACH_PROMPT)
    rollouts = [[doubles.completion("ins A"), doubles.completion("ins B"), doubles.completion("")]]
    state = _state(pending=pending, score=0.5, last_delta=0.25)
    new, eps, m = game.score("play", reqs, rollouts, state, ctx)
    # No probe while scoring: only the instructions' player groups and the coach's resampling.
    assert not any("P1" in ctx.decode(pr) for _, prompts, _, _ in ctx.sample.calls for pr in prompts)
    assert "probe/score" not in m and new["score"] == 0.5 and new["last_delta"] == 0.25
    coach = [e for e in eps if e.role == "coach"]
    assert [e.reward for e in coach] == [12.5, -1.0] and [e.info["delta"] for e in coach] == [0.25, 0.25]
    assert len({e.bucket for e in coach}) == 2  # singleton groups
    player = [e for e in eps if e.role == "player"]
    assert [e.reward for e in player] == [1, 1, 1, -1, 1, -1, 1, 1]  # groups B and D (resampled)
    assert m["coach/resample_rounds"] == 1 and m["player/groups_kept"] == 2 and m["coach/trains"] == 1.0
    assert m["player/band_keep_rate"] == pytest.approx(2 / 4) and m["coach/valid_rate"] == pytest.approx(3 / 4)
    assert [p["text"] for p in new["pending"]] == ["ins B", "ins D"]
    assert all("reward" not in p for p in new["pending"])  # rewarded once the probe has run
    # Token-weighted mean of the nonzero advantages (byte lengths of the answers).
    want_b = (0.5 * 9 * 3 - 1.5 * 12) / (9 * 3 + 12)   # B: 1, 1, 1, -1 -> z 0.5, 0.5, 0.5, -1.5
    want_d = (0.5 * 9 * 3 - 1.5 * 11) / (9 * 3 + 11)   # D: 1, -1, 1, 1
    assert [p["adv"] for p in new["pending"]] == pytest.approx([want_b, want_d], rel=1e-5)
    assert game.trains(7, new) == ("coach", "player")  # delta_6 != 0: the coach trains on step 6's
    assert game.trains(7, {**new, "last_delta": 0.0}) == ("player",)

    # after_step of step 7: the probe scores the player as step 7's update left it (the double's
    # answer now), V_7 = 1, delta_7 = 1 - 0.5, and step 7's instructions get their rewards.
    after = doubles.fake_ctx({"player": _player}, step=7)
    metrics = {}
    done, actions = game.after_step(new, 7, metrics, after)
    (call,) = after.sample.calls
    assert call[0] == "player" and call[3].temperature == 0.0 and "P1" in after.decode(call[1][0])  # greedy probe
    assert done["score"] == 1.0 and done["last_delta"] == 0.5
    assert metrics["probe/score"] == 1.0 and metrics["probe/delta"] == 0.5
    assert [p["reward"] for p in done["pending"]] == pytest.approx([100 * 0.5 * want_b, 100 * 0.5 * want_d])
    assert actions == {"snapshot": ("player",)} and done["snapshots"] == 1 and done["bad"] == 0
    assert game.trains(8, done) == ("coach", "player")
    # Step 8: the same probe score: delta_8 = 0, step 8's coach update is skipped (step 9).
    new8, eps8, _ = game.score("play", reqs, rollouts, done, doubles.fake_ctx(
        {"player": _player, "coach": lambda p, g: "ins D"}, step=8))
    assert [e.reward for e in eps8 if e.role == "coach"] == pytest.approx([100 * 0.5 * want_b, 100 * 0.5 * want_d])
    done8, actions8 = game.after_step(new8, 8, {}, doubles.fake_ctx({"player": _player}, step=8))
    assert done8["last_delta"] == 0.0 and actions8 == {} and done8["bad"] == 1
    assert [p["reward"] for p in done8["pending"]] == [0.0, 0.0]
    assert game.trains(9, done8) == ("player",)


def test_trains_is_a_function_of_step_and_state():
    """No memory outside the JSON state: a fresh game decides alike, before or after scoring."""
    used = make_game("cpmobius", {"groups": 1, "player_samples": 4, "probe_mode": "labeled"})
    ctx = doubles.fake_ctx({"player": _player}, step=3)
    reqs = used.requests("play", _state(), ctx)
    used.score("play", reqs, [[doubles.completion("ins B")]], _state(last_delta=0.0), ctx)
    used.after_step(_state(score=0.0), 3, {}, doubles.fake_ctx({"player": _player}, step=3))  # V 0 -> 1
    fresh = make_game("cpmobius", {"groups": 1, "player_samples": 4, "probe_mode": "labeled"})
    for delta, want in ((0.0, ("player",)), (-0.25, ("coach", "player")), (1 / 83, ("coach", "player"))):
        state = json.loads(json.dumps(_state(last_delta=delta)))  # as a checkpoint stores it
        for step in (1, 3, 4, 500):
            assert used.trains(step, state) == fresh.trains(step, state) == want
    assert fresh.trains(1, fresh_init_state(fresh)) == ("player",)  # step 1: nothing pending yet


def fresh_init_state(game):
    return game.init_state(doubles.fake_ctx({"player": lambda p, g: "\\boxed{0}"}))


def test_bad_output_never_raises():
    game = make_game("cpmobius", {"groups": 2, "player_samples": 2, "probe_mode": "labeled",
                                  "max_resample_rounds": 1})
    ctx = doubles.fake_ctx({"player": lambda p, g: "", "coach": lambda p, g: ""})
    reqs = game.requests("play", _state(), ctx)
    new, eps, m = game.score("play", reqs, [[doubles.completion(""), doubles.completion("ins A")]], _state(), ctx)
    assert eps == [] and new["pending"] == [] and m["player/groups_kept"] == 0
    metrics = {}
    done, actions = game.after_step(new, 1, metrics, ctx)
    assert metrics["probe/score"] == 0.0 and done["pending"] == [] and actions == {}


def test_snapshot_and_rollback_after_patience():
    """The probe runs in after_step on the updated player; its deltas drive snapshot / rollback."""
    game = make_game("cpmobius", {"patience": 2, "rollback_after": 3, "probe_mode": "labeled"})
    probe = [{"question": f"Q{i}", "label": "1"} for i in range(10)]
    state, actions, deltas = _state(probe=probe, score=0.0), [], []
    for step, right in zip(range(1, 9), [5, 5, 4, 4, 2, 2, 3, 3]):  # V: .5 .5 .4 .4 .2 .2 .3 .3
        player = lambda p, g, right=right: "\\boxed{1}" if int(p.split("Q")[1].split()[0]) < right else "no"
        metrics = {}
        state, act = game.after_step(state, step, metrics, doubles.fake_ctx({"player": player}, step=step))
        actions.append(act)
        deltas.append(metrics["probe/delta"])
        assert metrics["probe/score"] == pytest.approx(right / 10) and state["score"] == metrics["probe/score"]
    assert deltas == pytest.approx([0.5, 0.0, -0.1, 0.0, -0.2, 0.0, 0.1, 0.0])
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


# -- through zeroplay.loop.run: the probe's timing and resume --------------------------------------

PROBE = [{"question": "Q0: what is 3 + 4?", "answer": "7"}, {"question": "Q1: what is 2 + 5?", "answer": "7"}]


class VersionedSampler:
    """A `sample_fn` double that knows which update the player's live params come from: the coach
    writes one problem, the player answers it once right and once not (a group in the band, so
    the player trains every step); on a probe question the player is right only when its live
    params are the ones step 1 or 2 left (so V = 0, 1, 1, 0 after steps 0..3)."""

    def __init__(self, right=(1, 2)):
        from zeroplay.models.byte_tokenizer import byte_tokenizer

        self.tok, self.right = byte_tokenizer(), set(right)
        self.policies, self.after = None, {}   # step -> the player's leaves after that step's update
        self.probe_versions = []               # per probe call: the step whose update the player has

    @staticmethod
    def leaves(policy):
        import jax

        return [np.asarray(x).copy() for x in jax.tree.leaves(policy.state.params)]

    def version(self):
        live = self.leaves(self.policies["player"])
        hits = [s for s, ls in self.after.items() if all(np.array_equal(a, b) for a, b in zip(ls, live))]
        assert len(hits) == 1, hits
        return hits[0]

    def __call__(self, role, prompts, n=1, sampling=None):
        texts = [self.tok.decode(list(p), skip_special_tokens=True) for p in prompts]
        probe = role == "player" and any("Q0:" in t or "Q1:" in t for t in texts)
        if probe:
            self.probe_versions.append(self.version())
        out = []
        for t in texts:
            if role == "coach":
                answers = ["Compute 3 + 4."] * n
            elif probe:
                answers = ["\\boxed{7}" if self.probe_versions[-1] in self.right else "no"] * n
            else:
                answers = ["\\boxed{7}" if g % 2 == 0 else "no" for g in range(n)]
            out.append([doubles.completion(a, self.tok.encode(a, add_special_tokens=False) + [self.tok.eos_token_id])
                        for a in answers])
        return out


def _run(monkeypatch, workdir, steps, sampler):
    from zeroplay import loop, runconfig

    build, train = loop.build_policies, loop.train_policies

    def build_policies(cfg, mesh):
        sampler.policies = build(cfg, mesh)
        sampler.after = {0: sampler.leaves(sampler.policies["player"])}  # the initial params (or restored)
        return sampler.policies

    def train_policies(game, policies, cfg, episodes, step, *args):
        out = train(game, policies, cfg, episodes, step, *args)
        sampler.after[step] = sampler.leaves(policies["player"])
        return out

    monkeypatch.setattr(loop, "build_policies", build_policies)
    monkeypatch.setattr(loop, "train_policies", train_policies)
    monkeypatch.setattr(cp, "probe_questions", lambda task, size, seed: PROBE)
    d = doubles.load_config("cpmobius.py:tiny")
    d["steps"] = steps
    d["game"].update(probe_mode="labeled", probe_size=2)
    return loop.run(runconfig.parse(d), workdir, sample_fn=sampler, log=lambda s: None)


@pytest.mark.slow  # three loop runs of the tiny models: about 2.5 minutes on the 2-core CPU
def test_loop_probe_scores_the_update_of_its_step_and_a_resumed_run_repeats(monkeypatch, tmp_path):
    fresh = VersionedSampler()
    rows = _run(monkeypatch, str(tmp_path / "fresh"), 3, fresh)
    # init_state probes the initial player; step t's probe, the player step t's update left.
    assert fresh.probe_versions == [0, 1, 2, 3]
    assert not any(np.array_equal(a, b) for a, b in zip(fresh.after[1], fresh.after[2]))  # it trained
    assert [r["probe/score"] for r in rows] == [1.0, 1.0, 0.0]   # V_1, V_2, V_3 (V_0 = 0)
    assert [r["probe/delta"] for r in rows] == [1.0, 0.0, -1.0]
    assert [r["player/trained"] for r in rows] == [1.0, 1.0, 1.0]
    # The coach trains at t + 1 on step t's instructions, unless delta_t == 0: step 1 has nothing
    # pending, step 2 trains (delta_1 = 1), step 3 skips (delta_2 = 0).
    assert [r["coach/trained"] for r in rows] == [0.0, 1.0, 0.0]
    assert rows[0]["player/snapshot"] == 1.0 and "player/snapshot" not in rows[1]
    adv = (np.sqrt(0.5) * 10 - np.sqrt(0.5) * 3) / 13   # "\\boxed{7}" + eos: 10 tokens, "no" + eos: 3
    assert rows[1]["coach/reward_mean"] == pytest.approx(100 * 1.0 * adv, rel=1e-4)
    assert rows[2]["coach/reward_mean"] == 0.0   # 100 * delta_2 * a, delta_2 = 0

    # Two steps, then a resumed third: the same rows and params as the three in one go.
    resumed = VersionedSampler()
    workdir = str(tmp_path / "resumed")
    _run(monkeypatch, workdir, 2, resumed)
    _run(monkeypatch, workdir, 3, resumed)
    assert resumed.probe_versions == [0, 1, 2, 3]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        again = [json.loads(line) for line in f]
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}
    assert [strip(r) for r in again] == [strip(r) for r in json.loads(json.dumps(rows))]
    assert all(np.array_equal(a, b) for a, b in zip(resumed.after[3], fresh.after[3]))
