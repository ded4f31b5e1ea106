"""The filesystem a sandboxed program sees: the interpreter, its scratch dir, nothing else.

Loaded by path by the sandbox worker (`_sandbox_worker.py`), before it forks any child; standard
library only. Two mechanisms, each used where the kernel allows it:

- A mount view (root, in the worker's private mount namespace): a small tmpfs becomes the new
  root (`pivot_root`, or `chroot` where pivot_root is refused). It holds read-only bind mounts
  of just the trees the interpreter needs, at their own paths (so `sys.path`, module
  `__file__`s and the dynamic loader's paths stay valid): the directories on `sys.path` (the
  standard library, lib-dynload, site-packages), the executable and the symlinks leading to
  it, the directories of the shared libraries mapped into the worker (libpython, libc: the
  loader finds dlopen'ed libraries such as libcrypto there), `/etc/ld.so.cache`, the
  harmless device nodes (`/dev/null`, `zero`, `full`, `random`, `urandom`) and a fresh
  size-capped tmpfs on `/tmp` for the scratch dirs. Directories on the way to those trees are
  execute-only skeletons: a program can walk to the standard library but cannot list `/root`
  or the project folder, and nothing else exists (not the project, not the data next to it,
  not the home folder, not `/etc/passwd`, not `/proc`). The root itself is then read-only.
- Landlock (Linux >= 5.13, no privileges needed): the worker restricts itself, and every child
  inherits it: read (and execute) beneath the same trees, full access beneath the worker's
  scratch base, nothing else. Landlock does not cover `stat`: outside names can still be
  stat'ed, but not opened or listed. Used on top of the mount view, and alone without root.

Nothing here is exposed if it would expose the sandbox's own package folder (a checkout that
`sys.path` points into, e.g. an editable install's `.pth`), or `/`.
"""
from __future__ import annotations

import ctypes
import os
import platform
import stat
import struct
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
MNT_DETACH = 2
_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
_LOCKABLE = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_SYS_LANDLOCK = (444, 445, 446)  # create_ruleset, add_rule, restrict_self: same on all arches
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
SKELETON_MODE = 0o711  # walkable, not listable, by anyone but root

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def _syscall(nr: int, *args) -> int:
    """syscall(2) with every integer passed as a full long (variadic arguments)."""
    return _libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a
                                              for a in args])


def _err(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src, target, fstype, flags, data=None) -> None:
    enc = (lambda s: None if s is None else os.fsencode(s))
    if _libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise _err(f"mount {src or fstype or ''} on {target}")


# -- what a program needs ------------------------------------------------------------------------

def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mapped_files() -> list[str]:
    """Files mapped into this process: the interpreter, libpython, libc, extension modules..."""
    found = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                fields = line.split(None, 5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    path = fields[5].rstrip("\n")
                    if not path.endswith(" (deleted)") and path not in found:
                        found.append(path)
    except OSError:
        pass
    return found


def needed_paths(protect: str) -> tuple[list[str], list[str]]:
    """(trees, files) a child needs to read, as host paths (symlinks allowed). `protect` is the
    sandbox's own directory (…/zeroplay/verifiers). Nothing is exposed that contains it, or
    that lies in the folder holding the `zeroplay` package (a checkout: its data, checkpoints)
    unless it is part of the interpreter's own prefix (a venv inside the checkout). When the
    package is installed in site-packages, that directory is code only and may be exposed."""
    protect = os.path.realpath(protect)
    installs = ("site-packages", "dist-packages")
    project = os.path.dirname(os.path.dirname(protect))
    if os.path.basename(project) in installs:
        project = None
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                              sys.base_exec_prefix) if p}
    trees: list[str] = []
    files: list[str] = []

    def allowed(real: str) -> bool:
        if real == "/" or (_inside(protect, real) and os.path.basename(real) not in installs):
            return False
        return (project is None or not _inside(real, project)
                or any(_inside(real, pre) and not _inside(protect, pre) for pre in prefixes))

    def add_tree(p: str) -> None:
        if p and os.path.isabs(p) and os.path.isdir(p) and p not in trees:
            if allowed(os.path.realpath(p)):
                trees.append(p)

    def add_file(p: str) -> None:
        if p and os.path.isabs(p) and os.path.isfile(p) and p not in files:
            real = os.path.realpath(p)
            if allowed(real) and not _inside(real, protect):
                files.append(p)

    for p in sys.path:
        add_tree(os.path.abspath(p) if p else "")
    add_file(sys.executable)
    add_file(os.path.realpath(sys.executable))
    for p in _mapped_files():
        if ".so" in os.path.basename(p):  # a shared library: its directory, for its siblings
            d = os.path.dirname(p)
            add_tree(d)
            for a, b in (("/usr/lib/", "/lib/"), ("/lib/", "/usr/lib/")):  # merged-/usr aliases
                if d.startswith(a):
                    add_tree(b + d[len(a):])
        else:
            add_file(p)
    add_tree("/usr/local/lib")
    add_file("/etc/ld.so.cache")
    return trees, files


