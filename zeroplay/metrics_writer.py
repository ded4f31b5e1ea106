"""Metrics rows to `metrics.jsonl`, and to TensorBoard event files when `tensorboard` is installed.

    writer = MetricsWriter(workdir)           # tensorboard=None: on when importable
    writer.write({"step": 3, "solver/reward_mean": 0.5, "time/step": 1.2})
    writer.close()

`write(row)` appends one JSON line (and flushes it: a killed run keeps every finished row) and,
with TensorBoard, one scalar per finite number under its key at `row["step"]`, into
`workdir/tensorboard/`. TensorBoard's own lightweight `tensorboard.summary.Writer` is used: no
TensorFlow, no torch. The extra `pip install zeroplay[tb]` installs it; it is never required.
"""
from __future__ import annotations

import json
import math
import numbers
import os


def tensorboard_available() -> bool:
    try:
        from tensorboard.summary import Writer  # noqa: F401
    except Exception:  # noqa: BLE001 -- absent, or broken by a partial install: plain JSON lines
        return False
    return True


class MetricsWriter:
    def __init__(self, workdir: str, *, tensorboard: bool | None = None, filename: str = "metrics.jsonl",
                 tb_subdir: str = "tensorboard"):
        """tensorboard: True requires it (ImportError otherwise), False never, None when importable."""
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, filename)
        self.tb_dir = os.path.join(workdir, tb_subdir)
        self._tb = None
        if tensorboard or (tensorboard is None and tensorboard_available()):
            from tensorboard.summary import Writer

            self._tb = Writer(self.tb_dir)

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def write(self, row: dict) -> None:
        """Append `row` (it must hold `step`) as one JSON line; TensorBoard scalars as well."""
        if "step" not in row:
            raise ValueError("a metrics row needs 'step'")
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=float) + "\n")
        if self._tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k == "step" or isinstance(v, bool) or not isinstance(v, numbers.Real):
                    continue
                if math.isfinite(float(v)):
                    self._tb.add_scalar(k, float(v), step=step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
