"""What runs inside one forked sandbox child: lock the process down, then run the program.

Loaded by the sandbox worker (`_sandbox_worker.py`) before it forks, so a child starts warm.
Order matters: limits and privileges first, then seccomp, then the audit hook, and only then
is any untrusted text parsed or executed. The result goes back as one JSON frame on a pipe.
"""
from __future__ import annotations

import ast
import builtins
import io
import json
import os
import resource
import sys

from _literal import eval_args, parse_args

# Modules a program may never import, whatever the caller's ban list (enforced by the audit
# hook at import time and by dropping them from sys.modules, so a cached copy can't be reused).
SECURITY_BANNED = frozenset({
    "ctypes", "_ctypes", "cffi", "socket", "_socket", "ssl", "_ssl", "select", "selectors",
    "subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing", "concurrent",
    "threading", "_thread", "asyncio", "pty", "tty", "termios", "fcntl", "mmap", "resource",
    "signal", "_signal", "posix", "faulthandler", "_posixshmem", "_xxsubinterpreters",
    "webbrowser", "ftplib", "smtplib", "telnetlib", "imaplib", "poplib", "socketserver",
})

_BLOCKED_EVENTS = (
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
    "os.killpg", "os.putenv", "os.unsetenv", "os.add_dll_directory", "subprocess.", "pty.",
    "socket.", "ctypes.", "resource.", "signal.", "sys.setprofile", "sys.settrace",
    "sys._current_frames", "winreg.", "_winapi.", "msvcrt.", "os.startfile", "webbrowser.",
    "urllib.", "http.", "ftplib.", "smtplib.", "telnetlib.", "imaplib.", "poplib.", "nntplib.",
    "syslog.", "fcntl.", "mmap.", "os.setns", "os.unshare",
    "os.memfd_create", "os.pidfd_open", "code.__new__", "gc.get_referrers", "gc.get_objects",
    "gc.get_referents",
)
_PATH_EVENTS = {  # event -> indices of path arguments that must lie inside the scratch dir
    "os.remove": (0,), "os.rename": (0, 1), "os.replace": (0, 1), "os.rmdir": (0,),
    "os.mkdir": (0,), "os.link": (0, 1), "os.symlink": (0, 1), "os.chmod": (0,),
    "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,), "os.mkfifo": (0,),
    "os.mknod": (0,), "os.setxattr": (0,), "os.removexattr": (0,), "os.chflags": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _CappedText(io.TextIOBase):
    """stdout/stderr replacement: keeps the first `cap` characters, drops the rest."""

    def __init__(self, cap: int) -> None:
        self.cap, self.parts, self.size = cap, [], 0

    def write(self, s) -> int:
        s = str(s)
        if self.size < self.cap:
            keep = s[: self.cap - self.size]
            self.parts.append(keep)
            self.size += len(keep)
        return len(s)

    def writable(self) -> bool:
        return True

    def getvalue(self) -> str:
        return "".join(self.parts)


def _make_audit_hook(scratch: str, banned_modules: frozenset):
    scratch = os.path.realpath(scratch)
    realpath, fspath, startswith = os.path.realpath, os.fspath, str.startswith

    def inside(path) -> bool:
        if isinstance(path, int):
            return True
        try:
            p = realpath(fspath(path) if not isinstance(path, bytes) else path.decode())
        except Exception:
            return False
        return p == scratch or startswith(p, scratch + "/")

    def hook(event: str, args) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing outside the scratch dir: {path!r}")
            if isinstance(path, (str, bytes)) and b"environ" in (
                    path if isinstance(path, bytes) else path.encode("utf-8", "replace")):
                raise PermissionError("sandbox: reading environments is not allowed")
            return
        if event == "import":
            name = args[0] if args else ""
            if isinstance(name, str) and (name in banned_modules
                                          or name.split(".", 1)[0] in banned_modules):
                raise ImportError(f"sandbox: import of {name!r} is not allowed")
            return
        if event in _PATH_EVENTS:
            for idx in _PATH_EVENTS[event]:
                if idx < len(args) and not inside(args[idx]):
                    raise PermissionError(f"sandbox: {event} outside the scratch dir")
            return
        if event.startswith(_BLOCKED_EVENTS):
            raise PermissionError(f"sandbox: {event} is not allowed")

    return hook


def harden(job: dict, scratch: str, result_fd: int, devnull_fd: int, cfg: dict,
           seccomp) -> _CappedText:
    """Everything between fork and running untrusted code. Returns the stdout capture."""
    os.setsid()
    if cfg.get("prctl") is not None:
        cfg["prctl"](1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL: die with the worker
    for fd in (0, 1, 2):
        os.dup2(devnull_fd, fd)
    os.closerange(3, result_fd)
    os.closerange(result_fd + 1, 1 << 16)
    mem = int(job.get("memory_mb", 1024)) * 1024 * 1024
    cpu = int(float(job.get("timeout_s", 10.0))) + 2
    limits = [
        (resource.RLIMIT_AS, mem), (resource.RLIMIT_DATA, mem),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_FSIZE, 16 * 1024 * 1024),
        (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 1),
        (resource.RLIMIT_MEMLOCK, 0), (resource.RLIMIT_MSGQUEUE, 0),
        (resource.RLIMIT_STACK, 64 * 1024 * 1024),
    ]
    for which, value in limits:
        soft, hard = value if isinstance(value, tuple) else (value, value)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            try:  # cannot raise a hard limit as non-root: lower the soft one only
                resource.setrlimit(which, (min(soft, resource.getrlimit(which)[1]),
                                           resource.getrlimit(which)[1]))
            except (ValueError, OSError):
                pass
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update({"HOME": scratch, "TMPDIR": scratch, "PATH": "/nonexistent"})
    uid = cfg.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if cfg.get("prctl") is not None:
        cfg["prctl"](4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    if seccomp is not None:
        seccomp.install()
    capture = _CappedText(int(job.get("max_stdout", 4096)))
    sys.stdout = sys.stderr = capture
    sys.stdin = io.StringIO()
    sys.dont_write_bytecode = True
    sys.path[:] = [p for p in sys.path if p and "verifiers" not in p]
    if cfg.get("audit_hook", True):
        for name in [n for n in sys.modules if n.split(".", 1)[0] in SECURITY_BANNED]:
            del sys.modules[name]
        sys.addaudithook(_make_audit_hook(scratch, SECURITY_BANNED))
    return capture


def banned_imports(tree: ast.AST, banned) -> list[str]:
    """AZR's ban list: names like "random", or dotted "os.environ" / "sys.exit" that match
    `import a.b`, `from a import b` and attribute access `a.b`."""
    banned = set(banned)
    hits = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [f"{node.value.id}.{node.attr}"] if "." in "".join(banned) else []
            names = [n for n in names if n in banned]
        for name in names:
            parts = name.split(".")
            if any(".".join(parts[:k]) in banned for k in range(1, len(parts) + 1)):
                hits.append(name)
    return sorted(set(hits))


def execute(job: dict, capture: _CappedText) -> dict:
    """Run the job (after `harden`). Never raises; errors are reported in the result.

    The child only reports what the program did (reprs of its outputs, one list per case with
    one entry per repeated call); expected values never enter this process, and the worker
    compares. A program that forges this report can claim nothing it could not return."""
    out: dict = {"error": None, "runs": [], "errors": []}
    mode = job.get("mode", "call")
    max_output = int(job.get("max_output", 100_000))
    try:
        namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
        source = job["program"]
        tree = ast.parse(source, "<program>", "exec")
        hits = banned_imports(tree, job.get("banned") or ())
        if hits:
            out["error"] = "banned import: " + ", ".join(hits)
            return out
        exec(compile(tree, "<program>", "exec"), namespace)
        if mode == "script":
            return out
        entry = job.get("entry", "f")
        fn = namespace.get(entry)
        if not callable(fn):
            out["error"] = f"program does not define a function {entry!r}"
            return out
        literal_inputs = bool(job.get("literal_inputs", True))
        for input_expr in job["inputs"]:
            try:
                runs = []
                for _ in range(max(1, int(job.get("repeats", 1)))):
                    args, kwargs = (parse_args(input_expr, entry) if literal_inputs
                                    else eval_args(input_expr, namespace))
                    rendered = repr(fn(*args, **kwargs))
                    if not isinstance(rendered, str):
                        raise TypeError("__repr__ returned a non-string")
                    if len(rendered) > max_output:
                        raise ValueError(f"output repr longer than {max_output} characters")
                    runs.append(str(rendered))
                out["runs"].append(runs)
                out["errors"].append(None)
            except BaseException as e:  # noqa: BLE001 -- SystemExit, KeyboardInterrupt too
                out["runs"].append(None)
                out["errors"].append(_describe(e))
    except BaseException as e:  # noqa: BLE001
        out["error"] = _describe(e)
    finally:
        out["stdout"] = capture.getvalue()
    return out


def _describe(e: BaseException) -> str:
    try:
        text = f"{type(e).__name__}: {e}"
    except BaseException:  # noqa: BLE001 -- a hostile __str__
        text = type(e).__name__
    return text[:2000]


def child_main(job: dict, scratch: str, result_fd: int, devnull_fd: int, cfg: dict,
               seccomp) -> None:
    """Entry point in the forked child; never returns."""
    try:
        capture = harden(job, scratch, result_fd, devnull_fd, cfg, seccomp)
        result = execute(job, capture)
        data = json.dumps(result, ensure_ascii=True).encode("ascii")
        view = memoryview(data)
        while view:
            view = view[os.write(result_fd, view):]
        os.close(result_fd)  # EOF now, before the (slow) address-space teardown of exit
    except BaseException:  # noqa: BLE001
        pass
    os._exit(0)
