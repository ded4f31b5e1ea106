"""A pool of long-lived worker processes driven by one event loop in the calling thread.

Both host-side verifier pools use it: the sandbox executor (`code.py`) and the math checker
(`math.py`). Each worker is a fresh interpreter (`python -s -P -B script`) started with a clean
environment, speaking length-prefixed JSON frames (`_wire`) on its stdin/stdout. The parent
enforces a deadline per task and per batch: a worker that misses its deadline or dies is killed
(its whole process group) and replaced, and the task gets the caller's failure result. Workers
are recycled after a number of tasks (caches in long-lived interpreters grow).
"""
from __future__ import annotations

import collections
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

from zeroplay.verifiers import _wire

_STARTUP_FAILURES_BEFORE_GIVING_UP = 3


def clean_env(extra: dict | None = None) -> dict:
    """The whole environment a worker gets: nothing from the trainer leaks through."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(extra or {})
    return env


class WorkerProcess:
    def __init__(self, argv: Sequence[str], env: dict) -> None:
        debug = os.environ.get("ZEROPLAY_VERIFIER_DEBUG") == "1"
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if debug else subprocess.DEVNULL, env=env, close_fds=True,
            start_new_session=True, cwd="/")
        self.out_fd = self.proc.stdout.fileno()
        self.in_fd = self.proc.stdin.fileno()
        os.set_blocking(self.out_fd, False)
        self.reader = _wire.FrameReader()
        self.hello: dict | None = None
        self.started = time.monotonic()
        self.tasks_done = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, obj) -> None:
        _wire.write_frame(self.in_fd, obj)

    def read_frames(self) -> list:
        """Frames available now; raises EOFError when the worker has gone."""
        frames = []
        while True:
            try:
                data = os.read(self.out_fd, 1 << 20)
            except BlockingIOError:
                return frames
            if not data:
                if frames:
                    return frames
                raise EOFError
            frames.extend(self.reader.feed(data))

    def kill(self) -> None:
        for fn in (lambda: os.killpg(self.proc.pid, signal.SIGKILL), self.proc.kill):
            try:
                fn()
            except (ProcessLookupError, PermissionError, OSError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class WorkerPool:
    """N workers running `argv`; `map` spreads tasks over them with hard deadlines."""

    def __init__(self, argv: Sequence[str], *, num_workers: int, env: dict | None = None,
                 max_tasks_per_worker: int = 10_000, startup_timeout_s: float = 120.0) -> None:
        self.argv = list(argv)
        self.env = clean_env(env)
        self.num_workers = max(1, int(num_workers))
        self.max_tasks_per_worker = max_tasks_per_worker
        self.startup_timeout_s = startup_timeout_s
        self.lock = threading.RLock()
        self.workers: list[WorkerProcess] = []
        self.restarts = 0
        self._pid = os.getpid()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def _spawn(self) -> WorkerProcess:
        return WorkerProcess(self.argv, self.env)

    def _replace(self, w: WorkerProcess, sel: selectors.BaseSelector | None) -> WorkerProcess:
        if sel is not None:
            try:
                sel.unregister(w.out_fd)
            except (KeyError, ValueError):
                pass
        w.kill()
        self.restarts += 1
        new = self._spawn()
        self.workers[self.workers.index(w)] = new
        if sel is not None:
            sel.register(new.out_fd, selectors.EVENT_READ, new)
        return new

    def _ensure_started(self) -> None:
        if self._closed:
            raise RuntimeError("worker pool is closed")
        if os.getpid() != self._pid:  # forked trainer: the workers belong to the parent
            self.workers, self._pid = [], os.getpid()
        for w in list(self.workers):
            if w.proc.poll() is not None:
                self._replace(w, None)
        while len(self.workers) < self.num_workers:
            self.workers.append(self._spawn())

    def wait_ready(self) -> list[dict]:
        """Start the workers if needed and block until all said hello; returns the hellos."""
        with self.lock:
            self.map([], [], fail=lambda i, r: None)
            return [w.hello for w in self.workers]

    def close(self) -> None:
        with self.lock:
            self._closed = True
            if os.getpid() == self._pid:
                for w in self.workers:
                    w.kill()
            self.workers = []

    # -- the event loop ----------------------------------------------------------------------
    def map(self, tasks: Sequence[dict], timeouts: Sequence[float], *,
            fail: Callable[[int, str], object], deadline_s: float | None = None,
            on_replace: Callable[[dict | None], None] | None = None) -> list:
        """Run every task on some worker; returns the worker's `result` per task, or
        `fail(i, reason)` for tasks that timed out, killed their worker, or missed the batch
        deadline. With no tasks it just waits for every worker to be ready."""
        with self.lock:
            self._ensure_started()
            n = len(tasks)
            results: list = [None] * n
            done = [False] * n
            pending = collections.deque(range(n))
            inflight: dict[WorkerProcess, tuple[int, float]] = {}
            batch_end = None if deadline_s is None else time.monotonic() + deadline_s
            startup_failures = 0
            sel = selectors.DefaultSelector()
            for w in self.workers:
                sel.register(w.out_fd, selectors.EVENT_READ, w)

            def finish(i: int, value) -> None:
                results[i], done[i] = value, True

            def replace(w: WorkerProcess) -> None:
                if on_replace is not None:
                    on_replace(w.hello)
                self._replace(w, sel)

            try:
                while True:
                    all_ready = all(w.hello is not None for w in self.workers)
                    if not pending and not inflight and (n or all_ready):
                        break
                    now = time.monotonic()
                    if batch_end is not None and now >= batch_end:
                        for w, (i, _) in list(inflight.items()):
                            finish(i, fail(i, "batch deadline exceeded"))
                            replace(w)
                        inflight.clear()
                        while pending:
                            i = pending.popleft()
                            finish(i, fail(i, "batch deadline exceeded"))
                        break
                    if startup_failures >= _STARTUP_FAILURES_BEFORE_GIVING_UP:
                        reason = f"verifier workers failed to start ({self.argv[-1]})"
                        for i in list(pending) + [i for i, _ in inflight.values()]:
                            finish(i, fail(i, reason))
                        pending.clear()
                        inflight.clear()
                        break
                    for w in list(self.workers):
                        if not pending:
                            break
                        if w.hello is None or w in inflight:
                            continue
                        if w.tasks_done >= self.max_tasks_per_worker:
                            replace(w)
                            continue
                        i = pending.popleft()
                        try:
                            w.send(dict(tasks[i], id=i))
                        except OSError:
                            pending.appendleft(i)
                            replace(w)
                            continue
                        inflight[w] = (i, now + timeouts[i])
                    wake = [dl for _, dl in inflight.values()]
                    wake += [w.started + self.startup_timeout_s for w in self.workers
                             if w.hello is None]
                    if batch_end is not None:
                        wake.append(batch_end)
                    timeout = max(0.0, min(wake) - now) if wake else None
                    for key, _ in sel.select(timeout):
                        w = key.data
                        if w not in self.workers:
                            continue
                        try:
                            frames = w.read_frames()
                        except (EOFError, ValueError):
                            if w in inflight:
                                i, _ = inflight.pop(w)
                                finish(i, fail(i, "verifier worker died"))
                            elif w.hello is None:
                                startup_failures += 1
                            replace(w)
                            continue
                        for frame in frames:
                            if w.hello is None:
                                w.hello = frame
                                startup_failures = 0
                            elif w in inflight and frame.get("id") == inflight[w][0]:
                                i, _ = inflight.pop(w)
                                finish(i, frame.get("result"))
                                w.tasks_done += 1
                    now = time.monotonic()
                    for w, (i, dl) in list(inflight.items()):
                        if now >= dl:
                            del inflight[w]
                            finish(i, fail(i, "timeout"))
                            replace(w)
                    for w in list(self.workers):
                        if w.hello is None and now >= w.started + self.startup_timeout_s:
                            startup_failures += 1
                            replace(w)
            except BaseException:
                # Interrupted mid-batch (e.g. KeyboardInterrupt): workers hold stale tasks.
                for w in list(inflight):
                    self._replace(w, None)
                raise
            finally:
                sel.close()
            return results


def python_argv(script: str) -> list[str]:
    """Interpreter command line for a worker script: no user site, no script dir on sys.path."""
    flags = ["-s", "-P", "-B"] if sys.version_info >= (3, 11) else ["-s", "-B"]
    return [sys.executable, *flags, script]
