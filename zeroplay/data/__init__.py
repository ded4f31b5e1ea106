"""Unlabeled question sources for the label-free games (Co-rewarding, TTRL, RENT, Intuitor).

    questions = load_questions("rg:basic_arithmetic", size=500, seed=1)       # procedural, offline
    questions = load_questions("jsonl:/data/math_train.jsonl", size=7500, seed=0)
    questions = load_questions("tfds:/data/math_train.jsonl", size=7500, seed=0)  # array_record builder

Each item is a `Question(id, text, answer, rephrasing)`. `answer` is the generator's or file's
truth: the games never train on it, they only report how often their pseudo-label equals it
(`label_accuracy`). The shared benchmark sets (`../shared/data`) are evaluation data: loading one
raises unless `test_time=True` (TTRL's test-time mode, which says so in its config).
"""
from __future__ import annotations

from zeroplay.data.questions import Question, is_benchmark_path, load_questions, select
from zeroplay.data.rephrase import (parse_rephrasing, procedural_rephrasing, read_rephrasings, rephrase_prompt,
                                    write_rephrasings)

__all__ = ["Question", "load_questions", "select", "is_benchmark_path", "procedural_rephrasing", "rephrase_prompt",
           "parse_rephrasing", "read_rephrasings", "write_rephrasings"]