# -- the mount view -------------------------------------------------------------------------------

def _mountinfo() -> list[tuple[str, int]]:
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


class _View:
    """Builds the view under `stage` (a fresh tmpfs mounted there)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.points = _mountinfo()
        self.bound: list[str] = []  # real host paths bind-mounted into the view

    def _flags_of(self, real: str) -> int:
        """Per-mount flags of the mount holding `real` (a remount must keep locked ones)."""
        best, flags = "", 0
        for path, f in self.points:
            if _inside(real, path) and len(path) >= len(best):
                best, flags = path, f
        return flags & _LOCKABLE

    def covered(self, real: str) -> bool:
        return any(_inside(real, b) for b in self.bound)

    def _bind(self, src: str, target: str, *, device: bool = False) -> None:
        st = os.stat(src)
        if stat.S_ISDIR(st.st_mode):
            os.makedirs(target, mode=SKELETON_MODE, exist_ok=True)
        elif not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o444))
        _mount(src, target, None, MS_BIND)
        flags = MS_RDONLY | MS_NOSUID | (MS_NOEXEC if device else MS_NODEV)
        _mount(None, target, None, MS_REMOUNT | MS_BIND | flags | self._flags_of(src))
        self.bound.append(src)

    def place(self, path: str, *, device: bool = False) -> None:
        """Make `path` resolve in the view as it does here: replicate each symlink met on the
        way, create skeleton directories, bind-mount the object it finally names."""
        todo = [c for c in path.split("/") if c][::-1]
        cur, hops = "/", 0
        while todo:
            name = todo.pop()
            if name == ".":
                continue
            if name == "..":
                cur = os.path.dirname(cur)
                continue
            nxt = os.path.join(cur, name)
            if self.covered(nxt):  # already inside an exposed tree: the rest resolves there
                return
            st = os.lstat(nxt)
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    raise OSError(f"too many symlinks on the way to {path}")
                target = os.readlink(nxt)
                here = self.stage + nxt
                if not os.path.lexists(here):
                    os.symlink(target, here)
                todo.extend([c for c in target.split("/") if c][::-1])
                if target.startswith("/"):
                    cur = "/"
                continue
            if not todo:
                self._bind(nxt, self.stage + nxt, device=device)
                return
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(f"{nxt} is not a directory (on the way to {path})")
            here = self.stage + nxt
            if not os.path.isdir(here):
                os.mkdir(here, SKELETON_MODE)
            cur = nxt


def _pick_stage(sources: list[str]) -> str:
    """An existing directory to mount the new root on that hides none of the sources."""
    reals = [os.path.realpath(s) for s in sources]
    for cand in ("/tmp", "/mnt", "/media", "/srv", "/var/tmp", "/opt", "/run"):
        if os.path.isdir(cand) and not os.path.islink(cand) and not any(
                _inside(r, cand) or _inside(cand, r) for r in reals):
            return cand
    raise OSError("no directory to build the filesystem view on")


def mount_view(trees: list[str], files: list[str], *, tmp_size: str = "512m") -> str:
    """Replace this mount namespace's root with a view of `trees` and `files` (`needed_paths`)
    and the rest described in the module docstring. Call as root inside a private mount
    namespace whose mounts are already MS_PRIVATE, before any child exists. Returns how the
    root was switched ("pivot_root" or "chroot"); raises OSError (with the mounts it made
    detached) if the view cannot be built."""
    if not trees:
        raise OSError("found no interpreter paths to expose")
    devices = [d for d in DEVICES if os.path.exists(d) and stat.S_ISCHR(os.stat(d).st_mode)]
    stage = _pick_stage(trees + files + devices)
    _mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, f"size=4m,mode={SKELETON_MODE:o}")
    switched = False
    try:
        view = _View(stage)
        # Shortest real paths first, so a tree is never bound beneath a skeleton that a larger
        # tree would later cover; files (and symlink chains) last.
        for p in sorted(trees, key=lambda t: len(os.path.realpath(t))):
            view.place(p)
        for p in files:
            view.place(p)
        for d in devices:
            view.place(d, device=True)
        os.mkdir(stage + "/tmp", 0o1777)
        _mount("tmpfs", stage + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
               f"size={tmp_size},mode=1777")
        how = "chroot"
        nr = _SYS_PIVOT_ROOT.get(platform.machine())
        old = stage + "/.old-root"
        os.mkdir(old, 0o700)
        os.chdir(stage)
        if nr is not None and _syscall(nr, os.fsencode(stage), os.fsencode(old)) == 0:
            switched, how = True, "pivot_root"
            os.chdir("/")
            if _libc.umount2(b"/.old-root", MNT_DETACH) != 0:
                raise _err("detaching the old root")
            os.rmdir("/.old-root")
        else:  # e.g. an initramfs root: the old mounts stay, out of reach of an unprivileged
            os.rmdir(old)  # child (and seccomp denies chroot, mount and pivot_root anyway)
            os.chroot(stage)
            switched = True
            os.chdir("/")
        _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        return how
    except BaseException as e:
        if switched:  # half a view is no view, and there is no way back: fail closed
            os.write(2, f"zeroplay sandbox worker: filesystem view broken: {e}\n".encode())
            os._exit(70)
        os.chdir("/")
        _libc.umount2(os.fsencode(stage), MNT_DETACH)
        raise


# -- Landlock ------------------------------------------------------------------------------------

_LL_EXECUTE, _LL_WRITE_FILE, _LL_READ_FILE, _LL_READ_DIR = 1, 2, 4, 8
_LL_TRUNCATE, _LL_IOCTL_DEV = 1 << 14, 1 << 15
_LL_FILE_RIGHTS = _LL_EXECUTE | _LL_WRITE_FILE | _LL_READ_FILE | _LL_TRUNCATE | _LL_IOCTL_DEV
_LL_ABI_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_LL_ALL = (1 << 16) - 1  # ABI 5 and later: up to IOCTL_DEV
_PR_SET_NO_NEW_PRIVS = 38


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or refused."""
    create = _SYS_LANDLOCK[0]
    v = _syscall(create, None, 0, 1)
    return max(0, int(v))


