"""Arith world (issue #14): the world against Python's own evaluation, the sandbox's values, the
rewards through `score` with a scripted policy, the cold start, and a whole tiny run."""
import json

import jax
import numpy as np
import pytest

from zeroplay.games import Completion, Context, arith_world as aw, make_game


def test_reductions_follow_python_precedence():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        e = aw.random_expression(rng, int(rng.integers(1, 7)), (1, 1, 1))
        steps = aw.reductions(e)
        assert len(steps) == len(e) // 2
        assert [eval(x) for x in steps] == [eval(e)] * len(steps)  # each rewrite keeps the value
        assert steps[-1] == str(eval(e))  # the independent reference: Python's evaluation
        assert aw.deduction_answer(aw.trace(e)) == eval(e)
    assert aw.trace("3+4*2-1") == "3+8-1=11-1=10"
    assert aw.trace("2-9") == "-7"
    assert aw.trace("3-2*9*1+4") == "3-18*1+4=3-18+4=-15+4=-11"
    assert aw.trace("3+4*2-1", "steps") == "4*2=8,3+8=11,11-1=10=10"
    assert aw.deduction_answer(aw.trace("3-2*9*1+4", "steps")) == -11


def test_parsing_is_strict():
    assert aw.parse_expression(" 3 + 4*2 ", 6) == "3+4*2"
    for bad in ["", "3", "34+1", "3+", "+3", "3++4", "3+4)", "__import__('os')", "3+4*2-1+1+1+1+1", "3/4",
                "x" * 10_000]:
        assert aw.parse_expression(bad, 6) is None, bad
    assert aw.deduction_answer("3+8-1=11-1=10") == 10
    assert aw.deduction_answer("7") == 7 and aw.deduction_answer("3-18+4= -11 ") == -11
    for bad in ["", "3+8-1=11-1", "1+2=3=", "1+2=3x", "=" + "9" * 40]:
        assert aw.deduction_answer(bad) is None, bad
    assert aw.abduction_answer(" 7") == 7
    assert aw.abduction_answer("17") is None and aw.abduction_answer("") is None
    assert aw.mask_digit("3+4*2", 1) == "3+?*2"


