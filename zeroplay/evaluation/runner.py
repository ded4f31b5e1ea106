"""Run benchmarks through a model and build the report.

    report = evaluate(model, params, tokenizer, ["gsm8k", "rg:basic_arithmetic"], "default", limit=50)
    report["benchmarks"]["gsm8k"]["accuracy"]

The core, `evaluate_with`, sees the model only as two functions: `encode(text) -> prompt ids` and
`sample(prompts, n, temperature, top_p, top_k, max_new_tokens) -> [N][n] texts`; `evaluate` builds
them from (model, params, tokenizer) and `loop_evaluator` from the training loop's `ctx`.

Report: `protocol` (the settings used), `benchmarks` mapping each name to `accuracy` (avg@k: the
mean over items of the share of correct samples), `n` (items), `num_samples` (k), `avg@k`,
`pass@k` (share of items with at least one correct sample), `max_new_tokens`, `seconds` and
`items`: per item the prompt, the gold answer, the responses, the extracted answers, `correct`
per response (and reasoning-gym's `score`).
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from zeroplay.evaluation.benchmarks import RG_DEFAULT_SIZE, Item, kind_of, load_benchmark
from zeroplay.evaluation.protocols import Protocol, resolve
from zeroplay.evaluation.scoring import prompt_text, score
from zeroplay.models.tokenizer import eos_ids

SampleTexts = Callable[..., list[list[str]]]


def _as_protocol(protocol) -> Protocol:
    return protocol if isinstance(protocol, Protocol) else resolve(protocol or "default")


def load_items(benchmarks: Sequence[str], data_dir: str | None = None, limit: int | None = None
               ) -> dict[str, list[Item]]:
    """Every benchmark's items, loaded before any sampling (so bad names fail fast)."""
    for name in benchmarks:
        kind_of(name)
    return {name: load_benchmark(name, data_dir, limit) for name in benchmarks}


def evaluate_with(sample: SampleTexts, encode: Callable[[str], list[int]], items: dict[str, list[Item]],
                  protocol, *, batch_rows: int = 64, max_positions: int | None = None, progress: bool = True,
                  rg_size: int | None = None) -> dict:
    """The report for `items` ({benchmark: items}) under `protocol` (a name or a Protocol)."""
    from tqdm import tqdm

    proto = _as_protocol(protocol)
    total = sum(len(v) for v in items.values())
    bar = tqdm(total=total, disable=not progress, unit="item", dynamic_ncols=True)
    report = {"protocol": proto.to_dict(), "benchmarks": {}}
    try:
        for name, its in items.items():
            t0 = time.perf_counter()
            kind = kind_of(name)
            k = proto.samples_for(name)
            max_new = proto.max_new_tokens_for(kind)
            texts = [prompt_text(kind, it) for it in its]
            prompts = [list(encode(t)) for t in texts]
            if max_positions:
                if max_new >= max_positions:
                    max_new = max_positions // 2
                prompts = [p[-(max_positions - max_new):] for p in prompts]
            responses: list[list[str] | None] = [None] * len(its)
            order = sorted(range(len(its)), key=lambda i: len(prompts[i]))  # similar lengths batch together
            chunk = max(1, batch_rows // k)
            bar.set_postfix_str(name)
            for lo in range(0, len(order), chunk):
                idx = order[lo:lo + chunk]
                out = sample([prompts[i] for i in idx], k, proto.temperature, proto.top_p, proto.top_k, max_new)
                for i, rs in zip(idx, out):
                    responses[i] = list(rs)
                bar.update(len(idx))
            extracted, scores = score(name, its, responses, rg_size=rg_size)
            records, per_item = [], []
            for it, text, rs, ex, sc in zip(its, texts, responses, extracted, scores):
                correct = [bool(s >= 1.0) for s in sc]
                rec = {"index": it.index, "prompt": text, "gold": it.answer, "responses": rs, "extracted": ex,
                       "correct": correct}
                if kind == "rg":
                    rec["score"] = sc
                records.append(rec)
                per_item.append(correct)
            acc = np.array(per_item, dtype=np.float64).reshape(len(its), k) if its else np.zeros((0, k))
            avg = float(acc.mean()) if acc.size else 0.0
            entry = {"accuracy": avg, "n": len(its), "num_samples": k, f"avg@{k}": avg,
                     f"pass@{k}": float(acc.max(axis=1).mean()) if acc.size else 0.0, "kind": kind,
                     "max_new_tokens": max_new, "seconds": round(time.perf_counter() - t0, 2), "items": records}
            if kind == "rg":
                entry["score"] = float(np.mean([np.mean(r["score"]) for r in records])) if records else 0.0
            report["benchmarks"][name] = entry
    finally:
        bar.close()
    return report


def evaluate(model, params, tokenizer, benchmarks: Sequence[str], protocol="default", *,
             data_dir: str | None = None, limit: int | None = None, seed: int = 0, batch_rows: int = 64,
             progress: bool = True, mesh=None, rules=None, items: dict[str, list[Item]] | None = None) -> dict:
    """Evaluate a model (zeroplay `Decoder` + params + `transformers` tokenizer) on `benchmarks`
    (names from `zeroplay.evaluation.BENCHMARKS` or `rg:<task>`) under `protocol` ("default", "azr",
    "cpmobius", "ttrl" or a `Protocol`); the first `limit` items of each (or the already loaded
    `items`, {name: items}). Returns the report dict (module docstring)."""
    import jax

    from zeroplay.sampling import chat_prompts, generate

    if items is None:
        items = load_items(benchmarks, data_dir, limit)
    eos = eos_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    calls = [0]

    def sample(prompts, n, temperature, top_p, top_k, max_new_tokens):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), calls[0])
        calls[0] += 1
        res = generate(model, params, prompts, max_new_tokens=max_new_tokens, num_samples=n,
                       temperature=temperature, top_p=top_p, top_k=top_k, eos_token_ids=eos, rng=key,
                       pad_token_id=pad, mesh=mesh, rules=rules)
        return [[tokenizer.decode([int(t) for t in res.tokens[i, g, :int(res.lengths[i, g])]],
                                  skip_special_tokens=True) for g in range(n)] for i in range(len(prompts))]

    encode = lambda text: chat_prompts(tokenizer, [text])[0]
    max_pos = getattr(getattr(model, "cfg", None), "max_position_embeddings", None)
    report = evaluate_with(sample, encode, items, protocol, batch_rows=batch_rows, max_positions=max_pos,
                           progress=progress, rg_size=limit or RG_DEFAULT_SIZE)
    report["limit"] = limit
    report["seed"] = seed
    return report


