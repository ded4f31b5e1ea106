"""The main job: run (or resume) a self-play config.

    python -m zeroplay.train [--config configs/<name>.py[:arg]] --workdir DIR [--config.k=v ...]

With no --config it runs configs/default.py. The workdir holds metrics.jsonl (one row per step),
config.json and Orbax checkpoints under checkpoints/; a second call on the same workdir resumes
from the latest checkpoint (with a larger --config.steps it continues). SIGINT / SIGTERM save and
exit cleanly. A malformed config, a broken model path or a workdir of another run is one line.

Multi-host (one process per host, every process runs this same command): `jax.distributed` is
initialised by itself on a Cloud TPU VM and under SLURM with more than one task (JAX reads their
environment), or explicitly from --coordinator_address/--num_processes/--process_id or the
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment (other clusters,
`python -m zeroplay.launch_local`); --distributed=off keeps a process alone. On the CPU the
processes talk over gloo. A single process runs exactly as before.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                               "default.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Config file (configs/<name>.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Run directory (metrics, checkpoints).")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                  "jax.distributed.initialize: auto (TPU VM, SLURM with >1 task, or a coordinator "
                                  "given), on (always; JAX detects the cluster), off (never).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run (default: $JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (default: $JAX_PROCESS_ID).")


SUMMARY_RATES = ("reward_mean", "valid_rate", "solve_rate", "majority_agreement", "label_accuracy")


def summary(rows: list[dict]) -> str:
    """A short table of a run: steps, mean seconds per stage, per-role rewards first and last."""
    evals = sorted({k for r in rows for k in r if k.startswith("eval/")})
    rows_eval = [r for r in rows if any(k in r for k in evals)]
    rows = [r for r in rows if r["step"] > 0]
    if not rows:
        return "no step ran (the workdir already holds every step of this config)"
    lines = [f"steps {rows[0]['step']}..{rows[-1]['step']}"]
    times = sorted({k for r in rows for k in r if k.startswith("time/")})
    for k in times:
        vals = [r[k] for r in rows if k in r]
        lines.append(f"  {k:<28} {sum(vals) / len(vals):9.2f} s/step")
    keys = sorted({k for r in rows for k in r if k.endswith(SUMMARY_RATES) and k.count("/") == 1})
    for k in keys:
        vals = [r[k] for r in rows if k in r]
        lines.append(f"  {k:<28} first {vals[0]:7.3f}   last {vals[-1]:7.3f}   mean {sum(vals) / len(vals):7.3f}")
    for k in evals:
        vals = [(r["step"], r[k]) for r in rows_eval if k in r]
        name = k if len(k) <= 40 else k[:36] + "...)"  # rg: names carry every task setting
        lines.append(f"  {name:<28} " + "   ".join(f"step {st}: {v:.3f}" for st, v in vals))
    return "\n".join(lines)


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else None


def _on_tpu_vm() -> bool:
    try:
        from jax._src import hardware_utils

        return hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0
    except Exception:  # noqa: BLE001 - a JAX without the probe: not detected, use the flags
        return False


def _slurm_tasks() -> int:
    needed = ("SLURM_JOB_ID", "SLURM_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    return int(os.environ["SLURM_NTASKS"]) if all(k in os.environ for k in needed) else 0


def init_distributed(mode: str = "auto", coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
    """`jax.distributed.initialize` when this is one process of several (see the module doc);
    True when it ran. Must come before anything touches a JAX backend."""
    import jax

    if mode == "off":
        return False
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    explicit = coordinator is not None and num_processes is not None and num_processes > 1
    if mode == "auto" and not (explicit or _slurm_tasks() > 1 or _on_tpu_vm()):
        return False
    try:  # gloo: the CPU collectives (the default of recent JAX; older ones default to none)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):
        pass
    if explicit:
        if process_id is None:
            raise ValueError("a multi-process run needs --process_id (or $JAX_PROCESS_ID)")
        jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
    else:  # a TPU VM slice or SLURM: JAX reads the cluster's own environment
        jax.distributed.initialize()
    return True


def main(argv=None):
    def _main(_):
        from zeroplay import loop, runconfig
        from zeroplay.models import ModelLoadError

        logging.set_verbosity(logging.WARNING)  # keep JAX's backend probing out of the output
        try:
            cfg = runconfig.parse(_CONFIG.value)
            init_distributed(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
            rows = loop.run(cfg, _WORKDIR.value)
        except (runconfig.ConfigError, ModelLoadError, loop.RunFolderError) as e:
            sys.exit(f"error: {e}")
        import jax

        if jax.process_index() == 0:
            print(summary(rows))

    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
