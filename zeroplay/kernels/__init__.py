"""Hand-written CPU kernels, compiled once per machine and registered as XLA FFI targets.

Only what XLA:CPU does poorly lives here (today: the fused one-token decode step in
`cpu_decode.cc`, see its header and docs/performance.md). The source is compiled on first use with
the system C++ compiler into the zeroplay cache (`$ZEROPLAY_CACHE` or `~/.cache/zeroplay`), keyed by
the hash of the source, the flags and the jax version, and written with an atomic rename so that a
second process or a kill never leaves half a library. Nothing is downloaded.

Where the kernel cannot be had (not x86-64 with AVX2 and FMA, no compiler, a failed build, or
`ZEROPLAY_CPU_KERNEL=off`), `cpu_decode_available()` is False with the reason in
`cpu_decode_unavailable_reason()`, and callers use their XLA path.
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


def _build(cxx: str) -> Path:
    import jax
    import jax.ffi

    include = jax.ffi.include_dir()
    key = hashlib.sha256(_SOURCE.read_bytes() + " ".join(_FLAGS + [cxx, jax.__version__]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"cpu_decode-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cxx, *_FLAGS, f"-I{include}", str(_SOURCE), "-o", tmp],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines()[-1:]
            raise RuntimeError(f"compiling {_SOURCE.name} failed: {lines[0] if lines else proc.returncode}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _load() -> None:
    if os.environ.get("ZEROPLAY_CPU_KERNEL", "").lower() in ("0", "off", "false", "no"):
        raise RuntimeError("disabled by ZEROPLAY_CPU_KERNEL")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise RuntimeError(f"needs x86-64 with AVX2 and FMA, this is {platform.machine()}")
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    lib = ctypes.CDLL(str(_build(cxx)))
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
