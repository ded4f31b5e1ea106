"""Verifier executor throughput while the sampler runs on the same cores, per CPU kernel source.

    python benchmarks/executor_under_sampler.py [--old-rev REV] [--seconds 15] [--solo 8] [--repeats 2]

The self-play loop runs the rollout sampler (the fused CPU kernel and its thread team) and the code
executor (`zeroplay.verifiers.code.run_batch`, pooled sandbox workers forking a child per program)
on the same machine. A thread team that spins while it waits takes cores the executor needs. This
measures, in one run:
  - the executor alone: CRUXEval programs/s (800 programs per `run_batch`, repeated);
  - for each kernel (the working tree's, and with --old-rev the cpu_decode.cc of that git revision,
    built into the usual cache under its own key), in turns: the sampler alone (tok/s), then the
    executor and the sampler together (programs/s and tok/s).
The sampler is another process (`generate` in a loop on a random Qwen2 of the peer shape: vocab
32000, hidden 256, 4 layers, FFN 1024; batch 8, prompt 32, 128 new tokens, temperature 1, no eos),
with the kernel team at its default size (the CPUs the process may use) unless --threads. Windows
are wall-clock; the sampler's tokens are those of the calls inside the window (pro rata for calls
that straddle it), and its CPU time per token (all its threads) says how much of the cores it
takes, which other processes' load disturbs less than the rates. Load averages are printed with
each figure: other processes share the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = dict(family="qwen2", vocab_size=32000, hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=4,
            num_kv_heads=4, tie_word_embeddings=True, attention_bias=True)


def sampler_process(source: str | None, batch: int, prompt: int, new: int) -> None:
    """Child: build the kernel (from `source` if given), compile, say ready, then generate forever,
    one JSON line per call: {"start", "end", "tokens"} on the system-wide monotonic clock."""
    import jax
    import numpy as np

    import zeroplay.kernels as kernels

    if source:
        kernels._SOURCE = Path(source).resolve()
    assert kernels.cpu_decode_available(), kernels.cpu_decode_unavailable_reason()
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import machine_rates
    from zeroplay.models import ModelConfig, init_params
    from zeroplay.sampling import generate

    model, params = init_params(ModelConfig(**PEER), jax.random.PRNGKey(0))
    prompts = [list(r) for r in np.random.RandomState(0).randint(0, PEER["vocab_size"], (batch, prompt))]

    def once(seed):
        out = generate(model, params, prompts, max_new_tokens=new, temperature=1.0, rng=jax.random.PRNGKey(seed),
                       decode_kernel="cpu")
        assert int(out.lengths.min()) == new

    once(0)  # compile
    flops, bw = machine_rates()
    print(json.dumps({"ready": True, "matmul_gflops": flops / 1e9, "copy_gbs": bw / 1e9}), flush=True)
    for seed in range(1, 10 ** 9):
        t, cpu = time.monotonic(), time.process_time()
        once(seed)
        print(json.dumps({"start": t, "end": time.monotonic(), "tokens": batch * new,
                          "cpu": time.process_time() - cpu}), flush=True)


def rates_in(calls: list[dict], t0: float, t1: float) -> tuple[float, float]:
    """(tokens/s, CPU ms per token) over [t0, t1], each call counted in proportion to its overlap.
    CPU is the sampler process's, all threads (the kernel team's included): what it takes from
    the cores, whatever the other processes on the machine do."""
    tokens = cpu = 0.0
    for c in calls:
        overlap = min(t1, c["end"]) - max(t0, c["start"])
        if overlap > 0:
            share = overlap / (c["end"] - c["start"])
            tokens += c["tokens"] * share
            cpu += c["cpu"] * share
    return tokens / (t1 - t0), 1e3 * cpu / max(tokens, 1e-9)


def executor_for(seconds: float, pairs) -> float:
    """Programs/s of back-to-back run_batch calls for about `seconds` (whole batches)."""
    from zeroplay.verifiers import code

    done, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        res = code.run_batch(pairs, literal_inputs=False)
        assert sum(r.ok for r in res) > 0.9 * len(pairs)
        done += len(pairs)
    return done / (time.monotonic() - t0)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def one_kernel(name: str, source: str | None, args, pairs) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if args.threads:
        env["ZEROPLAY_CPU_KERNEL_THREADS"] = str(args.threads)
    cmd = [sys.executable, __file__, "--sampler", *(["--source", source] if source else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    calls: list[dict] = []
    ready = json.loads(proc.stdout.readline())
    import threading

    def read():
        for line in proc.stdout:
            calls.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        t0 = time.monotonic()
        load0 = load()
        time.sleep(args.solo)
        t1 = time.monotonic()
        load1 = load()
        ex = executor_for(args.seconds, pairs)
        t2 = time.monotonic()
        load2 = load()
        time.sleep(1.0)  # let the call in flight at t2 finish, so it is counted pro rata
    finally:
        proc.terminate()
        proc.wait()
    reader.join(timeout=5)
    solo, shared = rates_in(calls, t0, t1), rates_in(calls, t1, t2)
    row = {"kernel": name, "sampler_alone_tok_s": solo[0], "sampler_alone_cpu_ms_per_tok": solo[1],
           "load_solo": f"{load0} -> {load1}", "executor_shared_per_s": ex, "sampler_shared_tok_s": shared[0],
           "sampler_shared_cpu_ms_per_tok": shared[1], "load_shared": load2,
           "matmul_gflops": ready["matmul_gflops"], "copy_gbs": ready["copy_gbs"]}
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-rev", help="also measure the kernel source of this git revision (e.g. the one before a fix)")
    ap.add_argument("--seconds", type=float, default=15.0, help="executor window with the sampler running")
    ap.add_argument("--solo", type=float, default=8.0, help="sampler-alone window")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, help="ZEROPLAY_CPU_KERNEL_THREADS for the sampler (default: its CPUs)")
    ap.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sampler", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sampler:
        return sampler_process(args.source, 8, 32, 128)

    with open(Path(args.data_dir) / "cruxeval" / "test.jsonl") as fh:
        pairs = [(d["code"], d["input"]) for d in map(json.loads, fh) if d]
    kernels = [("working tree", None)]
    tmp = tempfile.TemporaryDirectory()
    if args.old_rev:
        old = Path(tmp.name) / "cpu_decode.cc"
        old.write_text(subprocess.run(["git", "show", f"{args.old_rev}:zeroplay/kernels/cpu_decode.cc"], cwd=ROOT,
                                      capture_output=True, text=True, check=True).stdout)
        kernels.insert(0, (f"{args.old_rev} (before)", str(old)))
    print(f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs usable, "
          f"python {platform.python_version()}; load average {load()} (1/5/15 min)")
    from zeroplay.verifiers import code

    pool = code.get_pool()
    pool.layers()
    code.run_batch(pairs[:100], literal_inputs=False)  # warm the workers
    alone = [executor_for(args.seconds, pairs)]
    print(json.dumps({"executor_alone_per_s": alone[-1], "load": load()}), flush=True)
    rows = []
    for _ in range(args.repeats):
        for name, source in kernels:
            rows.append(one_kernel(name, source, args, pairs))
    alone.append(executor_for(args.seconds, pairs))
    print(json.dumps({"executor_alone_per_s": alone[-1], "load": load()}), flush=True)

    print(f"\nexecutor alone: {' / '.join(f'{x:.0f}' for x in alone)} programs/s (start / end)")
    print("| kernel | sampler alone: tok/s, CPU ms/tok | executor with sampler: programs/s (of alone) "
          "| sampler with executor: tok/s, CPU ms/tok | load (1 min) |")
    print("|---|---|---|---|---|")
    base = statistics.mean(alone)
    for name, _ in kernels:
        mine = [r for r in rows if r["kernel"] == name]
        fmt = lambda key, f=".0f": " / ".join(f"{r[key]:{f}}" for r in mine)
        kept = statistics.mean(r["executor_shared_per_s"] for r in mine) / base
        print(f"| {name} | {fmt('sampler_alone_tok_s')}; {fmt('sampler_alone_cpu_ms_per_tok', '.2f')} | "
              f"{fmt('executor_shared_per_s')} ({kept:.0%}) | "
              f"{fmt('sampler_shared_tok_s')}; {fmt('sampler_shared_cpu_ms_per_tok', '.2f')} | "
              f"{' / '.join(r['load_shared'].split('/')[0] for r in mine)} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
