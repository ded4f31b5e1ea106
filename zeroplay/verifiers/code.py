"""Sandboxed Python execution: the AZR code executor and its checks.

`run(program, input_expr)` executes `f(<input_expr>)` where `program` defines `f` and
`input_expr` is an argument list of Python literals (`"[1, 2], 'a'"`), and returns a `Result`
whose `output` is the `repr` of the value. Programs come from a model that is optimised to get
reward, so each one runs in a forked child of a pre-started sandbox worker (see
`_sandbox_worker.py` for the layers: namespaces, a filesystem view holding only the
interpreter (read-only) and a private scratch tmpfs (`_fsview`: a mount view as root, Landlock
where the kernel has it), its own uid, rlimits, seccomp, an audit hook, an AST ban list) under
a hard wall deadline. The executor survives any program; a dead worker is replaced.

Bad input (a syntax error, no `f`, a non-literal input, binary garbage, a huge program) gives
`ok=False` with an error string; nothing here raises into the trainer for such input.

AZR's uses:
- `check_deterministic` (proposal validation): ban list, then `f` run twice in each of two
  processes; every repr must agree.
- `check_input_prediction` (abduction): `f(pred_input) == gold_output`, executed in the sandbox.
- `check_output_prediction` (deduction): `pred == gold` as Python literal values.
- `check_program_prediction` (induction): the predicted program reproduces every hidden pair.
Comparisons happen in the worker, never in the sandboxed child: a program cannot see the
expected values, so forging its report gains nothing it could not get by returning values.
The `*_batch` forms run everything in parallel over the pool.

Determinism: workers run with PYTHONHASHSEED=0, so set/dict orders of strings (and therefore
reprs) are the same on every worker and every run.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import threading
from typing import Iterable, Sequence

from zeroplay.verifiers import _pool

DEFAULT_TIMEOUT_S = 10.0  # AZR's per-execution timeout
MAX_PROGRAM_CHARS = 1_000_000
MAX_INPUT_CHARS = 100_000
# AZR's proposal ban list (modules, and dotted names matched in imports and attribute access).
AZR_BANNED_IMPORTS = (
    "logging", "random", "multiprocessing", "pebble", "subprocess", "threading", "datetime",
    "time", "hashlib", "hmac", "bcrypt", "os.sys", "os.path", "sys.exit", "os.environ",
    "calendar",
)
_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_worker.py")
_SLACK_S = 5.0  # the worker enforces the deadline; the pool only catches a stuck worker
_FS_VIEWS = ("auto", "landlock", "none")
_log = logging.getLogger(__name__)
_warned: set[str] = set()  # fs-view problems already logged by this process


@dataclasses.dataclass(frozen=True)
class Result:
    """`output` is the repr of `f(...)` for the (first) input; `outputs` has one per input;
    `matches` is set when expected values were given. `stdout` is the program's captured
    printing (capped)."""
    ok: bool
    output: str | None
    error: str | None
    outputs: tuple = ()
    matches: tuple | None = None
    stdout: str = ""
    elapsed_s: float = 0.0


def _fail(error: str) -> Result:
    return Result(ok=False, output=None, error=error)


def _as_text(value, what: str, limit: int) -> str:
    """Validate untrusted text in the trainer: type, encoding, size. Raises ValueError."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} is not valid UTF-8") from None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{what} too large: {len(value)} characters (limit {limit})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} contains lone surrogates") from None
    return value


