"""The self-play loop on a test double game and random tiny models: metrics rows, checkpoints,
resume, roles that do not train, a step with nothing to train, a workdir of another run."""
import json
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import letters_game  # noqa: E402

from zeroplay import loop, runconfig  # noqa: E402
from zeroplay.checkpoint import Checkpointer  # noqa: E402
from zeroplay.games import GAMES  # noqa: E402

GAMES["letters"] = "letters_game"


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _params(workdir, step, name):
    """The policy's saved state as leaves ordered by their key paths."""
    trees, _ = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False).restore(
        step, names=[f"policy/{name}"])
    return _by_path(trees[f"policy/{name}"])


def _by_path(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    key = lambda kv: "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in kv[0])
    return [v for _, v in sorted(flat, key=key)]


def _equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("letters"))
    rows = loop.run(runconfig.parse(letters_game.tiny_config(steps=2)), workdir, log=lambda s: None)
    return workdir, rows


def test_two_steps_write_metrics_and_checkpoints(two_steps):
    workdir, rows = two_steps
    assert [r["step"] for r in rows] == [1, 2]
    assert _rows(workdir) == json.loads(json.dumps(rows))
    for r in rows:
        for key in ("time/step", "time/sample", "time/sample/solver", "time/sample/proposer", "time/train",
                    "time/train/coach", "time/train/player", "time/checkpoint", "solver/reward_mean",
                    "proposer/reward_mean", "solver/response_length", "solver/entropy", "player/clip_frac",
                    "player/kl", "coach/loss"):
            assert key in r, key
        assert r["coach/trained"] == r["player/trained"] == 1.0
        assert r["time/step"] >= r["time/sample"] + r["time/train"]
    assert Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False).all_steps()[-1] == 2
    # Each policy moved away from its initial params (rewards vary, so advantages do).
    assert rows[0]["player/advantage_abs_mean"] > 0
    assert not _equal(_params(workdir, 1, "player"), _params(workdir, 2, "player"))


def test_resume_continues_without_redoing_a_step(two_steps, tmp_path):
    workdir, rows = two_steps
    more = loop.run(runconfig.parse(letters_game.tiny_config(steps=3)), workdir, log=lambda s: None)
    assert [r["step"] for r in more] == [3]
    assert [r["step"] for r in _rows(workdir)] == [1, 2, 3]
    again = loop.run(runconfig.parse(letters_game.tiny_config(steps=3)), workdir, log=lambda s: None)
    assert again == []
    # The same three steps in one go give the same numbers (host RNG and sampler keys restored).
    fresh = loop.run(runconfig.parse(letters_game.tiny_config(steps=3)), str(tmp_path), log=lambda s: None)
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}
    assert [strip(r) for r in fresh] == [strip(r) for r in _rows(workdir)]
    assert _equal(_params(workdir, 3, "player"), _params(str(tmp_path), 3, "player"))


def test_workdir_of_another_config_is_one_clear_error(two_steps):
    workdir, _ = two_steps
    with pytest.raises(loop.RunFolderError, match="another config"):
        loop.run(runconfig.parse(letters_game.tiny_config(steps=5, prompts=3)), workdir, log=lambda s: None)


def _one_device(d):
    d["mesh"] = {"data": 1, "fsdp": 1, "tensor": 1}
    return d


def test_roles_that_do_not_train_keep_their_policy_bitwise(tmp_path):
    cfg = runconfig.parse(_one_device(letters_game.tiny_config(steps=1, solver_only_even_steps=True)))
    rows = loop.run(cfg, str(tmp_path), log=lambda s: None)
    assert rows[0]["player/trained"] == 0.0 and rows[0]["coach/trained"] == 1.0
    # The player's params and optimizer state are the untouched initial ones.
    player = loop.build_policies(cfg, loop.run_mesh(cfg))["player"]
    import dataclasses

    init = {f.name: getattr(player.state, f.name) for f in dataclasses.fields(player.state)}
    assert _equal(_params(str(tmp_path), 1, "player"), _by_path(init))


def test_a_step_with_nothing_to_train_is_logged_and_skipped_and_the_eval_hook_runs(tmp_path):
    d = _one_device(letters_game.tiny_config(steps=2, filter_all=True))
    d["loop"]["eval_every"] = 2
    calls = []

    def evaluator(step, ctx):
        calls.append(step)
        return {"letters": 0.25}

    rows = loop.run(runconfig.parse(d), str(tmp_path), log=lambda s: None, evaluator=evaluator)
    assert rows[0] == {"step": 0, "eval/letters": 0.25}  # the initial policy, before any step
    assert rows[1]["episodes_kept"] == 0
    assert rows[1]["player/no_trainable_episodes"] == 1.0 and rows[1]["player/trained"] == 0.0
    assert calls == [0, 2] and "eval/letters" not in rows[1] and rows[2]["eval/letters"] == 0.25
    assert [r["step"] for r in _rows(str(tmp_path))] == [0, 1, 2]


