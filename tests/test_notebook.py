"""The notebooks run top to bottom under nbclient: probe_checkpoint.ipynb (restore onto another mesh,
sample, verify) and inspect_run.ipynb (train a tiny run, plot, tabulate, read the game state), and
each is what its generator writes."""
import importlib
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(name: str, timeout: int) -> tuple[list[str], list[str]]:
    """Run the notebook in a fresh kernel; (stream text per code cell, output MIME types)."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    texts = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in code]
    mimes = [m for c in code for o in c.outputs for m in o.get("data", {})]
    return texts, mimes


@pytest.mark.parametrize("name", ["probe_checkpoint", "inspect_run"])
def test_notebook_is_what_its_generator_writes(name, monkeypatch):
    monkeypatch.syspath_prepend(str(NOTEBOOKS))
    gen = importlib.import_module(f"make_{name.split('_')[0]}_notebook")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in nb.cells] == [tuple(c) for c in gen.CELLS]


def test_probe_notebook_runs(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("ZEROPLAY_NOTEBOOK_MODEL", "random")
    out = "".join(_execute("probe_checkpoint.ipynb", 300)[0])
    assert "'tensor'" in out and "on 2 devices" in out
    assert "rewards [1.0, 0.0, 0.0, 1.0]" in out


def test_inspect_notebook_trains_plots_and_shows_the_buffers(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the notebook's run folder goes
    monkeypatch.setenv("XLA_FLAGS", "")  # one device, as the tiny run is meant to be run
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("ZEROPLAY_RUN", raising=False)
    texts, mimes = _execute("inspect_run.ipynb", 300)
    out = "".join(texts)
    run = Path(re.search(r"run folder: (\S+)", out).group(1))
    assert run.parent == tmp_path
    assert "steps 1..2" in out  # the training summary
    assert (run / "plots" / "reward.png").stat().st_size > 0 and "image/png" in mimes
    assert re.search(r"^metric +step +1 +step +2$", out, re.M)
    assert re.search(r"^proposer/reward_mean +-1\.000 +-1\.000$", out, re.M)  # the untrained model's reward
    assert "game 'azr' after step 2" in out
    assert re.search(r"=== code_o: \d+ entries", out) and "--- entry 0, from the seed" in out
    assert 'input:  "Hello world" | output: "Hello world"' in out  # the identity seed triplet
    assert 'answer: any x with f(x) == "Hello world"' in out
    assert re.search(r"code_f entry 0: solve rate 0/2 = 0\.00; answers \[", out)
