"""The multi-host path on one machine: N local processes of `zeroplay.train` over `jax.distributed`.

    python -m zeroplay.launch_local --num_processes N [--devices_per_process K] -- <train arguments>
    e.g. python -m zeroplay.launch_local --num_processes 2 -- --config configs/azr.py:tiny --workdir /tmp/mh

Process i runs `python -m zeroplay.train <train arguments>` on the CPU with K simulated devices
(XLA_FLAGS=--xla_force_host_platform_device_count=K) and JAX_COORDINATOR_ADDRESS (a free
localhost port), JAX_NUM_PROCESSES=N, JAX_PROCESS_ID=i, which `zeroplay.train` hands to
`jax.distributed.initialize` (gloo collectives on the CPU). Their output comes back line by line
prefixed `[p0]`, `[p1]`, ... The launcher waits for all; the first process to fail stops the
others and its exit status is the launcher's. Ctrl-C (or SIGTERM) passes SIGINT (SIGTERM) to
every process once: they finish the step, save and exit; a second Ctrl-C kills them.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

_GRACE_S = 10.0  # after a failure, how long the others get to exit on SIGTERM before SIGKILL


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(base: dict, *, index: int, count: int, port: int, devices: int) -> dict:
    """The environment of process `index` of `count`."""
    flags = [f for f in base.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    return dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(count),
                JAX_PROCESS_ID=str(index), JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags),
                PYTHONUNBUFFERED="1")


def _forward(stream, prefix: str, lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            sys.stdout.write(f"{prefix} {line}" if line.endswith("\n") else f"{prefix} {line}\n")
            sys.stdout.flush()
    stream.close()


def _signal_all(procs, sig) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass


def _exit_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # killed by signal s: 128 + s, as a shell reports it


def launch(train_args: list[str], num_processes: int, devices_per_process: int = 1,
           module: str = "zeroplay.train") -> int:
    """Run the processes to the end; the exit status of the first failure, else 0."""
    port = free_port()
    lock = threading.Lock()
    procs, threads = [], []
    for i in range(num_processes):
        env = process_env(dict(os.environ), index=i, count=num_processes, port=port, devices=devices_per_process)
        # Their own session: a Ctrl-C reaches them once, from here, not also from the terminal.
        p = subprocess.Popen([sys.executable, "-m", module, *train_args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        t = threading.Thread(target=_forward, args=(p.stdout, f"[p{i}]", lock), daemon=True)
        t.start()
        procs.append(p)
        threads.append(t)

    interrupts = {"n": 0}

    def on_signal(signum, frame):
        interrupts["n"] += 1
        if interrupts["n"] > 1 and signum == signal.SIGINT:
            _signal_all(procs, signal.SIGKILL)
        else:
            _signal_all(procs, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed = None
    try:
        while any(p.poll() is None for p in procs):
            for i, p in enumerate(procs):
                if failed is None and p.poll() not in (None, 0):
                    failed = p.returncode
                    with lock:
                        print(f"[launch_local] process {i} exited with status {p.returncode}; stopping the others",
                              flush=True)
                    _signal_all(procs, signal.SIGTERM)
                    deadline = time.time() + _GRACE_S
                    while time.time() < deadline and any(q.poll() is None for q in procs):
                        time.sleep(0.1)
                    _signal_all(procs, signal.SIGKILL)
            time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _signal_all(procs, signal.SIGKILL)  # only reached with survivors on an exception here
        for p in procs:
            p.wait()
        for t in threads:
            t.join(timeout=5)
    if failed is None:
        failed = next((p.returncode for p in procs if p.returncode != 0), 0)
    return _exit_code(failed)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        own, train_args = argv[:cut], argv[cut + 1:]
    else:
        own, train_args = argv, []
    parser = argparse.ArgumentParser(prog="python -m zeroplay.launch_local", description=__doc__.split("\n")[0],
                                     usage="%(prog)s --num_processes N [--devices_per_process K] -- "
                                           "<train arguments>")
    parser.add_argument("--num_processes", type=int, required=True, help="processes to start (>= 1)")
    parser.add_argument("--devices_per_process", type=int, default=1, help="simulated CPU devices in each")
    parser.add_argument("--module", default="zeroplay.train", help=argparse.SUPPRESS)
    args = parser.parse_args(own)
    if args.num_processes < 1 or args.devices_per_process < 1:
        parser.error("--num_processes and --devices_per_process must be >= 1")
    return launch(train_args, args.num_processes, args.devices_per_process, args.module)


if __name__ == "__main__":
    sys.exit(main())
