"""Before/after: the paired difference of two evaluation reports on the same items, with its 95% interval.

    python -m zeroplay.evaluation.compare BEFORE.json AFTER.json [--benchmark NAME]

BEFORE and AFTER are reports of `zeroplay.eval --out` or a run's `eval/eval_<step>.json`. Each item
i has a score a_i (before) and b_i (after) in [0, 1] (its share of correct samples, so the means
are the reports' accuracies); the items must be
the same ones in the same order (checked by prompt). With d_i = b_i - a_i over n items:

    diff = mean(d),   se = std(d, ddof=1) / sqrt(n),   95% interval = diff +- 1.96 se

The pairing matters: both scores of an item share its difficulty, so se is smaller than for two
independent samples (the unpaired se sqrt(p1 q1 / n + p2 q2 / n) is printed beside it). For one
greedy sample per item (0/1 scores) it also prints the discordant counts (right only before, right
only after) and McNemar's exact two-sided p-value: P(Binomial(m, 1/2) as or more extreme), m the
number of discordant items.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Sequence

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def item_scores(bench: dict) -> tuple[list[str], list[float]]:
    """(prompts, per-item share of correct samples) of one benchmark entry of a report: the
    report's `accuracy` per item. `correct` is read, not `score`, which for reasoning-gym items may
    give partial credit (0.5 for some wrong answers); a report without `correct` falls back to it."""
    prompts, scores = [], []
    for it in bench["items"]:
        s = it["correct"] if "correct" in it else it.get("score")
        s = [float(x) for x in s] if isinstance(s, (list, tuple)) else [float(s)]
        prompts.append(it.get("prompt", str(it.get("index"))))
        scores.append(sum(s) / len(s) if s else 0.0)
    return prompts, scores


def mcnemar_p(only_before: int, only_after: int) -> float:
    """Exact two-sided McNemar p-value: 2 P(Binomial(m, 1/2) <= min(b, c)), capped at 1."""
    m, k = only_before + only_after, min(only_before, only_after)
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m
    return min(1.0, 2.0 * tail)


def paired_difference(before: Sequence[float], after: Sequence[float]) -> dict:
    """The paired difference of per-item scores (formulas in the module docstring)."""
    if len(before) != len(after) or not before:
        raise ValueError(f"need the same non-zero number of items, got {len(before)} and {len(after)}")
    n = len(before)
    d = [b - a for a, b in zip(before, after)]
    diff = sum(d) / n
    var = sum((x - diff) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n)
    p1, p2 = sum(before) / n, sum(after) / n
    out = dict(n=n, before=p1, after=p2, diff=diff, se=se, lo=diff - Z95 * se, hi=diff + Z95 * se,
               unpaired_se=math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n))
    if all(x in (0.0, 1.0) for x in list(before) + list(after)):
        only_before = sum(1 for a, b in zip(before, after) if a == 1.0 and b == 0.0)
        only_after = sum(1 for a, b in zip(before, after) if a == 0.0 and b == 1.0)
        out.update(only_before=only_before, only_after=only_after, mcnemar_p=mcnemar_p(only_before, only_after))
    return out


def compare_reports(before: dict, after: dict, benchmark: str | None = None) -> dict[str, dict]:
    """{benchmark: paired_difference} for every benchmark in both reports (or just `benchmark`)."""
    names = [n for n in before["benchmarks"] if n in after["benchmarks"]]
    if benchmark is not None:
        if benchmark not in names:
            raise ValueError(f"benchmark {benchmark!r} is not in both reports (both have {names})")
        names = [benchmark]
    if not names:
        raise ValueError("the two reports share no benchmark")
    out = {}
    for name in names:
        pa, sa = item_scores(before["benchmarks"][name])
        pb, sb = item_scores(after["benchmarks"][name])
        if pa != pb:
            first = next(i for i, (x, y) in enumerate(zip(pa, pb)) if x != y) if len(pa) == len(pb) else None
            raise ValueError(f"{name}: the reports score different items"
                             + (f" (first difference at item {first})" if first is not None
                                else f" ({len(pa)} vs {len(pb)} items)"))
        out[name] = paired_difference(sa, sb)
    return out


def format_row(name: str, r: dict) -> str:
    line = (f"{name}: n={r['n']}  before {100 * r['before']:.1f}%  after {100 * r['after']:.1f}%  "
            f"diff {100 * r['diff']:+.1f} points, 95% CI [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}] "
            f"(paired se {100 * r['se']:.2f}, unpaired {100 * r['unpaired_se']:.2f})")
    if "mcnemar_p" in r:
        line += (f"; right only before {r['only_before']}, only after {r['only_after']}, "
                 f"McNemar exact p={r['mcnemar_p']:.3g}")
    return line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m zeroplay.evaluation.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--benchmark", default=None, help="only this benchmark (default: all in both)")
    p.add_argument("--out", default=None, help="write the figures as JSON")
    a = p.parse_args(argv)
    try:
        reports = []
        for path in (a.before, a.after):
            with open(path) as f:
                reports.append(json.load(f))
        result = compare_reports(*reports, benchmark=a.benchmark)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    for name, r in result.items():
        print(format_row(name, r))
    if a.out:
        from zeroplay.evaluation.runner import write_report

        write_report(result, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