def landlock(trees: list[str], files: list[str], scratch: str) -> int:
    """Restrict this process (and all it forks) to reading `trees` and `files` (`needed_paths`,
    computed before any mount view: it reads /proc), the device nodes, and to using `scratch`.
    Returns the Landlock ABI used; raises OSError if it cannot."""
    abi = landlock_abi()
    if abi < 1:
        raise OSError(ctypes.get_errno() or 38, "Landlock is not available: "
                      + os.strerror(ctypes.get_errno() or 38))
    handled = _LL_ABI_RIGHTS.get(abi, _LL_ALL)
    create, add_rule, restrict = _SYS_LANDLOCK
    attr = ctypes.create_string_buffer(struct.pack("=Q", handled), 8)
    fd = _syscall(create, attr, 8, 0)
    if fd < 0:
        raise _err("landlock_create_ruleset")
    try:
        read = _LL_EXECUTE | _LL_READ_FILE | _LL_READ_DIR
        rules = [(p, read) for p in trees] + [(p, read) for p in files]
        rules += [(d, _LL_READ_FILE | _LL_WRITE_FILE | _LL_IOCTL_DEV) for d in DEVICES]
        rules.append((scratch, handled))
        for path, access in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not here: nothing to allow
            try:
                if not stat.S_ISDIR(os.fstat(pfd).st_mode):
                    access &= _LL_FILE_RIGHTS
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access & handled, pfd), 12)
                if _syscall(add_rule, fd, 1, rule, 0) != 0:
                    raise _err(f"landlock_add_rule {path}")
            finally:
                os.close(pfd)
        _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if _syscall(restrict, fd, 0) != 0:
            raise _err("landlock_restrict_self")
    finally:
        os.close(fd)
    return abi
