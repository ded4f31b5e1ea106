"""zeroplay.plot on synthetic metrics.jsonl files, and zeroplay.metrics_writer."""
import json
import math
import os
import subprocess
import sys

import pytest

from zeroplay.metrics_writer import MetricsWriter, tensorboard_available
from zeroplay.plot import PlotError, load_metrics, panels, plot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(d, steps=6, offset=0.0, evals=True):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for s in range(1, steps + 1):
            row = {"step": s, "solver/reward_mean": offset + 0.1 * s, "proposer/reward_mean": -0.5 + 0.05 * s,
                   "solver/solve_rate": 0.1 * s, "proposer/solve_rate_mean": 0.3, "proposer/valid_rate": 0.5,
                   "solver/solve_rate/code_i": 0.2, "time/step": 1.0, "policy/loss": float("nan")}
            if evals and s % 2 == 0:
                row["eval/gsm8k"] = 0.01 * s
            f.write(json.dumps(row) + "\n")
        f.write('{"step": 7, "solver/rew')  # a killed run's last, truncated line
    return str(d)


def test_plot_writes_pngs_comparing_runs(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", offset=0.3, evals=False)
    assert len(load_metrics(a)) == 6
    runs = {"a": load_metrics(a), "b": load_metrics(b)}
    assert panels(runs, "reward") == {"proposer": ["proposer/reward_mean"], "solver": ["solver/reward_mean"]}
    assert panels(runs, "solve_rate") == {"proposer": ["proposer/solve_rate_mean"], "solver": ["solver/solve_rate"]}
    assert panels(runs, "eval") == {"gsm8k": ["eval/gsm8k"]}
    out = tmp_path / "plots"
    paths = plot([a, b], str(out), smooth=2)
    assert sorted(os.path.basename(p) for p in paths) == ["eval.png", "reward.png", "solve_rate.png", "validity.png"]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(p) > 1000


def test_plot_cli(tmp_path):
    a = _run(tmp_path / "run")
    r = subprocess.run([sys.executable, "-m", "zeroplay.plot", a], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(os.path.join(a, "plots", "reward.png"))
    r = subprocess.run([sys.executable, "-m", "zeroplay.plot", str(tmp_path / "none")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode != 0 and r.stderr.strip().startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(PlotError):
        plot([str(tmp_path / "none")])


def test_metrics_writer_jsonl(tmp_path):
    with MetricsWriter(str(tmp_path), tensorboard=False) as w:
        w.write({"step": 1, "solver/reward_mean": 0.5, "note": "x"})
        w.write({"step": 2, "solver/reward_mean": float("nan")})
        with pytest.raises(ValueError):
            w.write({"solver/reward_mean": 1.0})
    rows = load_metrics(str(tmp_path))
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["solver/reward_mean"] == 0.5
    assert math.isnan(rows[1]["solver/reward_mean"])
    assert not os.path.exists(tmp_path / "tensorboard")


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard is not installed (optional extra tb)")
def test_metrics_writer_tensorboard(tmp_path):
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    w = MetricsWriter(str(tmp_path))
    assert w.tensorboard
    for s in range(1, 4):
        w.write({"step": s, "solver/reward_mean": np.float32(0.25 * s), "eval/gsm8k": 0.1, "bad": float("inf")})
    w.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert "solver/reward_mean" in tags and "eval/gsm8k" in tags and "bad" not in tags
    vals = [(e.step, e.tensor_proto.float_val[0]) for e in acc.Tensors("solver/reward_mean")]
    assert vals == [(1, 0.25), (2, 0.5), (3, 0.75)]