def test_executor_values_match_eval():
    rng = np.random.default_rng(1)
    exprs = [aw.random_expression(rng, int(rng.integers(1, 5))) for _ in range(300)]
    holes = [int(rng.integers(0, len(e) // 2 + 1)) for e in exprs]
    out = aw.executor_values(exprs, holes, chunk=128)
    for e, h, (v, ds) in zip(exprs, holes, out):
        assert v == eval(e)
        assert ds == [d for d in range(10) if eval(e[:2 * h] + str(d) + e[2 * h + 1:]) == v]
        assert int(e[2 * h]) in ds


def test_heldout_set_is_fixed_and_unseen():
    s = aw.Settings()
    items, transfer = aw.heldout_items(s), aw.heldout_items(s, transfer=True)
    assert len(items) == 500 and len({it["expr"] for it in items}) == 500 and len(transfer) == 200
    assert all(len(it["expr"]) // 2 == 2 and it["value"] == eval(it["expr"]) for it in items)
    assert all(len(it["expr"]) // 2 == 3 for it in transfer)
    assert items == aw.heldout_items(s)
    assert 0.28 < np.mean([it["expr"].count("*") / 2 for it in items]) < 0.39  # its own operator mix
    pairs = aw.coldstart_corpus(s, np.random.default_rng(2), 3000)
    held = {it["expr"] for it in items + transfer}
    kinds = {p[0] for p, _ in pairs}
    assert kinds == {"D", "A", "P"}
    for p, c in pairs:
        if p[0] == "D":
            e = p[2:-1]
            assert e not in held and len(e) // 2 <= s.coldstart_max_ops and c == aw.trace(e, s.trace)
        elif p[0] == "A":
            masked, value = p[2:-1].split("=")
            assert eval(masked.replace("?", c)) == int(value)
        else:
            assert aw.parse_expression(c, s.coldstart_max_ops) == c and c not in held


def _completion(text):
    return Completion(tokens=[ord(ch) for ch in text] or [0], logprobs=np.zeros(max(len(text), 1), np.float32),
                      text=text, finished=True)


def _ctx(solver):
    calls = []

    def sample(role, prompts, n, sampling=None):
        texts = ["".join(map(chr, p)) for p in prompts]
        calls.append((role, texts, n))
        return [[_completion(solver(t, i)) for i in range(n)] for t in texts]

    return Context(sample=sample, encode=lambda s: [ord(ch) for ch in s], decode=lambda t: "".join(map(chr, t)),
                   rng=np.random.default_rng(0), step=1), calls


def test_score_pays_learnability_and_formats():
    game = make_game("arith_world", {"proposals_per_step": 4, "solver_samples": 4})
    held = game.heldout[0]["expr"]
    proposals = ["3+4", "9*9-1", "hello", held]

    def solver(prompt, i):  # deduction: right on "3+4" every time, on "9*9-1" half the time
        if prompt.startswith("D 3+4"):
            return "7"
        if prompt.startswith("D 9*9-1"):
            return "81-1=80" if i % 2 else "81-1"
        if prompt.startswith("A"):  # abduction: always the wrong digit... or right by luck
            masked, value = prompt[2:-1].split("=")
            right = [d for d in range(10) if eval(masked.replace("?", str(d))) == int(value)]
            return str(right[0]) if i == 0 else str((right[0] + 1) % 10) if len(right) < 10 else "x"
        raise AssertionError(prompt)

    ctx, calls = _ctx(solver)
    state = game.init_state(ctx)
    reqs = game.requests("play", state, ctx)
    assert all(r.role == "proposer" and "".join(map(chr, r.prompt)).startswith("P ") for r in reqs)
    state2, eps, m = game.score("play", reqs, [[_completion(p)] for p in proposals], state, ctx)
    assert calls[0][0] == "solver" and calls[0][2] == 4 and len(calls[0][1]) == 4  # 2 valid x 2 tasks
    prop = {e.info["expr"]: e.reward for e in eps if e.role == "proposer"}
    # "3+4": deduction 4/4, abduction 1/4 (unless every digit works) -> s = 5/8, r = 3/8
    ab_right = [d for d in range(10) if eval(calls[0][1][1][2:-1].split("=")[0].replace("?", str(d))) == 7]
    s_34 = (4 + (4 if len(ab_right) == 10 else 1)) / 8
    assert prop["3+4"] == pytest.approx(aw.proposer_reward(s_34) if 0 < s_34 < 1 else -0.5)
    assert prop["9*9-1"] == pytest.approx(1 - (2 + 1) / 8)
    assert prop[None] == -1.0  # "hello" and the held-out collision are both invalid
    assert sum(1 for e in eps if e.role == "proposer" and e.info["expr"] is None) == 2
    assert m["proposer/heldout_collisions"] == 1 and m["proposer/valid_rate"] == 0.5
    ded = [e for e in eps if e.role == "solver" and e.bucket == "deduction"]
    assert sorted(e.reward for e in ded) == sorted([1.0] * 4 + [1.0, 1.0, -1.0, -1.0])
    assert "3+4" in state2["buffer"] and "9*9-1" in state2["buffer"] and held not in state2["buffer"]
    assert m["solver/deduction_accuracy"] == 0.75


def test_frozen_proposer_trains_solver_only():
    game = make_game("arith_world", {"train_proposer": False})
    assert game.trains(1, {}) == ("solver",)
    assert make_game("arith_world", {}).trains(1, {}) == ("proposer", "solver")


def test_coldstart_tokenizer_and_batch(tmp_path):
    from zeroplay import coldstart

    pairs = aw.coldstart_corpus(aw.Settings(), np.random.default_rng(3), 500)
    tok = coldstart.train_tokenizer([p + c for p, c in pairs], str(tmp_path / "tok"), 48)
    assert len(tok) <= 64 and tok.eos_token_id == 2 and tok.pad_token_id == 3
    for p, c in pairs[:50]:
        ids = tok.encode(c, add_special_tokens=False)
        assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == c
        assert max(ids) < len(tok)
    ids = [(tok.encode(p, add_special_tokens=False), tok.encode(c, add_special_tokens=False)) for p, c in pairs[:4]]
    b = coldstart.sft_batch(ids, tok.eos_token_id, tok.pad_token_id)
    for i, (p, c) in enumerate(ids):
        row = b["tokens"][i]
        assert list(row[:len(p) + len(c)]) == p + c and row[len(p) + len(c)] == tok.eos_token_id
        assert b["loss_mask"][i].sum() == len(c) + 1 and b["loss_mask"][i, :len(p)].sum() == 0


def test_config_needs_a_coldstart_section():
    from configs import arith_world as cfg_mod
    from zeroplay.runconfig import ConfigError, parse

    c = cfg_mod.get_config("tiny")
    del c["coldstart"]
    with pytest.raises(ConfigError, match="coldstart"):
        parse(c)
    with pytest.raises(ValueError, match="variant"):
        cfg_mod.get_config("huge")
    f = parse(cfg_mod.get_config("tiny,frozen_proposer"))
    assert f.roles == {"proposer": "proposer", "solver": "policy"} and not f.game.train_proposer


def test_tiny_run_cold_start_selfplay_heldout_and_resume(tmp_path):
    from configs import arith_world as cfg_mod
    from zeroplay import loop
    from zeroplay.runconfig import parse

    c = cfg_mod.get_config("tiny")
    rows = loop.run(parse(c), str(tmp_path), log=lambda s: None)
    info = json.loads((tmp_path / "coldstart" / "coldstart.json").read_text())
    assert info["loss"][-1][1] < info["loss"][0][1]  # the supervised start lowers the NLL
    assert rows[0]["step"] == 0 and "heldout_accuracy" in rows[0] and "heldout/transfer_accuracy" in rows[0]
    assert [r["step"] for r in rows] == [0, 1, 2] and "heldout_accuracy" in rows[-1]
    assert rows[1]["proposer/episodes"] == 4 and rows[1]["policy/trained"] == 1.0
    assert 0 <= rows[1]["sample/proposer/finished_row_share"] < 1  # the long tail, measured per role
    assert 1 <= rows[1]["sample/proposer/decode_steps"] <= c.policies.policy.sampling.max_new_tokens
    from zeroplay.evaluation.compare import compare_reports  # every evaluated item, per step

    before, after = (json.loads((tmp_path / "eval" / f"heldout_{k}.json").read_text()) for k in (0, 2))
    assert len(after["benchmarks"]["heldout_accuracy"]["items"]) == c.game.heldout_size
    assert after["benchmarks"]["heldout_accuracy"]["accuracy"] == rows[-1]["heldout_accuracy"]
    diff = compare_reports(before, after)["heldout_accuracy"]
    assert diff["diff"] == pytest.approx(rows[-1]["heldout_accuracy"] - rows[0]["heldout_accuracy"])
    c.steps, c.loop.time_limit_s = 10, 1e-6  # the time limit ends the resumed run after one step
    logs = []
    again = loop.run(parse(c), str(tmp_path), log=logs.append)
    assert [r["step"] for r in again] == [3]  # resumed from step 2, the cold start reused
    assert "heldout_accuracy" in again[0] and "time limit" in logs[-1]  # evaluated like a last step
    assert json.loads((tmp_path / "coldstart" / "coldstart.json").read_text()) == info
    from zeroplay.evaluation.models import load_for_eval  # `zeroplay.eval --model <run>` rebuilds the cold-start model

    _, trained, tok, meta = load_for_eval(str(tmp_path))
    _, start, _, _ = load_for_eval(str(tmp_path / "coldstart"))
    assert meta["step"] == 3 and tok.encode("D 1+2=", add_special_tokens=False)
    shapes = [(a.shape, b.shape) for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(start))]
    assert len(shapes) > 4 and all(a == b for a, b in shapes)  # the checkpoint, on the cold start's model


def test_grpo_groups_each_solver_prompt():
    game = make_game("arith_world", {"proposals_per_step": 2, "solver_samples": 3, "advantage": "grpo"})
    assert game.estimator == "grpo" and make_game("arith_world", {}).estimator == "reinforce_pp"
    ctx, _ = _ctx(lambda prompt, i: "7" if prompt.startswith("D") else "1")
    state = game.init_state(ctx)
    reqs = game.requests("play", state, ctx)
    _, eps, _ = game.score("play", reqs, [[_completion("3+4")], [_completion("2*2")]], state, ctx)
    solver = [e.bucket for e in eps if e.role == "solver"]
    assert len(solver) == 12 and len(set(solver)) == 4  # 2 proposals x 2 tasks, 3 rollouts each
    assert {e.bucket for e in eps if e.role == "proposer"} == {"propose"}
