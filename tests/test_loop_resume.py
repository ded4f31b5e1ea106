"""A run survives SIGKILL and SIGINT: `configs/azr.py:tiny` killed mid-run, resumed, interrupted
cleanly, resumed again, ends with the same metrics rows and the same parameters as an
uninterrupted run (the whole AZR state, buffers included, comes back from the checkpoint)."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from zeroplay.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(workdir, steps, *, signal_after_row=None, sig=signal.SIGKILL):
    """Run the CLI; with signal_after_row=k, send `sig` once metrics.jsonl has k rows and the
    checkpoint of step k is complete (Orbax renames a step's folder into place when it is)."""
    env = dict(os.environ, XLA_FLAGS="")  # the CLI's own single device, as a user runs it
    cmd = [sys.executable, "-m", "zeroplay.train", "--config", "configs/azr.py:tiny", "--workdir", workdir,
           f"--config.steps={steps}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if signal_after_row is not None:
        deadline = time.time() + 600
        ckpt = os.path.join(workdir, "checkpoints", str(signal_after_row))
        while time.time() < deadline and proc.poll() is None and not (
                len(_rows(workdir)) >= signal_after_row and os.path.isdir(ckpt)):
            time.sleep(0.1)
        proc.send_signal(sig)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def _rows(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _final(workdir):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    trees, host = ckpt.restore(ckpt.latest_step(), names=["policy/policy"])
    flat = jax.tree_util.tree_flatten_with_path(trees["policy/policy"])[0]
    ckpt.close()
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}, host


def test_kill_interrupt_and_resume_equal_an_uninterrupted_run(tmp_path):
    ref_dir, dir_ = str(tmp_path / "uninterrupted"), str(tmp_path / "interrupted")
    rc, out = _train(ref_dir, 3)
    assert rc == 0, out
    rc, out = _train(dir_, 3, signal_after_row=1, sig=signal.SIGKILL)
    assert rc == -signal.SIGKILL
    rc, out = _train(dir_, 3, signal_after_row=2, sig=signal.SIGINT)
    assert rc == 0, out
    assert "resumed from step" in out
    assert len(_rows(dir_)) in (2, 3)  # the step in flight finished, then it saved and stopped
    if len(_rows(dir_)) == 2:
        assert "stopped by a signal" in out
    rc, out = _train(dir_, 3)
    assert rc == 0, out

    strip = lambda r: {k: v for k, v in r.items() if not k.startswith(("time/", "verify/"))}
    ref_rows, rows = _rows(ref_dir), _rows(dir_)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [strip(r) for r in rows] == [strip(r) for r in ref_rows]
    (ref_params, ref_host), (params, host) = _final(ref_dir), _final(dir_)
    assert ref_params.keys() == params.keys()
    for k in params:
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)
    assert host["game"] == ref_host["game"] and host["rng"] == ref_host["rng"]
