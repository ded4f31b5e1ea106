"""`load_questions(source, size, seed)`: the sources behind `zeroplay.data`, one spec string each.

    rg:<task>          reasoning-gym procedural task (`reasoning_gym.create_dataset(task, size, seed,
                       **options)`): works offline on a fresh machine; the default source
    jsonl:<path>       JSON lines with `question` (or `problem` / `prompt`), optional `answer`,
                       `rephrasing`, `id`
    tfds:<path>        the same JSON lines through a TFDS builder (array_record, no TensorFlow,
                       prepared once beside the file), or a folder holding a prepared builder

File sources are shuffled with `seed` and cut to `size` (size <= 0: all of them).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Sequence

import numpy as np

QUESTION_KEYS = ("question", "problem", "prompt")


@dataclasses.dataclass(frozen=True)
class Question:
    id: str
    text: str
    answer: str | None = None  # truth: monitoring only (label_accuracy), never a training signal
    rephrasing: str | None = None  # a rewording with the same answer (Co-rewarding-I), when known


def _shared_data_dir() -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.realpath(os.path.join(root, "..", "shared", "data"))


def is_benchmark_path(path: str) -> bool:
    """Whether `path` lies in the shared benchmark folder (evaluation data, never training)."""
    real = os.path.realpath(path)
    shared = _shared_data_dir()
    return real == shared or real.startswith(shared + os.sep) or f"{os.sep}shared{os.sep}data{os.sep}" in real


def _text(x) -> str | None:
    if x is None:
        return None
    if isinstance(x, bytes):
        x = x.decode("utf-8")
    x = str(x)
    return x if x.strip() else None


def from_records(records: Sequence[Mapping], prefix: str) -> list[Question]:
    out = []
    for i, r in enumerate(records):
        q = next((_text(r[k]) for k in QUESTION_KEYS if _text(r.get(k)) is not None), None)
        if q is None:
            raise ValueError(f"{prefix}: record {i} has none of {QUESTION_KEYS}")
        rid = _text(r.get("id"))
        out.append(Question(id=f"{prefix}:{rid if rid is not None else i}", text=q, answer=_text(r.get("answer")),
                            rephrasing=_text(r.get("rephrasing"))))
    return out


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"question file {path} does not exist; point game.source at a JSON lines file")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def select(questions: list[Question], size: int, seed: int) -> list[Question]:
    """A seeded shuffle of the questions, cut to `size` (<= 0: all)."""
    order = np.random.default_rng(seed).permutation(len(questions))
    if size > 0:
        order = order[:size]
    return [questions[i] for i in order]


def reasoning_gym_questions(task: str, size: int, seed: int, options: Mapping | None = None) -> list[Question]:
    try:
        import reasoning_gym
    except ImportError:
        raise ImportError("the rg: question source needs reasoning-gym: pip install reasoning-gym") from None
    from zeroplay.data.rephrase import procedural_rephrasing

    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(options or {}).items()}
    data = reasoning_gym.create_dataset(task, size=max(int(size), 1), seed=int(seed), **opts)
    out = []
    for i, entry in enumerate(data):
        text = entry["question"]
        out.append(Question(id=f"rg:{task}:{seed}:{i}", text=text, answer=_text(entry.get("answer")),
                            rephrasing=procedural_rephrasing(text, entry.get("metadata") or {}, f"{task}:{seed}:{i}")))
    return out


def load_questions(source: str, *, size: int, seed: int, options: Mapping | None = None,
                   test_time: bool = False) -> list[Question]:
    """The questions of `source` (see the module docstring)."""
    kind, sep, rest = str(source).partition(":")
    if not sep or not rest:
        raise ValueError(f"question source {source!r}: use rg:<task>, jsonl:<path> or tfds:<path>")
    if kind == "rg":
        return reasoning_gym_questions(rest, size, seed, options)
    if kind not in ("jsonl", "tfds"):
        raise ValueError(f"question source {source!r}: unknown kind {kind!r} (rg, jsonl, tfds)")
    path = os.path.expanduser(rest)
    if is_benchmark_path(path) and not test_time:
        raise ValueError(f"{path} is a shared benchmark set (evaluation only); only TTRL's test-time mode "
                         "(game.test_time=True) may train on it")
    if kind == "jsonl":
        records = read_jsonl(path)
    else:
        from zeroplay.data.tfds_source import read_tfds

        records = read_tfds(path, **dict(options or {}))
    return select(from_records(records, os.path.basename(path.rstrip(os.sep))), size, seed)
