"""The main job: run (or resume) a self-play config.

    python -m zeroplay.train [--config configs/<name>.py[:arg]] --workdir DIR [--config.k=v ...]

With no --config it runs configs/default.py. The workdir holds metrics.jsonl (one row per step),
config.json and Orbax checkpoints under checkpoints/; a second call on the same workdir resumes
from the latest checkpoint (with a larger --config.steps it continues). SIGINT / SIGTERM save and
exit cleanly. A malformed config, a broken model path or a workdir of another run is one line.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                               "default.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Config file (configs/<name>.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Run directory (metrics, checkpoints).")


SUMMARY_RATES = ("reward_mean", "valid_rate", "solve_rate", "majority_agreement", "label_accuracy")


def summary(rows: list[dict]) -> str:
    """A short table of a run: steps, mean seconds per stage, per-role rewards first and last."""
    evals = sorted({k for r in rows for k in r if k.startswith("eval/")})
    rows_eval = [r for r in rows if any(k in r for k in evals)]
    rows = [r for r in rows if r["step"] > 0]
    if not rows:
        return "no step ran (the workdir already holds every step of this config)"
    lines = [f"steps {rows[0]['step']}..{rows[-1]['step']}"]
    times = sorted({k for r in rows for k in r if k.startswith("time/")})
    for k in times:
        vals = [r[k] for r in rows if k in r]
        lines.append(f"  {k:<28} {sum(vals) / len(vals):9.2f} s/step")
    keys = sorted({k for r in rows for k in r if k.endswith(SUMMARY_RATES) and k.count("/") == 1})
    for k in keys:
        vals = [r[k] for r in rows if k in r]
        lines.append(f"  {k:<28} first {vals[0]:7.3f}   last {vals[-1]:7.3f}   mean {sum(vals) / len(vals):7.3f}")
    for k in evals:
        vals = [(r["step"], r[k]) for r in rows_eval if k in r]
        name = k if len(k) <= 40 else k[:36] + "...)"  # rg: names carry every task setting
        lines.append(f"  {name:<28} " + "   ".join(f"step {st}: {v:.3f}" for st, v in vals))
    return "\n".join(lines)


def main(argv=None):
    def _main(_):
        from zeroplay import loop, runconfig
        from zeroplay.models import ModelLoadError

        logging.set_verbosity(logging.WARNING)  # keep JAX's backend probing out of the output
        try:
            cfg = runconfig.parse(_CONFIG.value)
            rows = loop.run(cfg, _WORKDIR.value)
        except (runconfig.ConfigError, ModelLoadError, loop.RunFolderError) as e:
            sys.exit(f"error: {e}")
        print(summary(rows))

    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
