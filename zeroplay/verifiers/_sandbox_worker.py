"""Sandbox worker: a warm interpreter that forks one locked-down child per program.

Started by `code.SandboxPool` as `python -s -P -B _sandbox_worker.py PARENT_PID` with a clean
environment; it imports nothing from `zeroplay`. Layers, each applied where this Linux allows:

- at startup (as root): private mount, network, PID, IPC and UTS namespaces. The worker becomes
  PID 1 of its PID namespace (children cannot see or signal anything outside it, and a
  `kill(-1)` after each job removes every leftover).
- at startup, the filesystem view (`_fsview`): as root, the mount namespace's root becomes a
  read-only tmpfs holding only read-only bind mounts of the interpreter's trees (standard
  library, site-packages, its shared libraries), a few device nodes and a fresh size-capped
  tmpfs /tmp for the per-run scratch dirs: the project folder, the data next to it, home
  folders, /etc and /proc do not exist there. Then, where the kernel has Landlock (also
  without root), the worker restricts itself to reading those trees and writing its scratch
  base; children inherit it. If the mount view cannot be built, every mount is re-bound
  read-only with fresh tmpfs on /tmp, /var/tmp and /dev/shm (the earlier layer), and the hello
  says why (`fs_view_detail`); the trainer logs it once.
- A worker dies with the trainer (PR_SET_PDEATHSIG) and with its stdin.
- per job: a fresh child (`_sandbox_child`) in its own session with its own uid (root only),
  rlimits, seccomp, an audit hook and the caller's AST ban list; the worker enforces the wall
  deadline and kills the child's process group, then (PID namespace) everything left.

Protocol: frames (`_wire`) on stdin/stdout. First frame out is a hello with the layers that
are active. Jobs in: {"id", "mode": "call"|"script"|"compare", "program", "inputs",
"expected", "repeats", "processes", "timeout_s", "banned", ...}; out: {"id", "result"}.
Test-only flags: `--no-audit-hook`; `--fs-view=landlock` (Landlock alone, as without root) or
`--fs-view=none` (no filesystem view, to see the degraded report).
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
# Never let this directory shadow the standard library (`math.py`, `code.py` live here).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

import ctypes  # noqa: E402
import errno  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import random as _random_for_uid  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import _fsview  # noqa: E402
import _literal  # noqa: E402
import _sandbox_child  # noqa: E402
import _seccomp  # noqa: E402
import _wire  # noqa: E402

_uid_rng = _random_for_uid.SystemRandom()
del sys.modules["random"]  # children must not share a pre-seeded generator

# Modules programs commonly import, loaded once here so a forked child finds them warm. Kept
# short: every page of this process is copied-on-write into each child, and forks of a bigger
# process cost more. Anything else is imported by the child itself.
for _name in ("collections", "itertools", "functools", "math", "re", "string", "heapq",
              "bisect", "copy", "operator", "typing", "dataclasses"):
    try:
        __import__(_name)
    except ImportError:
        pass

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]


def _mount(src, target, fstype, flags, data=None) -> bool:
    enc = (lambda s: None if s is None else s.encode())
    return _libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) == 0


def _unshare(flags: int) -> bool:
    return _libc.unshare(flags) == 0


def _mountpoints() -> list[tuple[str, int]]:
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            path = fields[4].encode().decode("unicode_escape")  # \040 -> space
            flags = 0
            for opt in fields[5].split(","):
                flags |= _MOUNT_FLAGS.get(opt, 0)
            points.append((path, flags))
    return points


def _setup_mounts(new_proc: bool, needed, view: bool) -> tuple[bool, str | None, str]:
    """Inside a fresh mount namespace only. Returns (private /tmp, how the mount view was
    switched to or None, why there is no mount view)."""
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE):
        return False, None, "could not make the mount namespace private"  # never touch the host
    why = "not requested"
    if view:
        try:
            return True, _fsview.mount_view(*needed), ""
        except OSError as e:
            why = f"building it failed: {e}"
    # The earlier layer: the whole host read-only, private tmpfs for scratch.
    if new_proc:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path, flags in _mountpoints():
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | flags)
    ok = _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=512m,mode=1777")
    for path, size in (("/var/tmp", "64m"), ("/dev/shm", "64m")):
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    if ok:
        _expose_import_paths([p for p in sys.path if p and os.path.abspath(p) != _HERE])
    return ok, None, why


def _blocking_ancestor(path: str) -> str | None:
    """The topmost proper ancestor of `path` that other users cannot traverse, if any."""
    parts = os.path.abspath(path).split("/")[1:-1]
    for k in range(1, len(parts) + 1):
        anc = "/" + "/".join(parts[:k])
        try:
            if not os.stat(anc).st_mode & 0o001:
                return anc
        except OSError:
            return None
    return None


def _expose_import_paths(paths: list[str]) -> None:
    """Python may live under a directory the sandbox uid cannot enter (e.g. /root/.pyenv).
    Cover such a directory with an empty read-only tmpfs that holds only bind mounts of the
    import paths, so children can import the standard library and nothing else there shows."""
    stage = "/tmp/.zeroplay-stage"
    covered: dict[str, list[tuple[str, str]]] = {}
    for i, path in enumerate(paths):
        anc = _blocking_ancestor(path) if os.path.isdir(path) else None
        if anc is None:
            continue
        staged = os.path.join(stage, str(i))
        os.makedirs(staged, mode=0o700, exist_ok=True)
        if _mount(path, staged, None, MS_BIND | MS_REC):
            covered.setdefault(anc, []).append((path, staged))
    for anc, items in covered.items():
        if not _mount("tmpfs", anc, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755"):
            continue
        for path, staged in items:
            os.makedirs(path, mode=0o755, exist_ok=True)
            if _mount(staged, path, None, MS_BIND | MS_REC):
                _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        _mount(None, anc, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _become_pid1() -> None:
    """After unshare(CLONE_NEWPID) the next child is PID 1 of the namespace: fork it and wait.
    The original process closes its pipe ends so the trainer sees EOF when the worker dies."""
    pid = os.fork()
    if pid == 0:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        return
    os.closerange(0, 3)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue


class Worker:
    def __init__(self, parent_pid: int, fs_view: str = "auto") -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if parent_pid and os.getppid() != parent_pid:
            os._exit(0)  # the trainer died before we could tie ourselves to it
        self.root = os.geteuid() == 0
        self.layers = {"root": self.root}
        flags = 0
        # Without root there are no namespaces here (an unmapped user namespace would break
        # file creation); seccomp still denies sockets, fork, exec and signals, and Landlock
        # (where the kernel has it) still limits what can be read.
        candidates = ([CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS,
                       CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC, CLONE_NEWNET]
                      if self.root else [])
        for cand in candidates:
            if _unshare(cand):
                flags = cand
                break
        self.layers["net_namespace"] = bool(flags & CLONE_NEWNET)
        self.pid_ns = bool(flags & CLONE_NEWPID)
        if self.pid_ns:
            _become_pid1()
        self.layers["pid_namespace"] = self.pid_ns
        needed = _fsview.needed_paths(_HERE)  # before the view: it reads /proc/self/maps
        mount_how, why_mount = None, "needs root (a private mount namespace)"
        if flags & CLONE_NEWNS:
            self.private_tmp, mount_how, why_mount = _setup_mounts(
                self.pid_ns, needed, fs_view == "auto")
        else:
            self.private_tmp = False
        self.layers["readonly_root_private_tmp"] = self.private_tmp
        if self.private_tmp:
            self.scratch_base = "/tmp/zeroplay-sandbox"
            os.makedirs(self.scratch_base, mode=0o711, exist_ok=True)
        else:
            self.scratch_base = tempfile.mkdtemp(prefix="zeroplay-sandbox-")
        os.chmod(self.scratch_base, 0o711)
        # A uid of its own (root only): owns no file, and RLIMIT_NPROC=1 counts only its child.
        self.uid = _uid_rng.randrange(1 << 24, 1 << 30) if self.root else None
        self.layers["separate_uid"] = self.uid is not None
        self.seccomp = _seccomp.Installer()
        self.layers["seccomp"] = self.seccomp.program is not None
        self.layers["audit_hook"] = True
        self.devnull = os.open(os.devnull, os.O_RDWR)
        landlock_abi, why_landlock = 0, "not requested"
        if fs_view in ("auto", "landlock"):
            try:  # last: from here on this process reads nothing outside the view either
                landlock_abi = _fsview.landlock(*needed, self.scratch_base)
            except OSError as e:
                why_landlock = str(e)
        self.layers["fs_view_mount"] = mount_how is not None
        self.layers["landlock"] = landlock_abi > 0
        self.layers["fs_view"] = mount_how is not None or landlock_abi > 0
        parts = []
        if mount_how:
            parts.append(f"mount view ({mount_how})")
        if landlock_abi:
            parts.append(f"landlock ABI {landlock_abi}" + ("" if mount_how else
                                                           " (reads only; stat not covered)"))
        if not self.layers["fs_view"]:
            detail = (f"unavailable: mount view: {why_mount}; landlock: {why_landlock}; "
                      "sandboxed programs can read every world-readable host file")
        elif not mount_how:
            detail = " + ".join(parts) + f"; no mount view: {why_mount}"
        else:
            detail = " + ".join(parts)
        self.layers["fs_view_detail"] = detail
        self.cfg = {"uid": self.uid, "prctl": _libc.prctl}
        self.counter = 0
        self.deferred: list = []

    @staticmethod
    def _remove(scratch: str) -> None:
        try:
            os.rmdir(scratch)  # the usual case: the program wrote nothing
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- one job -----------------------------------------------------------------------------
    def run_job(self, job: dict) -> dict:
        mode = job.get("mode", "call")
        if mode == "compare":  # literal values only: no program, no child needed
            return {"ok": True, "error": None,
                    "matches": [_literal.values_equal_text(str(a), str(b))
                                for a, b in zip(job.get("inputs", []), job.get("expected", []))]}
        # Expected values never reach a child: the only reference is this list, which each
        # child empties right after fork (so not even frame inspection finds them there).
        secret = [job.pop("expected", None)]
        runs, result = [], None
        for _ in range(max(1, int(job.get("processes", 1)))):
            result = self._run_child(job, secret)
            if not result["ok"]:
                result["outputs"] = [r[0] if r else None for r in result.pop("runs", None) or []]
                return result
            runs.append(result.pop("runs"))
        outputs = [None if r is None else r[0] for r in runs[0]]
        flat = [[rep for proc in runs for rep in (proc[i] or [None])] for i in range(len(outputs))]
        if mode == "call" and any(len(set(reps)) > 1 for reps in flat):
            return {"ok": False, "error": "nondeterministic: outputs differ between runs",
                    "outputs": outputs, "stdout": result.get("stdout", "")}
        result["outputs"] = outputs
        expected = secret[0]
        if expected is not None:
            result["matches"] = [o is not None and e is not None
                                 and _literal.values_equal_text(o, str(e))
                                 for o, e in zip(outputs, expected)]
        return result

    def _run_child(self, job: dict, secret: list) -> dict:
        while self.deferred:  # never two children of one worker alive at once
            self.deferred.pop()()
        timeout = min(float(job.get("timeout_s", 10.0)), 3600.0)
        cap = int(job.get("max_output", 100_000)) * 4 + int(job.get("max_stdout", 4096)) * 8 + 65536
        self.counter += 1
        scratch = os.path.join(self.scratch_base, str(self.counter))
        os.mkdir(scratch, 0o700)
        if self.uid is not None:
            os.chown(scratch, self.uid, self.uid)
        r, w = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            secret.clear()
            os.close(r)
            _sandbox_child.child_main(job, scratch, w, self.devnull, self.cfg, self.seccomp)
            os._exit(1)
        os.close(w)
        try:
            data, reason = self._collect(pid, r, start + timeout, cap)
        finally:
            os.close(r)
        elapsed = time.monotonic() - start
        if reason is None:
            result = self._parse_child(data, None, job, elapsed)
            if result is not None:
                # The report is in: kill and reap after the reply has gone out.
                self.deferred.append(lambda: self._cleanup(pid, scratch))
                return result
        status = self._cleanup(pid, scratch, deadline=start + timeout)
        if reason == "timeout":
            return {"ok": False, "error": f"timeout: exceeded {timeout:g}s", "elapsed_s": elapsed}
        if reason == "too_large":
            return {"ok": False, "error": "result too large", "elapsed_s": elapsed}
        return self._parse_child(data, status, job, elapsed)

    def _cleanup(self, pid: int, scratch: str, deadline: float | None = None) -> int:
        if deadline is not None:  # no report: let it exit on its own until the deadline
            self._wait_exit(pid, deadline)
        status = self._reap(pid)
        self._remove(scratch)
        return status

    @staticmethod
    def _wait_exit(pid: int, deadline: float) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return
        try:
            select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(pidfd)

    @staticmethod
    def _collect(pid: int, r: int, deadline: float, cap: int):
        """Read the child's report until EOF (the child closes the pipe before exiting)."""
        buf = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return buf, "timeout"
            ready, _, _ = select.select([r], [], [], remaining)
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    return buf, None
                buf += chunk
                if len(buf) > cap:
                    return buf, "too_large"

    def _reap(self, pid: int) -> int:
        for fn in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                fn()
            except OSError:
                pass
        status = 0
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        if self.pid_ns:  # PID 1 of the namespace: kill and reap anything that is left
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
        elif self.uid is not None:  # sweep the run's uid (it owns nothing else)
            helper = os.fork()
            if helper == 0:
                try:
                    os.setresuid(self.uid, self.uid, self.uid)
                    os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(helper, 0)
        return status

    @staticmethod
    def _parse_child(data: bytes, status: int | None, job: dict, elapsed: float) -> dict | None:
        """The child's report as a result; with `status=None`, None unless it is valid."""
        try:
            rep = json.loads(bytes(data)) if data else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            rep = None
        n = len(job.get("inputs", []))
        strs = (lambda xs: isinstance(xs, list) and all(x is None or isinstance(x, str)
                                                          for x in xs))
        if (not isinstance(rep, dict) or not (rep.get("error") is None
                                              or isinstance(rep.get("error"), str))
                or not strs(rep.get("errors", [])) or not isinstance(rep.get("runs", []), list)
                or not all(r is None or strs(r) for r in rep.get("runs", []))):
            if status is None:
                return None
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                try:
                    name = signal.Signals(sig).name
                except ValueError:
                    name = str(sig)
                return {"ok": False, "error": f"killed by signal {name}", "elapsed_s": elapsed}
            code = os.waitstatus_to_exitcode(status) if status else 0
            return {"ok": False, "error": f"exited (status {code}) without a result",
                    "elapsed_s": elapsed}
        stdout = rep.get("stdout") if isinstance(rep.get("stdout"), str) else ""
        out = {"ok": False, "error": rep.get("error"), "stdout": stdout[:1 << 20],
               "elapsed_s": elapsed}
        if out["error"] is not None or job.get("mode") == "script":
            out["ok"] = out["error"] is None
            out["runs"] = [None] * n
            return out
        runs, errors = rep.get("runs", []), rep.get("errors", [])
        if len(runs) != n or len(errors) != n:
            out["error"] = "malformed result from the sandboxed program"
            return out
        first_error = next((e for e in errors if e), None)
        out.update(ok=first_error is None, error=first_error, runs=runs, errors=errors)
        return out

    # -- serve -------------------------------------------------------------------------------
    def serve(self) -> None:
        _wire.write_frame(1, {"hello": True, "pid": os.getpid(), "layers": self.layers,
                              "scratch_base": self.scratch_base,
                              "private_tmp": self.private_tmp})
        gc.freeze()  # fewer copy-on-write faults in children
        while True:
            try:
                job = _wire.read_frame(0)
            except (ValueError, OSError):
                job = None
            if job is None:
                break
            try:
                result = self.run_job(job)
            except Exception as e:  # noqa: BLE001 -- the worker must survive any job
                result = {"ok": False, "error": f"sandbox worker error: {type(e).__name__}: {e}"}
            try:
                _wire.write_frame(1, {"id": job.get("id"), "result": result})
            except OSError as e:
                if e.errno == errno.EPIPE:
                    break
                raise
            finally:
                while self.deferred:
                    self.deferred.pop()()
        if not self.private_tmp:
            shutil.rmtree(self.scratch_base, ignore_errors=True)


if __name__ == "__main__":
    _view = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--fs-view=")), "auto")
    _worker = Worker(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0,
                     fs_view=_view)
    if "--no-audit-hook" in sys.argv:  # tests: show the OS layers hold on their own
        _worker.cfg["audit_hook"] = False
        _worker.layers["audit_hook"] = False
    _worker.serve()
