"""Whole self-play steps on the embedded model, broken down by stage (issue #16 item 1).

    python benchmarks/selfplay_step.py [--configs azr,pasodoble,co_rewarding_ii] [--steps 2] [--out steps.json]
    python benchmarks/selfplay_step.py --variant tiny      # the same on random tiny models (seconds)
    python benchmarks/selfplay_step.py --configs co_rewarding_ii --continuous on   # loop.continuous_batching

Runs each config's default variant (SmolLM2-135M-Instruct) for `--steps` steps through
`zeroplay.loop.run` in a scratch folder, evaluation off, and prints the last step's stages from its
metrics row: sampling per role, verification, scoring, prompts, teacher update, training per policy,
checkpoint, and "other" (the step's wall time minus the stages: Python bookkeeping between them).
The first step compiles every program, so with --steps 2 the table is the second step's; the
first step's total is printed beside it.

Host-side stages (verify, score, prompts, checkpoint, other) are flagged when above 10% of the
step. Rooflines, from the machine's rates measured in the same run:
- train: 6 x params x trained tokens / matmul rate (a floor: padding and the LM head's chunks are
  not counted, nor remat's extra forward);
- sample: the decode steps of the role's calls (`sample/<role>/decode_steps`) x the weight bytes /
  memory bandwidth (each decode step reads every weight once).
The long tail: `sample/<role>/finished_row_share`, the share of decoded row-steps spent on rows
that had already finished.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

HOST_STAGES = ("time/verify", "time/score", "time/prompts", "time/checkpoint", "other")


def load_config(name: str, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(ROOT, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def stages(row: dict) -> dict[str, float]:
    """The step's top-level stages (seconds) and `other`, the rest of the step's wall time."""
    top = {k: v for k, v in row.items() if k.startswith("time/") and k.count("/") == 1 and k != "time/step"}
    detail = {k: v for k, v in row.items() if k.startswith(("time/sample/", "time/train/"))}
    out = {**top, **detail, "other": max(0.0, row["time/step"] - sum(top.values()))}
    return out


def run_one(name: str, steps: int, workdir: str, variant: str | None = None,
            continuous: bool | None = None) -> tuple[list[dict], int]:
    """(the metrics rows of `steps` steps, the parameter count of the first policy's model)."""
    from train_step import SMOLLM2_135M

    from zeroplay import loop, runconfig
    from zeroplay.memory import model_config

    c = load_config(name, variant)
    c.steps = steps
    c.loop.progress = False
    c.loop.eval_every = 0
    c.loop.eval_at_start = False
    if continuous is not None:
        c.loop.continuous_batching = continuous
    if "eval_benchmarks" in c.loop:
        c.loop.eval_benchmarks = ()
    cfg = runconfig.parse(c)
    spec = next(iter(cfg.policies.values()))
    params = model_config(spec).num_params() if spec.model.shape else SMOLLM2_135M.num_params()
    return loop.run(cfg, workdir, log=lambda s: None), params


def table(name: str, rows: list[dict], rates: tuple[float, float], params: int, weight_bytes: int) -> dict:
    flops_rate, bandwidth = rates
    last = rows[-1]
    st = stages(last)
    step = last["time/step"]
    print(f"\n{name} ({params / 1e6:.1f}M params): step {last['step']} of {len(rows)} "
          f"(step 1 with compilation: {rows[0]['time/step']:.1f} s)")
    print(f"{'stage':28s} {'seconds':>9s} {'share':>7s}  roofline")
    result = {"step_s": step, "first_step_s": rows[0]["time/step"], "stages": {}}
    for k, v in sorted(st.items(), key=lambda kv: -kv[1]):
        if v < 1e-3 and k not in HOST_STAGES:
            continue
        roof = ""
        if k.startswith("time/train/"):
            pol = k.split("/", 2)[2]
            tokens = last.get(f"{pol}/tokens", 0.0)
            floor = 6 * params * tokens / flops_rate
            roof = f"{floor:.2f} s floor (6 N x {tokens:.0f} trained tokens)"
        elif k.startswith("time/sample/"):
            role = k.split("/", 2)[2]
            n_steps = last.get(f"sample/{role}/decode_steps")
            share = last.get(f"sample/{role}/finished_row_share")
            if n_steps:
                roof = f"{n_steps * weight_bytes / bandwidth:.2f} s floor ({n_steps:.0f} decode steps)"
            if share is not None:
                roof += f"; finished-row share {share:.2f}"
        flag = "  <-- host stage > 10%" if k in HOST_STAGES and v > 0.1 * step else ""
        print(f"{k:28s} {v:9.2f} {100 * v / step:6.1f}%  {roof}{flag}")
        result["stages"][k] = v
    print(f"{'time/step':28s} {step:9.2f}")
    host = sum(st.get(k, 0.0) for k in HOST_STAGES)
    print(f"host-side stages: {host:.2f} s ({100 * host / step:.1f}%), largest "
          f"{max(HOST_STAGES, key=lambda k: st.get(k, 0.0))}")
    result["host_share"] = host / step
    result["tail"] = {k: v for k, v in last.items() if k.startswith("sample/")}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="azr,pasodoble,co_rewarding_ii")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--variant", default=None, help="config variant (default: the embedded SmolLM2 one)")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", default=None)
    p.add_argument("--continuous", choices=("on", "off"), default=None,
                   help="set loop.continuous_batching (default: each config's own)")
    a = p.parse_args(argv)

    from machine import machine_rates

    rates = machine_rates()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"matmul {rates[0] / 1e9:.0f} GFLOP/s, copy {rates[1] / 1e9:.1f} GB/s")
    out = {"machine": platform.platform(), "cpus": os.cpu_count(), "matmul_flops": rates[0],
           "bandwidth": rates[1], "configs": {}}
    for name in a.configs.split(","):
        workdir = os.path.join(a.workdir, name) if a.workdir else tempfile.mkdtemp(prefix=f"step_{name}_")
        t0 = time.perf_counter()
        rows, params = run_one(name, a.steps, workdir, a.variant,
                               None if a.continuous is None else a.continuous == "on")
        out["configs"][name] = table(name, rows, rates, params, 4 * params)
        out["configs"][name]["params"] = params
        out["configs"][name]["wall_s"] = time.perf_counter() - t0
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
