"""Host-side verifier throughput, each against a naive baseline measured in the same run.

    python benchmarks/verifiers.py [--repeats 3] [--naive 160] [--data_dir ../shared/data]

1. Executor: `code.run_batch` over the 800 CRUXEval programs (pooled workers that fork a
   locked-down child per program) vs a fresh `python -c` subprocess per program (two at a time,
   one per core; measured on the first `--naive` programs).
2. Math: `math.is_equivalent_batch` over 1000 typical (pred, gold) pairs built from MATH-500
   answers (formatting variants, sympy-level equivalents, wrong answers) vs math-verify called
   in-process, one pair after another, as a single-process trainer would.
Prints one JSON object per measurement and a summary table.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from zeroplay.verifiers import code
from zeroplay.verifiers import math as vm

ROOT = Path(__file__).resolve().parents[1]


def _jsonl(path: Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _naive_one(item: dict) -> bool:
    prog = item["code"] + f"\nprint(repr(f({item['input']})))\n"
    try:
        out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                             timeout=10, env={"PATH": os.defpath})
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0


def bench_executor(items: list[dict], repeats: int, naive_n: int) -> dict:
    pairs = [(d["code"], d["input"]) for d in items]
    t0 = time.perf_counter()
    pool = code.get_pool()
    layers = pool.layers()
    startup = time.perf_counter() - t0
    code.run_batch(pairs[:100], literal_inputs=False)  # warm the page cache and workers
    rates, results = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        results = code.run_batch(pairs, literal_inputs=False)
        rates.append(len(pairs) / (time.perf_counter() - t))
    correct = sum(code.check_output_prediction_batch(
        [(r.output or "", d["output"]) for r, d in zip(results, items)]))
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as ex:
        naive_ok = sum(ex.map(_naive_one, items[:naive_n]))
    naive_rate = naive_n / (time.perf_counter() - t)
    return {"what": "executor", "programs": len(pairs), "workers": len(pool.worker_pids()),
            "startup_s": round(startup, 3), "programs_per_s": [round(r) for r in rates],
            "programs_per_s_median": round(statistics.median(rates)),
            "reproduced": correct, "naive_subprocess_per_s": round(naive_rate),
            "naive_ok": f"{naive_ok}/{naive_n}",
            "speedup_vs_naive": round(statistics.median(rates) / naive_rate, 1),
            "layers": layers}


def typical_pairs(answers: list[str], n: int = 1000) -> list[tuple[str, str]]:
    """(pred, gold) pairs like a grader sees: 40% the gold reformatted, 30% an equivalent
    form sympy has to confirm, 30% a wrong answer (another problem's gold)."""
    pairs = []
    for i in range(n):
        gold = answers[i % len(answers)]
        kind = i % 10
        number = vm.as_number(vm.normalize_answer(gold))
        if kind < 4:
            pred = [f"${gold}$", gold.replace(r"\frac", r"\dfrac"), f" {gold}. ",
                    rf"\boxed{{{gold}}}"][kind]
        elif kind < 7:
            if number is not None:
                pred = rf"\frac{{{2 * number.numerator}}}{{2 \cdot {number.denominator}}}"
            else:
                pred = rf"1 \cdot ({gold})" if "," not in gold else f"\\left({gold}\\right)"
        else:
            pred = answers[(i * 7 + 3) % len(answers)]
        pairs.append((pred, gold))
    return pairs


def _inprocess_math_verify(pairs) -> list[bool]:
    from math_verify import parse, verify
    out = []
    for pred, gold in pairs:
        try:
            out.append(bool(verify(parse(f"${gold}$"), parse(f"${pred}$"))))
        except Exception:  # noqa: BLE001
            out.append(False)
    return out


def bench_math(answers: list[str], repeats: int) -> dict:
    pairs = typical_pairs(answers)
    fast = sum(vm._fast(p, g) is not None for p, g in pairs)
    vm.shutdown()
    t = time.perf_counter()
    cold_res = vm.is_equivalent_batch(pairs)
    cold = time.perf_counter() - t
    warm = []
    for _ in range(repeats):
        vm.shutdown()  # fresh workers each time: no parse cache carried over
        vm.is_equivalent("\\sqrt{4}", "2")  # start them outside the timing
        t = time.perf_counter()
        res = vm.is_equivalent_batch(pairs)
        warm.append(time.perf_counter() - t)
    hard = [(p, g) for p, g in pairs if vm._fast(p, g) is None]
    vm.shutdown()
    vm.is_equivalent("\\sqrt{4}", "2")
    t = time.perf_counter()
    vm.is_equivalent_batch(hard)
    hard_s = time.perf_counter() - t
    import logging
    logging.disable(logging.WARNING)
    t = time.perf_counter()
    ref = _inprocess_math_verify(pairs)
    inproc = time.perf_counter() - t
    agree = sum(a == b for a, b in zip(res, ref))
    return {"what": "math", "pairs": len(pairs), "fast_path_pairs": fast,
            "equivalent": sum(res), "cold_s_incl_pool_start": round(cold, 2),
            "warm_s": [round(w, 2) for w in warm], "warm_s_median": round(statistics.median(warm), 2),
            "pairs_per_s": round(len(pairs) / statistics.median(warm)),
            "sympy_only_pairs": len(hard), "sympy_only_s": round(hard_s, 2),
            "inprocess_math_verify_s": round(inproc, 2),
            "speedup_vs_inprocess": round(inproc / statistics.median(warm), 1),
            "agree_with_inprocess": f"{agree}/{len(pairs)}",
            "cold_agrees_with_warm": cold_res == res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive", type=int, default=160)
    ap.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    data = Path(args.data_dir)
    crux = _jsonl(data / "cruxeval" / "test.jsonl")
    answers = [d["answer"] for d in _jsonl(data / "math500" / "test.jsonl")]
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(),
               "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}
    print(json.dumps({"machine": machine}))
    ex = bench_executor(crux, args.repeats, args.naive)
    print(json.dumps(ex))
    ma = bench_math(answers, args.repeats)
    print(json.dumps(ma))
    print(f"\nexecutor: {ex['programs_per_s_median']} programs/s (runs {ex['programs_per_s']}), "
          f"naive subprocess {ex['naive_subprocess_per_s']}/s -> x{ex['speedup_vs_naive']}; "
          f"reproduced {ex['reproduced']}/{ex['programs']}")
    print(f"math: {ma['pairs']} pairs in {ma['warm_s_median']} s warm "
          f"({ma['pairs_per_s']} pairs/s), {ma['cold_s_incl_pool_start']} s cold; "
          f"{ma['sympy_only_pairs']} sympy-only pairs in {ma['sympy_only_s']} s; in-process "
          f"math-verify {ma['inprocess_math_verify_s']} s -> x{ma['speedup_vs_inprocess']}")


if __name__ == "__main__":
    main()