def test_batch_layout():
    from zeroplay.games import Completion, Episode

    eps = [Episode("solver", [5, 6, 7], Completion([8, 9], np.array([-1.0, -2.0], np.float32), "", True), 1.0, "b"),
           Episode("solver", [5], Completion([4, 3, 2], np.array([-3.0, -4.0, -5.0], np.float32), "", False), 0.0, "b")]
    b = loop.build_batch(eps, np.array([0.5, -0.5]), pad_id=0, row_multiple=4, len_multiple=8)
    assert b["tokens"].shape == (4, 8)
    np.testing.assert_array_equal(b["tokens"][0], [5, 6, 7, 8, 9, 0, 0, 0])
    np.testing.assert_array_equal(b["tokens"][1], [0, 0, 5, 4, 3, 2, 0, 0])
    np.testing.assert_array_equal(b["positions"][1], [0, 0, 0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(b["loss_mask"][1], [0, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(b["sampler_logprobs"][0], [0, 0, 0, -1, -2, 0, 0, 0])
    np.testing.assert_array_equal(b["row_mask"], [1, 1, 0, 0])
    np.testing.assert_array_equal(b["advantages"], [0.5, -0.5, 0, 0])
    assert b["loss_mask"][2:].sum() == 0 and b["attention_mask"][2:].sum() == 0


def test_teacher_role_samples_from_an_ema_teacher_that_is_checkpointed(tmp_path):
    d = _one_device(letters_game.tiny_config(steps=2))
    d["roles"] = {"proposer": "player@teacher", "solver": "player"}
    del d["policies"]["coach"]
    d["policies"]["player"]["teacher"] = {"ema_start": 0.5, "ema_end": 0.5}
    rows = loop.run(runconfig.parse(d), str(tmp_path), log=lambda s: None)
    assert [r["player/ema_rate"] for r in rows] == [0.5, 0.5]
    assert rows[0]["proposer/episodes"] > 0 and "player@teacher/trained" not in rows[0]
    ckpt = Checkpointer(os.path.join(str(tmp_path), "checkpoints"), async_save=False)
    assert "teacher/player" in ckpt.tree_names(2)
    # At step 2 the teacher moved halfway to the params that step 1 produced: t2 = (t1 + p1) / 2.
    tree = lambda name, step: ckpt.restore(step, names=[name])[0][name]
    t1, t2 = _by_path(tree("teacher/player", 1)), _by_path(tree("teacher/player", 2))
    p1 = _by_path(tree("policy/player", 1)["params"])
    assert len(t1) == len(p1) > 0
    for a, b, c in zip(t2, t1, p1):
        np.testing.assert_allclose(np.asarray(a), (np.asarray(b) + np.asarray(c)) / 2, rtol=1e-6, atol=1e-7)


def test_game_actions_snapshot_and_rollback_a_policy(tmp_path):
    d = _one_device(letters_game.tiny_config(steps=2, snapshot_then_rollback=True))
    rows = loop.run(runconfig.parse(d), str(tmp_path), log=lambda s: None)
    assert rows[0]["player/snapshot"] == 1.0 and rows[1]["player/rollback"] == 1.0
    assert rows[1]["player/trained"] == 1.0  # step 2 trained, then was rolled back
    assert _equal(_params(str(tmp_path), 2, "player"), _params(str(tmp_path), 1, "player"))
    assert not _equal(_params(str(tmp_path), 2, "coach"), _params(str(tmp_path), 1, "coach"))
    ckpt = Checkpointer(os.path.join(str(tmp_path), "checkpoints"), async_save=False)
    assert "snapshot/player" in ckpt.tree_names(2) and "snapshot/coach" not in ckpt.tree_names(2)


def test_the_sampler_reads_each_policys_live_params_without_a_copy(monkeypatch):
    """Two policies on one 8-device mesh: sampling either role re-places or copies no param (the
    jitted sampler takes the live, already sharded training params as they are)."""
    cfg = runconfig.parse(letters_game.tiny_config(steps=1))
    mesh = loop.run_mesh(cfg)
    assert mesh.size == jax.device_count() == 8
    policies = loop.build_policies(cfg, mesh)
    live = {id(x) for p in policies.values() for x in jax.tree.leaves(p.state.params)}
    moved = []
    real_put = jax.device_put

    def spy(x, *a, **k):
        moved.extend(jax.tree.leaves(x))
        return real_put(x, *a, **k)

    monkeypatch.setattr(jax, "device_put", spy)
    sampler = loop.Sampler(cfg, policies, loop.load_tokenizer_for(cfg.policies["player"]), mesh, loop.StageTimer())
    for role in ("solver", "proposer"):
        out = sampler(role, [[5, 6, 7], [8, 9]], 2)
        assert len(out) == 2 and all(len(g) == 2 for g in out)
    assert not [x for x in moved if id(x) in live]


def test_stage_timer_nests_exclusively_except_inside_eval(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: now[0])
    timer = loop.StageTimer()

    def spend(seconds):
        now[0] += seconds

    with timer("score"):
        spend(1)
        with timer("sample/solver"):
            spend(2)
    with timer("eval"):  # the evaluation's own sampling is evaluation time
        spend(1)
        with timer("sample/solver"):
            spend(4)
    m = timer.metrics()
    assert (m["time/score"], m["time/sample/solver"], m["time/eval"]) == (1.0, 2.0, 5.0)


def test_row_buckets_bound_padding_and_shapes():
    sizes = [loop.row_bucket(n, 8, 2 ** 0.5) for n in range(1, 400)]
    assert sorted(set(sizes))[:10] == [8, 16, 24, 32, 48, 64, 96, 128, 184, 256]
    assert all(b >= n and b % 8 == 0 and b <= max(8, 1.42 * n + 8) for n, b in zip(range(1, 400), sizes))
    assert [loop.row_bucket(n, 8) for n in (1, 8, 9, 17)] == [8, 8, 16, 24]  # growth 0: multiples only
    with pytest.raises(ValueError, match="train_row_growth"):
        runconfig.LoopSpec(train_row_growth=1.0)


def test_zero_advantage_rows_leave_the_batch_and_the_update_is_the_kept_rows_update():
    """Two GRPO groups, one with equal rewards: dropping it trains exactly as a batch of the other
    group alone would (bitwise), and the dropped count is logged."""
    from zeroplay.games import Completion, Episode
    from zeroplay.rollouts import StageTimer

    def episodes(groups):
        return [Episode("solver", [65, 66], Completion([67 + i, 68], np.array([-1.0, -1.5], np.float32), "", True),
                        r, f"g{g}") for g, rewards in groups for i, r in enumerate(rewards)]

    def train(drop, eps):
        d = _one_device(letters_game.tiny_config(steps=1))
        d["loop"]["drop_zero_advantage"] = drop
        cfg = runconfig.parse(d)
        mesh = loop.run_mesh(cfg)
        pols = loop.build_policies(cfg, mesh)
        game = type("G", (), {"estimator": "grpo", "estimator_kwargs": {}, "trains": lambda self, s, st: ("solver",)})()
        m = loop.train_policies(game, pols, cfg, eps, 1, 0, StageTimer(), mesh, {})
        return m, _by_path(pols["player"].state.params)

    mixed, same = (0, [1.0, 0.0, 1.0, 0.0]), (1, [1.0, 1.0, 1.0, 1.0])
    m, dropped = train(True, episodes([mixed, same]))
    _, alone = train(False, episodes([mixed]))
    _, kept = train(False, episodes([mixed, same]))
    assert m["player/rows_dropped"] == 4.0 and m["player/trained"] == 1.0
    assert _equal(dropped, alone) and not _equal(dropped, kept)  # token mean over fewer tokens
    m, _ = train(True, episodes([same]))
    assert m["player/no_trainable_episodes"] == 1.0 and m["player/trained"] == 0.0


def test_continuous_batching_samples_what_one_lockstep_call_would():
    """loop.continuous_batching: one sampler call of sample_batch rows refilled as they end gives
    the completions of one lockstep call over every prompt with the same key, and of the lockstep
    chunks the loop samples without it; its long-tail metric counts the refilled batch's row-steps."""
    from zeroplay.sampling import generate

    d = _one_device(letters_game.tiny_config(steps=1))
    d["loop"].update(continuous_batching=True, sample_batch=2)  # 2 prompts x 2 samples: 4 rows at once
    cfg = runconfig.parse(d)
    mesh = loop.run_mesh(cfg)
    policies = loop.build_policies(cfg, mesh)
    tok = loop.load_tokenizer_for(cfg.policies["player"])
    sampler = loop.Sampler(cfg, policies, tok, mesh, loop.StageTimer())
    prompts = [[5 + i, 6, 7 + 2 * i][: 1 + i % 3] for i in range(7)]
    out = sampler("solver", prompts, 2)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0), 0)
    ref = generate(policies["player"].model, policies["player"].state.params, prompts, max_new_tokens=8,
                   num_samples=2, temperature=1.0, eos_token_ids=sampler.eos, rng=key, pad_token_id=sampler.pad)
    assert sampler.calls == 1
    for i, row in enumerate(out):
        for j, c in enumerate(row):
            n = int(ref.lengths[i, j])
            assert c.tokens == ref.tokens[i, j, :n].tolist()
            np.testing.assert_allclose(c.logprobs, ref.logprobs[i, j, :n], atol=1e-5, rtol=0)
    d["loop"]["continuous_batching"] = False  # lockstep chunks of 2 prompts, each at its offset: the same
    chunked = loop.Sampler(runconfig.parse(d), policies, tok, mesh, loop.StageTimer())("solver", prompts, 2)
    assert [[c.tokens for c in row] for row in chunked] == [[c.tokens for c in row] for row in out]
    tail = sampler.tail_metrics()
    steps = tail["sample/solver/decode_steps"]
    used = sum(len(c.tokens) for row in out for c in row)
    assert steps >= max(len(c.tokens) for row in out for c in row)
    # 14 requests, 4 rows: every row-step is a request's token or an idle row, at most 4 per step
    share = tail["sample/solver/finished_row_share"]
    assert 0.0 <= share < 1.0 and used / (1.0 - share) <= 4 * steps + 14
