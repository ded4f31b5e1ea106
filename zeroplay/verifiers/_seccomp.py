"""A seccomp-BPF deny list for sandboxed children, built with ctypes (no libseccomp needed).

Denied system calls fail with EPERM (the Python program sees PermissionError); a call made
through a foreign ABI (x32, or 32-bit int 0x80 on x86_64) kills the process. Covered: creating
processes and threads (fork, vfork, clone, clone3), exec, sockets, signalling other processes,
ptrace and cross-process memory access, namespaces and mounts, kernel keyrings, BPF, perf,
io_uring, module loading, reboot/swap/clock. Only x86_64 and aarch64 are known; elsewhere
`install` reports that no filter was installed.
"""
from __future__ import annotations

import ctypes
import platform
import struct

_DENY_X86_64 = [
    41, 53,                      # socket, socketpair
    56, 57, 58, 435,             # clone, fork, vfork, clone3
    59, 322,                     # execve, execveat
    62, 200, 234, 129, 297, 424,  # kill, tkill, tgkill, rt_(tg)sigqueueinfo, pidfd_send_signal
    101, 310, 311, 434, 438,     # ptrace, process_vm_readv/writev, pidfd_open, pidfd_getfd
    165, 166, 155, 161, 272, 308,  # mount, umount2, pivot_root, chroot, unshare, setns
    428, 429, 430, 431, 432, 433, 442,  # new mount API
    321, 298, 323, 425, 426, 427,  # bpf, perf_event_open, userfaultfd, io_uring_*
    248, 249, 250,               # add_key, request_key, keyctl
    175, 176, 313, 246, 320,     # init/delete/finit_module, kexec_load, kexec_file_load
    169, 167, 168, 135, 163, 179,  # reboot, swapon, swapoff, personality, acct, quotactl
    159, 164, 227, 103, 172, 173,  # adjtimex, settimeofday, clock_settime, syslog, iopl, ioperm
    212, 153, 303, 304,          # lookup_dcookie, vhangup, name_to_handle_at, open_by_handle_at
    237, 238, 256, 279,          # mbind, set_mempolicy, migrate_pages, move_pages
]
_DENY_AARCH64 = [
    198, 199,                    # socket, socketpair
    220, 435,                    # clone, clone3
    221, 281,                    # execve, execveat
    129, 130, 131, 138, 240, 424,
    117, 270, 271, 434, 438,
    40, 39, 41, 51, 97, 268,
    428, 429, 430, 431, 432, 433, 442,
    280, 241, 282, 425, 426, 427,
    217, 218, 219,
    105, 106, 273, 104, 294,
    142, 224, 225, 92, 89, 60,
    171, 170, 112, 116,
    18, 58, 264, 265,
    235, 237, 238, 239,
]
_ARCH = {"x86_64": (0xC000003E, _DENY_X86_64), "aarch64": (0xC00000B7, _DENY_AARCH64)}

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_EPERM = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_filter(machine: str | None = None) -> bytes | None:
    """The BPF program as bytes, or None for an unknown architecture."""
    arch = _ARCH.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, deny = arch
    n = len(deny)
    prog = [
        _insn(_BPF_LD_W_ABS, 0, 0, 4),                 # A = arch
        _insn(_BPF_JEQ_K, 1, 0, audit_arch),           # arch ok -> skip the kill
        _insn(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_BPF_LD_W_ABS, 0, 0, 0),                 # A = syscall nr
    ]
    if audit_arch == 0xC000003E:                       # x32 ABI numbers carry bit 30
        prog.append(_insn(_BPF_JGE_K, 0, 1, 0x40000000))
        prog.append(_insn(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS))
    for idx, nr in enumerate(deny):                    # match -> jump to the EPERM return
        prog.append(_insn(_BPF_JEQ_K, n - idx, 0, nr))
    prog.append(_insn(_BPF_RET_K, 0, 0, _RET_ALLOW))
    prog.append(_insn(_BPF_RET_K, 0, 0, _RET_ERRNO | _EPERM))
    return b"".join(prog)


class Installer:
    """Prepared once in the (trusted) worker; `install()` is one prctl in each child."""

    def __init__(self) -> None:
        self.program = build_filter()
        self._libc = ctypes.CDLL(None, use_errno=True)
        if self.program is None:
            return
        self._buf = ctypes.create_string_buffer(self.program, len(self.program))

        class _Fprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self._fprog = _Fprog(len(self.program) // 8, ctypes.addressof(self._buf))
        self._prctl = self._libc.prctl
        self._prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                                ctypes.c_ulong]

    def install(self) -> bool:
        if self.program is None:
            return False
        if self._prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER,
                           ctypes.addressof(self._fprog), 0, 0) == 0