class SandboxPool:
    """Pre-started sandbox workers that fork a child per program. Two per core by default:
    a worker spends part of each job waiting on its child, so this keeps every core busy."""

    def __init__(self, num_workers: int | None = None, *, memory_mb: int = 1024,
                 max_output_chars: int = 100_000, max_stdout_chars: int = 4096,
                 max_tasks_per_worker: int = 1_000_000, audit_hook: bool = True,
                 fs_view: str = "auto") -> None:
        """`audit_hook=False` leaves out the in-interpreter layer (the audit hook and the
        import bans it enforces); tests use it to show the OS layers hold on their own.
        `fs_view` is for tests too: "auto" (the mount view where root allows, plus Landlock
        where the kernel has it), "landlock" (Landlock alone, what a non-root user gets) or
        "none" (no filesystem view: programs can read every world-readable host file)."""
        if fs_view not in _FS_VIEWS:
            raise ValueError(f"fs_view must be one of {_FS_VIEWS}, got {fs_view!r}")
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.max_stdout_chars = max_stdout_chars
        self._pool = _pool.WorkerPool(
            _pool.python_argv(_WORKER_SCRIPT) + [str(os.getpid())]
            + ([] if audit_hook else ["--no-audit-hook"])
            + ([] if fs_view == "auto" else [f"--fs-view={fs_view}"]),
            num_workers=num_workers or min(2 * (os.cpu_count() or 1), 64),
            max_tasks_per_worker=max_tasks_per_worker)
        self._scratch_dirs: set[str] = set()

    # -- plumbing ----------------------------------------------------------------------------
    def layers(self) -> dict:
        """Which isolation layers the workers could turn on (namespaces, uid, seccomp...)."""
        hellos = self._pool.wait_ready()
        self._note(hellos)
        return dict(hellos[0]["layers"]) if hellos and hellos[0] else {}

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._pool.workers]

    @property
    def restarts(self) -> int:
        return self._pool.restarts

    def _note(self, hellos) -> None:
        for h in hellos:
            if h and not h.get("private_tmp") and h.get("scratch_base"):
                self._scratch_dirs.add(h["scratch_base"])
            layers = (h or {}).get("layers") or {}
            detail = str(layers.get("fs_view_detail") or "unavailable")
            if "fs_view" not in layers or detail in _warned:
                continue
            if not layers["fs_view"]:
                _warned.add(detail)
                _log.warning("sandbox: no filesystem view for sandboxed programs (%s)", detail)
            elif not layers.get("fs_view_mount"):
                _warned.add(detail)
                _log.info("sandbox: partial filesystem view (%s)", detail)

    def _cleanup_scratch(self, hello) -> None:
        if hello and not hello.get("private_tmp") and hello.get("scratch_base"):
            shutil.rmtree(hello["scratch_base"], ignore_errors=True)

    def execute(self, jobs: Sequence[dict | Result], *, deadline_s: float | None = None
                ) -> list[Result]:
        """Run raw jobs (dicts for the worker protocol); a `Result` in the list is passed
        through unchanged (used for input that was rejected before reaching a worker)."""
        todo = [i for i, j in enumerate(jobs) if isinstance(j, dict)]
        tasks = []
        for i in todo:
            job = dict(jobs[i])
            job.setdefault("timeout_s", DEFAULT_TIMEOUT_S)
            job.update(memory_mb=self.memory_mb, max_output=self.max_output_chars,
                       max_stdout=self.max_stdout_chars)
            tasks.append(job)
        timeouts = [float(t["timeout_s"]) * max(1, int(t.get("processes", 1))) + _SLACK_S
                    for t in tasks]
        raw = self._pool.map(tasks, timeouts, deadline_s=deadline_s,
                             fail=lambda i, reason: {"ok": False, "error": f"sandbox: {reason}"},
                             on_replace=self._cleanup_scratch)
        self._note(w.hello for w in self._pool.workers)
        out: list[Result] = [j if isinstance(j, Result) else None for j in jobs]
        for i, r in zip(todo, raw):
            out[i] = self._to_result(r)
        return out

    @staticmethod
    def _to_result(r) -> Result:
        if not isinstance(r, dict):
            return _fail("sandbox: no result")
        outputs = tuple(r.get("outputs") or ())
        matches = r.get("matches")
        return Result(ok=bool(r.get("ok")), output=outputs[0] if outputs else None,
                      error=None if r.get("ok") else (r.get("error") or "unknown error"),
                      outputs=outputs, matches=None if matches is None else tuple(matches),
                      stdout=r.get("stdout") or "", elapsed_s=float(r.get("elapsed_s") or 0.0))

    def close(self) -> None:
        self._pool.close()
        for d in self._scratch_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def call_job(program, inputs: Iterable, *, expected: Iterable | None = None,
             timeout_s: float = DEFAULT_TIMEOUT_S, banned_imports: Sequence[str] = (),
             repeats: int = 1, processes: int = 1, entry: str = "f",
             literal_inputs: bool = True) -> dict | Result:
    """A worker job for `f(input)` over several inputs, or a failed `Result` for bad input.
    `literal_inputs=False` evaluates each input as expressions in the program's namespace
    (inside the sandbox), as the CRUXEval harness does; answers from a model should stay
    literal, or a predicted input could search for the answer by calling `f` itself."""
    try:
        program = _as_text(program, "program", MAX_PROGRAM_CHARS)
        inputs = [_as_text(x, "input", MAX_INPUT_CHARS) for x in inputs]
        if expected is not None:
            expected = [_as_text(x, "expected output", MAX_INPUT_CHARS) for x in expected]
        if not entry.isidentifier():
            raise ValueError(f"bad entry point name {entry!r}")
    except ValueError as e:
        return _fail(str(e))
    job = {"mode": "call", "program": program, "inputs": inputs, "timeout_s": float(timeout_s),
           "banned": list(banned_imports), "repeats": repeats, "processes": processes,
           "entry": entry, "literal_inputs": bool(literal_inputs)}
    if expected is not None:
        job["expected"] = expected
    return job