def loop_evaluator(benchmarks: Sequence[str], protocol="default", limit: int | None = None, *,
                   role: str = "solver", data_dir: str | None = None, report_dir: str | None = None
                   ) -> Callable:
    """`evaluator(step, ctx) -> {benchmark: accuracy}` for `zeroplay.loop.run(..., evaluator=...)`.

    It samples through `ctx.sample(role, ...)` (the role's live policy params, the loop's own
    sampler and keys) with the protocol's settings, builds prompts with `ctx.chat` (the chat
    template) or `ctx.encode`, and, with `report_dir`, writes each full report to
    `report_dir/eval_<step>.json` (multi-host: every process samples, process 0 writes). The items
    are loaded (and bad names rejected) right here.
    """
    import jax

    from zeroplay.games import Sampling

    proto = _as_protocol(protocol)
    items = load_items(benchmarks, data_dir, limit)

    def evaluator(step: int, ctx) -> dict:
        def sample(prompts, n, temperature, top_p, top_k, max_new_tokens):
            rows = ctx.sample(role, prompts, n, Sampling(temperature=temperature, top_p=top_p, top_k=top_k,
                                                         max_new_tokens=max_new_tokens))
            return [[c.text for c in row] for row in rows]

        encode = ctx.chat or ctx.encode
        report = evaluate_with(sample, encode, items, proto, progress=False, rg_size=limit or RG_DEFAULT_SIZE)
        if report_dir and jax.process_index() == 0:
            write_report({**report, "step": step, "role": role}, f"{report_dir}/eval_{step}.json")
        return {name: b["accuracy"] for name, b in report["benchmarks"].items()}

    return evaluator


def write_report(report: dict, path: str) -> None:
    """Write atomically (a temp file renamed): an interrupted run leaves nothing half-written."""
    import json
    import os
    import tempfile

    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".json", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def table(report: dict) -> str:
    """A plain-text table: benchmark, n, k, accuracy (avg@k), pass@k, seconds."""
    rows = [("benchmark", "n", "k", "accuracy", "pass@k", "seconds")]
    for name, b in report["benchmarks"].items():
        k = b["num_samples"]
        rows.append((name, str(b["n"]), str(k), f"{100 * b['accuracy']:.1f}%", f"{100 * b[f'pass@{k}']:.1f}%",
                     f"{b.get('seconds', 0):.1f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    fmt = lambda r: "  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths)))
    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
    p = report.get("protocol", {})
    lines.append(f"protocol {p.get('name')}: temperature {p.get('temperature')}, top_p {p.get('top_p')}")
    return "\n".join(lines)
