"""Training curves from run folders: reward, solve rate, validity and evaluation per role, as PNGs.

    python -m zeroplay.plot WORKDIR [WORKDIR ...] [--out DIR] [--smooth N]

Reads each `WORKDIR/metrics.jsonl` and writes into DIR (default: the first WORKDIR's `plots/`):
`reward.png` (`<role>/reward_mean`), `solve_rate.png` (`<role>/solve_rate`, `<role>/solve_rate_mean`),
`validity.png` (`<role>/valid_rate`), `difficulty.png` (`<role>/mean_ops`), `eval.png`
(`eval/<benchmark>` and a game's `heldout*` figures): one panel per role (or
benchmark), one line per workdir, so several runs compare on one figure. A figure with nothing
to show is skipped. matplotlib with the Agg backend (no display needed).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Sequence

FIGURES = {
    # file stem: (title, metric suffixes after "<role>/")
    "reward": ("reward (mean)", ("reward_mean",)),
    "solve_rate": ("solve rate", ("solve_rate", "solve_rate_mean")),
    "validity": ("valid proposals", ("valid_rate",)),
    "difficulty": ("operators per valid proposal (arith_world)", ("mean_ops",)),
}


class PlotError(ValueError):
    """A workdir without metrics (one line)."""


def load_metrics(workdir: str) -> list[dict]:
    """The rows of `workdir/metrics.jsonl` (a truncated last line, from a killed run, is skipped)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise PlotError(f"{workdir}: no metrics.jsonl (is it a zeroplay run folder?)")
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "step" in row:
                rows.append(row)
    return rows


def _series(rows: Sequence[dict], key: str, smooth: int = 1) -> tuple[list[float], list[float]]:
    pts = [(float(r["step"]), float(r[key])) for r in rows
           if isinstance(r.get(key), (int, float)) and math.isfinite(float(r[key]))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if smooth > 1 and ys:
        ys = [sum(ys[max(0, i - smooth + 1):i + 1]) / len(ys[max(0, i - smooth + 1):i + 1]) for i in range(len(ys))]
    return xs, ys


def panels(runs: dict[str, list[dict]], figure: str) -> dict[str, list[str]]:
    """{panel title: metric keys} of one figure over all runs: one panel per role (per benchmark
    for "eval")."""
    keys = sorted({k for rows in runs.values() for r in rows for k in r})
    out: dict[str, list[str]] = {}
    if figure == "eval":
        for k in keys:  # benchmarks (eval/<name>) and a game's own held-out figures
            if k.startswith("eval/") or k.startswith("heldout"):
                out[k.split("/", 1)[1] if k.startswith("eval/") else k] = [k]
        return out
    suffixes = FIGURES[figure][1]
    for k in keys:
        parts = k.split("/")
        if len(parts) == 2 and parts[1] in suffixes and not parts[0].startswith(("time", "eval")):
            out.setdefault(parts[0], []).append(k)
    return out


def _labels(workdirs: Sequence[str]) -> list[str]:
    names = [os.path.basename(os.path.normpath(w)) or w for w in workdirs]
    if len(set(names)) < len(names):
        names = [os.path.normpath(w) for w in workdirs]
    return names


def plot(workdirs: Sequence[str], out_dir: str | None = None, smooth: int = 1) -> list[str]:
    """Write the figures; returns the PNG paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not workdirs:
        raise PlotError("name at least one workdir")
    labels = _labels(workdirs)
    runs = {label: load_metrics(w) for label, w in zip(labels, workdirs)}
    if not any(runs.values()):
        raise PlotError(f"no metrics rows in {', '.join(workdirs)}")
    out_dir = out_dir or os.path.join(workdirs[0], "plots")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for figure in (*FIGURES, "eval"):
        pans = panels(runs, figure)
        if not pans:
            continue
        n = len(pans)
        cols = min(n, 3)
        rows_n = math.ceil(n / cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), squeeze=False)
        for ax, (title, keys) in zip(axes.flat, pans.items()):
            for label, rows in runs.items():
                for key in keys:
                    xs, ys = _series(rows, key, smooth)
                    if xs:
                        name = label if len(keys) == 1 else f"{label} {key.split('/', 1)[1]}"
                        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=8)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle("evaluation accuracy" if figure == "eval" else FIGURES[figure][0])
        fig.tight_layout()
        path = os.path.join(out_dir, f"{figure}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m zeroplay.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("workdirs", nargs="+", help="run folders holding metrics.jsonl")
    p.add_argument("--out", default=None, help="output folder (default: FIRST_WORKDIR/plots)")
    p.add_argument("--smooth", type=int, default=1, help="moving-average window in steps")
    args = p.parse_args(argv)
    try:
        paths = plot(args.workdirs, args.out, max(1, args.smooth))
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not paths:
        print("nothing to plot: no reward, solve-rate, validity or eval metrics", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
