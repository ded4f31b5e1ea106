"""Hand-written CPU kernels, compiled once per machine and registered as XLA FFI targets.

Only what XLA:CPU does poorly lives here (today: the fused one-token decode step in
`cpu_decode.cc`, see its header and docs/performance.md). The source is compiled on first use with
the system C++ compiler into the zeroplay cache (`$ZEROPLAY_CACHE` or `~/.cache/zeroplay`), keyed by
the hash of the source, the flags and the jax version, and written with an atomic rename so that a
second process or a kill never leaves half a library. Nothing is downloaded.

Where the kernel cannot be had (not x86-64 with AVX2 and FMA, no compiler, a failed build, or
`ZEROPLAY_CPU_KERNEL=off`), `cpu_decode_available()` is False with the reason in
`cpu_decode_unavailable_reason()`, and callers use their XLA path. `ZEROPLAY_CPU_KERNEL=off` and a
machine that is not x86-64 never look for a compiler. A build that fails (no compiler, or the
compiler exits with an error) leaves a marker next to where the library would be, keyed the same
way and holding the one-line reason, so later processes give the same answer without compiling
again; a new source, compiler, flag set or jax version is a new key and is tried afresh, and
deleting the marker (or `ZEROPLAY_CPU_KERNEL=rebuild`) retries. A timeout is not cached.

Threads: the kernel runs on its own team, the caller plus one worker per further CPU this process
may use (`sched_getaffinity`); `ZEROPLAY_CPU_KERNEL_THREADS=N` sets the team size (read once per
process).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

CPU_DECODE_TARGET = "zp_cpu_decode_step"
CPU_PACK_TARGET = "zp_cpu_pack_panels"
CPU_PACK_GATE_UP_TARGET = "zp_cpu_pack_gate_up"
CPU_FAN_OUT_TARGET = "zp_cpu_fan_out"
_SOURCE = Path(__file__).with_name("cpu_decode.cc")
_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-mavx2", "-mfma", "-fno-math-errno", "-pthread"]
_LOCK = threading.Lock()
_STATE: dict = {}


def _cache_dir() -> Path:
    root = os.environ.get("ZEROPLAY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zeroplay")
    return Path(root) / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _key(cxx: str | None) -> str:
    import jax

    return hashlib.sha256(_SOURCE.read_bytes() + " ".join(_FLAGS + [cxx or "<no compiler>", jax.__version__]).encode()
                          ).hexdigest()[:16]


def _failed(key: str, reason: str) -> RuntimeError:
    """Records a build failure for `key` (atomically; best effort) and returns the error to raise."""
    marker = _cache_dir() / f"cpu_decode-{key}.failed"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".failed", dir=marker.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(reason + "\n")
        os.replace(tmp, marker)
    except OSError:
        pass
    return RuntimeError(reason)


def _cached_failure(key: str) -> str | None:
    marker = _cache_dir() / f"cpu_decode-{key}.failed"
    if os.environ.get("ZEROPLAY_CPU_KERNEL", "").lower() == "rebuild":
        marker.unlink(missing_ok=True)
        return None
    try:
        reason = marker.read_text().strip()
    except OSError:
        return None
    return f"{reason} (cached: delete {marker} to retry)"


def _build(cxx: str | None) -> Path:
    import jax.ffi

    key = _key(cxx)
    out = _cache_dir() / f"cpu_decode-{key}.so"
    if out.exists():
        return out
    cached = _cached_failure(key)
    if cached:
        raise RuntimeError(cached)
    if cxx is None:
        raise _failed(key, "no C++ compiler found (set CXX)")
    include = jax.ffi.include_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        try:
            proc = subprocess.run([cxx, *_FLAGS, f"-I{include}", str(_SOURCE), "-o", tmp],
                                  capture_output=True, text=True, timeout=300)
        except OSError as e:  # vanished or not executable
            raise _failed(key, f"compiling {_SOURCE.name} failed: cannot run {cxx}: {e.strerror or e}") from None
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines()[-1:]
            raise _failed(key, f"compiling {_SOURCE.name} failed: {lines[0] if lines else proc.returncode}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _load() -> None:
    if os.environ.get("ZEROPLAY_CPU_KERNEL", "").lower() in ("0", "off", "false", "no"):  # before any build
        raise RuntimeError("disabled by ZEROPLAY_CPU_KERNEL")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise RuntimeError(f"needs x86-64 with AVX2 and FMA, this is {platform.machine()}")
    lib = ctypes.CDLL(str(_build(_compiler())))
    if not lib.zp_cpu_supported():
        raise RuntimeError("this CPU lacks AVX2 or FMA")
    import jax.ffi

    for name, fn in ((CPU_DECODE_TARGET, lib.ZpCpuDecodeStep), (CPU_PACK_TARGET, lib.ZpCpuPackPanels),
                     (CPU_PACK_GATE_UP_TARGET, lib.ZpCpuPackGateUp), (CPU_FAN_OUT_TARGET, lib.ZpCpuFanOut)):
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(fn), platform="cpu")
    _STATE["lib"] = lib


def cpu_decode_available() -> bool:
    """Build (once) and register the fused CPU decode step; False if it cannot be had here."""
    with _LOCK:
        if "ok" not in _STATE:
            try:
                _load()
                _STATE["ok"], _STATE["why"] = True, ""
            except Exception as e:  # any failure means: use the XLA path
                _STATE["ok"], _STATE["why"] = False, str(e).splitlines()[0] if str(e) else type(e).__name__
        return _STATE["ok"]


def cpu_decode_unavailable_reason() -> str:
    cpu_decode_available()
    return _STATE["why"]