_default_pool: SandboxPool | None = None
_default_options: dict = {}
_default_lock = threading.Lock()


def configure_default_pool(num_workers: int | None = None, memory_mb: int = 1024) -> None:
    """Options of the process-wide pool (a run's `verifiers` config); a started pool with other
    options is closed, and the next `get_pool()` starts one with these."""
    global _default_pool
    options = {"num_workers": num_workers or None, "memory_mb": int(memory_mb)}
    with _default_lock:
        if options != _default_options and _default_pool is not None:
            _default_pool.close()
            _default_pool = None
        _default_options.clear()
        _default_options.update(options)


def get_pool() -> SandboxPool:
    """The process-wide pool, started on first use and closed at exit."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = SandboxPool(**_default_options)
            atexit.register(_default_pool.close)
        return _default_pool


def run(program, input_expr, *, timeout_s: float = DEFAULT_TIMEOUT_S,
        banned_imports: Sequence[str] = (), literal_inputs: bool = True,
        pool: SandboxPool | None = None) -> Result:
    """Execute `f(<input_expr>)` in the sandbox; `output` is the repr of the value.
    `input_expr` must be literals unless `literal_inputs=False` (see `call_job`)."""
    return run_batch([(program, input_expr)], timeout_s=timeout_s,
                     banned_imports=banned_imports, literal_inputs=literal_inputs, pool=pool)[0]


def run_batch(items: Sequence[tuple], *, timeout_s: float = DEFAULT_TIMEOUT_S,
              banned_imports: Sequence[str] = (), literal_inputs: bool = True,
              deadline_s: float | None = None, pool: SandboxPool | None = None
              ) -> list[Result]:
    """`run` over (program, input_expr) pairs, spread over all workers."""
    jobs = [call_job(p, [x], timeout_s=timeout_s, banned_imports=banned_imports,
                     literal_inputs=literal_inputs) for p, x in items]
    return (pool or get_pool()).execute(jobs, deadline_s=deadline_s)


def run_script(source, *, timeout_s: float = DEFAULT_TIMEOUT_S,
               pool: SandboxPool | None = None) -> Result:
    """Execute a whole script (e.g. a HumanEval solution followed by its tests): ok when it
    finishes without an exception. The script and any tests in it share one process, so this
    is for evaluation, not for rewarding a program that could tamper with its own tests."""
    return run_script_batch([source], timeout_s=timeout_s, pool=pool)[0]


def run_script_batch(sources: Sequence, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                     pool: SandboxPool | None = None) -> list[Result]:
    jobs: list = []
    for s in sources:
        try:
            jobs.append({"mode": "script", "program": _as_text(s, "program", MAX_PROGRAM_CHARS),
                         "inputs": [], "timeout_s": float(timeout_s)})
        except ValueError as e:
            jobs.append(_fail(str(e)))
    return (pool or get_pool()).execute(jobs)


# -- AZR checks ------------------------------------------------------------------------------

def check_deterministic_batch(items: Sequence[tuple], *, timeout_s: float = DEFAULT_TIMEOUT_S,
                              banned_imports: Sequence[str] = AZR_BANNED_IMPORTS,
                              pool: SandboxPool | None = None) -> list[Result]:
    """AZR proposal validation for (program, input_expr) pairs: the ban list, then `f` twice
    in each of two separate processes; ok only when it runs and all four reprs agree. The
    result's `output` is the gold output to store."""
    jobs = [call_job(p, [x], timeout_s=timeout_s, banned_imports=banned_imports, repeats=2,
                     processes=2) for p, x in items]
    return (pool or get_pool()).execute(jobs)


