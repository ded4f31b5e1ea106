"""Evaluate a model on reasoning benchmarks.

    python -m zeroplay.eval --model NAME_OR_PATH_OR_CHECKPOINT --benchmarks gsm8k,math500
        [--protocol default|azr|cpmobius|ttrl] [--num_samples K] [--temperature T] [--top_p P]
        [--max_new_tokens N] [--limit N] [--data_dir DIR] [--out report.json] [--role solver]

--model: the embedded name "smollm2-135m-instruct", a Hugging Face folder, a zeroplay run folder
(its latest checkpoint; --role picks the policy) or a checkpoint step folder DIR/checkpoints/<step>.
--benchmarks: gsm8k, math500, aime24, amc23, minerva_math, olympiadbench, cruxeval (output
prediction), cruxeval_input (input prediction, executed), humaneval (tests executed), and rg:<task>
(reasoning-gym, generated from a fixed evaluation seed; rg:<task>:key=value:... sets the task's options).
--data_dir: the folder holding gsm8k/, math500/, ... (default ../shared/data next to the project).
Prints a table; --out writes the JSON report (`benchmarks`: name -> accuracy, n, pass@k, items...),
atomically: an interrupted run writes nothing. Also the console script `zeroplay-eval`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zeroplay.eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="embedded name, HF folder, run folder or checkpoint step folder")
    p.add_argument("--benchmarks", required=True, help="comma-separated names (gsm8k,math500,rg:basic_arithmetic)")
    p.add_argument("--protocol", default="default", help="default | azr | cpmobius | ttrl")
    p.add_argument("--num_samples", type=int, default=None, help="samples per item (replaces the protocol's)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top_p", type=float, default=None)
    p.add_argument("--max_new_tokens", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="first N items of each benchmark")
    p.add_argument("--data_dir", default=None, help="benchmark files (default ../shared/data)")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--role", default="solver", help="for a run folder: the role whose policy to evaluate")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--batch_rows", type=int, default=64, help="sequences per sampler call")
    p.add_argument("--dtype", default="float32", help="compute dtype (float32, bfloat16)")
    p.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    return p


def split_names(text: str) -> list[str]:
    """Comma-separated benchmark names; commas inside brackets or quotes belong to an `rg:` setting
    (`rg:basic_arithmetic:operators=('+','-'),gsm8k` is two names)."""
    names, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            names.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    names.append("".join(cur).strip())
    return [n for n in names if n]


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from zeroplay.evaluation import BenchmarkError, load_items, resolve, table, write_report
    from zeroplay.evaluation.models import ModelPathError, check_model_path, load_for_eval

    try:
        names = split_names(args.benchmarks)
        if not names:
            raise ValueError("--benchmarks names no benchmark")
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        if args.data_dir is not None and not os.path.isdir(args.data_dir):
            raise BenchmarkError(f"--data_dir {args.data_dir}: no such folder")
        proto = resolve(args.protocol, num_samples=args.num_samples, temperature=args.temperature,
                        top_p=args.top_p, max_new_tokens=args.max_new_tokens)
        t0 = time.perf_counter()
        check_model_path(args.model)
        items = load_items(names, args.data_dir, args.limit)  # bad names and missing files fail here
        model, params, tokenizer, info = load_for_eval(args.model, role=args.role, dtype=args.dtype)
        report = _run(model, params, tokenizer, items, proto, args)
        report.update(info)
        report["wall_seconds"] = round(time.perf_counter() - t0, 2)
        print(table(report))
        if args.out:
            write_report(report, args.out)
            print(f"report written to {args.out}")
    except (BenchmarkError, ModelPathError, ValueError, FileNotFoundError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no report written", file=sys.stderr)
        return 130
    return 0


def _run(model, params, tokenizer, items, proto, args) -> dict:
    from zeroplay.evaluation import evaluate

    return evaluate(model, params, tokenizer, list(items), proto, limit=args.limit, seed=args.seed,
                    batch_rows=args.batch_rows, progress=not args.no_progress, items=items)


if __name__ == "__main__":
    sys.exit(main())
