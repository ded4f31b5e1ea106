"""zeroplay.evaluation.compare: the paired difference and McNemar's test against NumPy and SciPy."""
import json

import numpy as np
import pytest
from scipy import stats

from zeroplay.evaluation import compare


def _report(scores, prompts=None, name="rg:x"):
    prompts = prompts or [f"q{i}" for i in range(len(scores))]
    return {"benchmarks": {name: {"items": [{"index": i, "prompt": p, "score": s if isinstance(s, list) else [s]}
                                            for i, (p, s) in enumerate(zip(prompts, scores))]}}}


def test_paired_difference_matches_numpy_and_scipy():
    rng = np.random.default_rng(0)
    before = (rng.random(500) < 0.2).astype(float)
    after = np.where(rng.random(500) < 0.3, 1.0 - before, before)
    r = compare.paired_difference(list(before), list(after))
    d = after - before
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert r["diff"] == pytest.approx(d.mean(), abs=1e-12)
    assert r["se"] == pytest.approx(se, rel=1e-12)
    assert r["lo"] == pytest.approx(d.mean() - stats.norm.ppf(0.975) * se, rel=1e-9)
    assert r["hi"] == pytest.approx(d.mean() + stats.norm.ppf(0.975) * se, rel=1e-9)
    b, c = int(((before == 1) & (after == 0)).sum()), int(((before == 0) & (after == 1)).sum())
    assert (r["only_before"], r["only_after"]) == (b, c)
    assert r["mcnemar_p"] == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)
    # Pairing: with correlated items the paired se is below the independent-samples one.
    assert r["se"] < r["unpaired_se"]


def test_accuracy_not_partial_credit():
    """Items are scored by `correct` (the report's accuracy), not reasoning-gym's partial `score`."""
    items = [{"prompt": "a", "correct": [False], "score": [0.5]}, {"prompt": "b", "correct": [True], "score": [1.0]}]
    assert compare.item_scores({"items": items}) == (["a", "b"], [0.0, 1.0])


def test_mcnemar_edge_cases():
    assert compare.mcnemar_p(0, 0) == 1.0
    assert compare.mcnemar_p(5, 5) == 1.0
    assert compare.mcnemar_p(0, 10) == pytest.approx(2 / 2 ** 10)


def test_fractional_scores_have_no_mcnemar():
    r = compare.paired_difference([0.25, 0.5, 1.0], [0.5, 0.5, 0.75])
    assert r["diff"] == pytest.approx(0.0) and "mcnemar_p" not in r


def test_reports_must_score_the_same_items(tmp_path):
    a = _report([1.0, 0.0, 0.0])
    b = _report([1.0, 1.0, 0.0], prompts=["q0", "other", "q2"])
    with pytest.raises(ValueError, match="different items.*item 1"):
        compare.compare_reports(a, b)
    with pytest.raises(ValueError, match="3 vs 2 items"):
        compare.compare_reports(a, _report([1.0, 1.0]))
    with pytest.raises(ValueError, match="not in both"):
        compare.compare_reports(a, a, benchmark="gsm8k")


def test_cli_prints_one_line_per_benchmark_and_one_line_errors(tmp_path, capsys):
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(_report([0.0, 0.0, 1.0, 0.0])))
    pb.write_text(json.dumps(_report([1.0, 1.0, 1.0, 0.0])))
    assert compare.main([str(pa), str(pb), "--out", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "diff +50.0 points" in out[0] and "only after 2" in out[0]
    assert json.loads((tmp_path / "c.json").read_text())["rg:x"]["n"] == 4
    assert compare.main([str(pa), str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: FileNotFoundError")


def test_smollm2_hour_config_trains_on_the_evaluated_task_but_never_its_items():
    """configs/smollm2_hour.py (issue #14 item 2): the training prompt reads exactly like the
    evaluation's, and none of its 2000 training questions is among the 500 evaluated ones."""
    import importlib.util
    import os

    from zeroplay import runconfig
    from zeroplay.evaluation.benchmarks import load_benchmark
    from zeroplay.evaluation.scoring import prompt_text
    from zeroplay.games import label_free as lf

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "smollm2_hour.py")
    spec = importlib.util.spec_from_file_location("cfg_smollm2_hour", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = runconfig.parse(mod.get_config())
    assert cfg.game_name == "ttrl" and cfg.loop.eval_benchmarks == (mod.HELD_OUT,) and cfg.loop.eval_limit == 500
    assert cfg.policies["policy"].model.name == "smollm2-135m-instruct" and cfg.loop.time_limit_s == 3600
    assert runconfig.parse(mod.get_config("tiny")).policies["policy"].model.name == "random"
    settings = lf.CommonSettings(**{k: getattr(cfg.game, k) for k in (
        "source", "size", "data_seed", "source_options", "prompt_suffix", "exclude", "exclude_limit")})
    train = lf.QuestionStream(settings).questions
    held_out = load_benchmark(mod.HELD_OUT, limit=500)
    # Half the items have one-digit terms (200 distinct questions, most of them among the 500): those
    # are dropped from training, which keeps ~1300 mostly two-digit questions.
    assert len(held_out) == 500 and 1000 < len(train) < 2000
    assert not {lf._norm(q.text) for q in train} & {lf._norm(it.question) for it in held_out}
    ctx = type("Ctx", (), {"chat": None, "encode": staticmethod(list)})()
    assert "".join(lf.prompt_ids(held_out[0].question, settings, ctx)) == prompt_text("rg", held_out[0])