def check_deterministic(program, input_expr, **kw) -> Result:
    return check_deterministic_batch([(program, input_expr)], **kw)[0]


def check_input_prediction_batch(items: Sequence[tuple], *,
                                 timeout_s: float = DEFAULT_TIMEOUT_S,
                                 pool: SandboxPool | None = None) -> list[bool]:
    """Abduction: for (program, pred_input, gold_output), is `f(pred_input) == gold_output`?"""
    jobs = [call_job(p, [x], expected=[y], timeout_s=timeout_s) for p, x, y in items]
    return [bool(r.ok and r.matches and all(r.matches))
            for r in (pool or get_pool()).execute(jobs)]


def check_input_prediction(program, pred_input, gold_output, **kw) -> bool:
    return check_input_prediction_batch([(program, pred_input, gold_output)], **kw)[0]


def check_output_prediction_batch(pairs: Sequence[tuple], *, pool: SandboxPool | None = None
                                  ) -> list[bool]:
    """Deduction: for (pred_output, gold_output), are they equal as Python literal values
    (`{1, 2}` == `{2, 1}`, `1.0` == `1`)? Compared in a worker process, not in the trainer."""
    jobs: list = []
    for pred, gold in pairs:
        try:
            jobs.append({"mode": "compare", "timeout_s": 5.0,
                         "inputs": [_as_text(pred, "prediction", MAX_INPUT_CHARS)],
                         "expected": [_as_text(gold, "gold output", MAX_INPUT_CHARS)]})
        except ValueError as e:
            jobs.append(_fail(str(e)))
    return [bool(r.ok and r.matches and all(r.matches))
            for r in (pool or get_pool()).execute(jobs)]


def check_output_prediction(pred_output, gold_output, **kw) -> bool:
    return check_output_prediction_batch([(pred_output, gold_output)], **kw)[0]


def check_program_prediction_batch(items: Sequence[tuple], *,
                                   timeout_s: float = DEFAULT_TIMEOUT_S,
                                   banned_imports: Sequence[str] = (),
                                   pool: SandboxPool | None = None) -> list[bool]:
    """Induction: for (program, [(input_expr, gold_output), ...]), does the predicted program
    reproduce every pair? One child per program; `timeout_s` covers all its pairs."""
    jobs = []
    for program, pairs in items:
        pairs = list(pairs)
        jobs.append(call_job(program, [x for x, _ in pairs], expected=[y for _, y in pairs],
                             timeout_s=timeout_s, banned_imports=banned_imports))
    return [bool(r.ok and r.matches is not None and len(r.matches) > 0 and all(r.matches))
            for r in (pool or get_pool()).execute(jobs)]


def check_program_prediction(program, io_pairs, **kw) -> bool:
    return check_program_prediction_batch([(program, io_pairs)], **kw)[0]
