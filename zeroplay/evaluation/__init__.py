"""Evaluation: benchmarks (TFDS builders over local files, reasoning-gym sets), protocols, scoring.

    from zeroplay.evaluation import evaluate, loop_evaluator
    report = evaluate(model, params, tokenizer, ["gsm8k", "rg:basic_arithmetic"], "default", limit=50)
    loop.run(cfg, workdir, evaluator=loop_evaluator(["gsm8k"], "default", limit=50))

The command line is `python -m zeroplay.eval` (zeroplay/eval.py).
"""
from zeroplay.evaluation.benchmarks import (BENCHMARKS, RG_EVAL_SEED, BenchmarkError, Item, build_benchmark,
                                            default_data_dir, load_benchmark)
from zeroplay.evaluation.protocols import PROTOCOLS, Protocol, resolve
from zeroplay.evaluation.runner import evaluate, evaluate_with, load_items, loop_evaluator, table, write_report
from zeroplay.evaluation.scoring import prompt_text, score

__all__ = ["BENCHMARKS", "RG_EVAL_SEED", "BenchmarkError", "Item", "build_benchmark", "default_data_dir",
           "load_benchmark", "PROTOCOLS", "Protocol", "resolve", "evaluate", "evaluate_with", "load_items",
           "loop_evaluator", "table", "write_report", "prompt_text", "score"]
