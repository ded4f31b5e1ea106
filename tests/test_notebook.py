"""notebooks/probe_checkpoint.ipynb runs top to bottom (restore onto another mesh, sample, verify)."""
import json
import os
import subprocess
import sys
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "probe_checkpoint.ipynb"


def test_probe_notebook_runs(tmp_path):
    nb = json.loads(NOTEBOOK.read_text())
    code = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    script = tmp_path / "nb.py"
    script.write_text(code)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               ZEROPLAY_NOTEBOOK_MODEL="random")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'tensor'" in out.stdout and "on 2 devices" in out.stdout
    assert "rewards [1.0, 0.0, 0.0, 1.0]" in out.stdout
