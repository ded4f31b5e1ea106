"""Evaluation benchmarks: TFDS builders over the local files, and reasoning-gym procedural sets.

    items = load_benchmark("gsm8k", data_dir="../shared/data", limit=50)   # list[Item]
    items = load_benchmark("rg:basic_arithmetic", limit=50)                # generated, fixed seed

Each file benchmark is read through a `tensorflow_datasets` `GeneratorBasedBuilder` (array_record
files, no TensorFlow, never a download) prepared once into `$ZEROPLAY_CACHE/tfds` (default
`~/.cache/zeroplay/tfds`), keyed by the source file's path, size and mtime. The builder stores one
normalised schema for every benchmark: `index`, `question`, `answer` (the gold answer as text) and
`meta` (JSON: what the scorer needs beyond that: CRUXEval's code, HumanEval's tests...).

`rg:<task>` generates reasoning-gym's task from `RG_EVAL_SEED`, a seed no training config uses;
`rg:<task>:key=value:...` passes the task's own settings (`rg:basic_arithmetic:min_terms=2:max_terms=2`).
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import logging
import os
from typing import Any, Callable

RG_EVAL_SEED = 1_000_003  # never used by a training config: held-out procedural items
RG_DEFAULT_SIZE = 200  # items of a reasoning-gym set when no --limit is given
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BenchmarkError(ValueError):
    """An unknown benchmark or a missing data file (one line)."""


@dataclasses.dataclass
class Item:
    """One evaluation item in the common schema."""
    index: int
    question: str
    answer: str
    meta: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Spec:
    """A file benchmark: where its file lies under the data folder, how a row becomes an Item,
    and which scorer (`kind`) grades it."""
    name: str
    path: str  # relative to the data folder
    kind: str  # "math", "gsm8k", "cruxeval_output", "cruxeval_input", "humaneval"
    normalize: Callable[[dict], tuple[str, str, dict]]


def _gsm8k(r):
    return r["question"], r["answer"].rsplit("####", 1)[1].strip().replace(",", ""), {}


def _plain_number(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _problem_answer(r):
    return r.get("problem") or r["question"], _plain_number(r["answer"]), {}


def _minerva(r):
    from zeroplay.verifiers.math import extract_boxed

    return r["problem"], extract_boxed(r["solution"]) or "", {}


def _olympiad(r):
    answers = [a.strip().strip("$").strip() for a in (r.get("final_answer") or [])]
    q = r["question"] if not r.get("context") else f"{r['context']}\n\n{r['question']}"
    return q, ", ".join(answers), {"unit": r.get("unit"), "multiple": bool(r.get("is_multiple_answer"))}


def _crux_output(r):
    return r["code"], r["output"], {"code": r["code"], "input": r["input"], "id": r.get("id")}


def _humaneval(r):
    return r["prompt"], r.get("canonical_solution", ""), {
        "task_id": r["task_id"], "prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"]}


SPECS: dict[str, Spec] = {s.name: s for s in [
    Spec("gsm8k", "gsm8k/test.jsonl", "gsm8k", _gsm8k),
    Spec("math500", "math500/test.jsonl", "math", _problem_answer),
    Spec("aime24", "aime24/test.jsonl", "math", _problem_answer),
    Spec("amc23", "amc23/test.jsonl", "math", _problem_answer),
    Spec("minerva_math", "minerva_math/test.jsonl", "math", _minerva),
    Spec("olympiadbench", "olympiadbench/test.jsonl", "math", _olympiad),
    Spec("cruxeval", "cruxeval/test.jsonl", "cruxeval_output", _crux_output),
    Spec("cruxeval_input", "cruxeval/test.jsonl", "cruxeval_input", _crux_output),
    Spec("humaneval", "humaneval/HumanEval.jsonl.gz", "humaneval", _humaneval),
]}
BENCHMARKS = tuple(SPECS)


def kind_of(name: str) -> str:
    if name.startswith("rg:"):
        return "rg"
    if name not in SPECS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}, or rg:<task>")
    return SPECS[name].kind


def default_data_dir() -> str | None:
    """`../shared/data` relative to the project root, when present."""
    d = os.path.normpath(os.path.join(_PROJECT_ROOT, "..", "shared", "data"))
    return d if os.path.isdir(d) else None


def cache_dir() -> str:
    root = os.environ.get("ZEROPLAY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zeroplay")
    return os.path.join(root, "tfds")


def _read_rows(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# -- the TFDS builder ---------------------------------------------------------------------------

def _builder_class():
    import numpy as np
    import tensorflow_datasets as tfds

    class LocalBenchmark(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """One benchmark file in the common schema (array_record, no TensorFlow, no download)."""
        VERSION = tfds.core.Version("1.0.0")

        def __init__(self, *, spec: Spec, source: str, **kw):
            self._spec, self._source = spec, source
            self.name = f"zeroplay_{spec.name}"
            super().__init__(**kw)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, description=f"{self._spec.name} from {self._source}", disable_shuffling=True,
                features=tfds.features.FeaturesDict({
                    "index": np.int64, "question": tfds.features.Text(), "answer": tfds.features.Text(),
                    "meta": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"test": self._generate_examples()}

        def _generate_examples(self):
            for i, row in enumerate(_read_rows(self._source)):
                q, a, meta = self._spec.normalize(row)
                yield i, {"index": i, "question": q, "answer": a, "meta": json.dumps(meta)}

    return LocalBenchmark


def _source_key(path: str) -> str:
    st = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]


def build_benchmark(name: str, data_dir: str | None = None):
    """The prepared TFDS builder of a file benchmark (prepared into the cache on first use)."""
    import tensorflow_datasets as tfds

    kind_of(name)
    if name.startswith("rg:"):
        raise BenchmarkError(f"{name} is procedural (reasoning-gym): it has no TFDS builder")
    spec = SPECS[name]
    data_dir = data_dir or default_data_dir()
    if data_dir is None:
        raise BenchmarkError("no benchmark data folder: pass --data_dir (the folder holding gsm8k/, math500/, ...)")
    if not os.path.isdir(data_dir):
        raise BenchmarkError(f"benchmark data folder {data_dir} does not exist")
    source = os.path.join(data_dir, spec.path)
    if not os.path.isfile(source):
        raise BenchmarkError(f"benchmark {name}: no file {source} (is --data_dir the folder holding {spec.path}?)")
    tfds.disable_progress_bar()
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)  # tfds' chatter: "Variant folder ... has no dataset_info.json", "preparing"
    try:
        builder = _builder_class()(spec=spec, source=source, file_format="array_record",
                                   data_dir=os.path.join(cache_dir(), _source_key(source)))
        if not builder.is_prepared():
            with contextlib.redirect_stdout(io.StringIO()):
                builder.download_and_prepare()
    finally:
        absl_log.setLevel(level)
    return builder


def _file_items(name: str, data_dir: str | None, limit: int | None) -> list[Item]:
    source = build_benchmark(name, data_dir).as_data_source(split="test")
    n = len(source) if limit is None else min(limit, len(source))
    out = []
    for i in range(n):
        ex = source[i]
        text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)
        out.append(Item(int(ex["index"]), text(ex["question"]), text(ex["answer"]), json.loads(text(ex["meta"]))))
    return out


# -- reasoning-gym --------------------------------------------------------------------------------

def parse_rg(name: str) -> tuple[str, dict[str, Any]]:
    """`rg:task[:key=value...]` -> (task, settings); values are Python literals or plain words."""
    parts = name[len("rg:"):].split(":")
    task, kw = parts[0], {}
    if not task:
        raise BenchmarkError(f"{name!r}: name a reasoning-gym task, e.g. rg:basic_arithmetic")
    for p in parts[1:]:
        key, sep, value = p.partition("=")
        if not sep or not key.isidentifier():
            raise BenchmarkError(f"{name!r}: settings are key=value, got {p!r}")
        try:
            kw[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kw[key] = value
    return task, kw


@functools.lru_cache(maxsize=16)
def rg_dataset(name: str, size: int):
    """The reasoning-gym dataset of `rg:task[:settings]`, `size` items from the evaluation seed."""
    try:
        import reasoning_gym
    except ImportError:
        raise BenchmarkError("rg:<task> needs reasoning-gym: pip install reasoning-gym") from None
    task, kw = parse_rg(name)
    try:
        return reasoning_gym.create_dataset(task, size=size, seed=RG_EVAL_SEED, **kw)
    except (ValueError, TypeError, AssertionError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BenchmarkError(f"reasoning-gym task {task!r}: {msg}") from None


def _rg_items(name: str, limit: int | None) -> tuple[list[Item], Any]:
    ds = rg_dataset(name, limit or RG_DEFAULT_SIZE)
    items = []
    for i in range(len(ds)):
        e = ds[i]
        items.append(Item(i, e["question"], str(e["answer"]), {"entry": e}))
    return items, ds


def load_benchmark(name: str, data_dir: str | None = None, limit: int | None = None) -> list[Item]:
    """The first `limit` items of a benchmark (all when None). For `rg:` sets the items' meta
    holds the reasoning-gym entry; `limit` is the number generated."""
    kind_of(name)
    if name.startswith("rg:"):
        return _rg_items(name, limit)[0]
    return _file_items(name, data_dir, limit)
