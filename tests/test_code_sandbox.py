"""Hostile programs against the sandboxed executor: each one must be contained.

Every test asserts the containment itself (the file does not exist, the connection never
arrived, the trainer and the workers are the same processes, the secret did not leak) and,
through the `pool` fixture, that no process is left behind.
"""
import hashlib
import os
import random
import socket
import sys
import sysconfig
import threading
import time
import uuid

import pytest

import zeroplay
from zeroplay.verifiers import code

TRAINER_PID = os.getpid()


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, real uid) for every process visible here."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/status") as fh:
                uid = int(fh.read().split("Uid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        table[int(d)] = (ppid, uid)
    return table


def _descendants(roots) -> set[int]:
    table = _proc_table()
    found, frontier = set(), set(roots)
    while frontier:
        found |= frontier
        frontier = {p for p, (pp, _) in table.items() if pp in frontier} - found
    return found


def _sandbox_uid_procs() -> set[int]:
    return {p for p, (_, uid) in _proc_table().items() if uid >= 1 << 24}


class Sandbox:
    def __init__(self) -> None:
        self.pool = code.SandboxPool(num_workers=2)
        self.layers = self.pool.layers()
        self.baseline = _descendants(self.pool.worker_pids())

    def run(self, program: str, input_expr: str = "", timeout_s: float = 2.0, **kw):
        return code.run(program, input_expr, timeout_s=timeout_s, pool=self.pool, **kw)

    def assert_clean(self) -> None:
        """Nothing but the workers themselves below the workers, no process of a sandbox uid."""
        deadline = time.monotonic() + 5.0
        while True:
            extra = _descendants(self.pool.worker_pids()) - self.baseline
            strays = _sandbox_uid_procs()
            if not extra and not strays:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"left behind: descendants {extra}, sandbox-uid {strays}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.pool.close()


@pytest.fixture
def pool(sandbox):
    yield sandbox
    sandbox.assert_clean()
    assert os.getpid() == TRAINER_PID
    assert sandbox.run("def f():\n    return 1").output == "1"  # still serving


@pytest.fixture
def host_path():
    paths = []

    def make(directory: str) -> str:
        p = os.path.join(directory, f"zeroplay-hostile-{uuid.uuid4().hex}")
        paths.append(p)
        return p

    yield make
    for p in paths:
        assert not os.path.exists(p), f"sandboxed program created {p}"


def test_layers_reported(sandbox):
    layers = sandbox.layers
    assert layers["audit_hook"]
    if os.geteuid() == 0:  # this machine runs the suite as root: every layer must be on
        for name in ("separate_uid", "net_namespace", "pid_namespace",
                     "readonly_root_private_tmp", "seccomp", "fs_view", "fs_view_mount"):
            assert layers[name], (name, layers.get("fs_view_detail"))


def test_ordinary_program(pool):
    r = pool.run("def f(a, b):\n    return sorted(a) + [b]", "[3, 1, 2], 'x'")
    assert r.ok and r.output == "[1, 2, 3, 'x']" and r.error is None


def test_fork_bomb(pool):
    prog = ("import os\n"
            "def f():\n"
            "    n = 0\n"
            "    for _ in range(100):\n"
            "        try:\n"
            "            if os.fork() == 0:\n"
            "                while True: pass\n"
            "            n += 1\n"
            "        except OSError:\n"
            "            pass\n"
            "    return n\n")
    r = pool.run(prog)
    assert not r.ok or r.output == "0"


def test_exec_and_shell(pool, host_path):
    target = host_path("/tmp")
    progs = [
        f"import os\ndef f():\n    return os.system('touch {target}')",
        f"import os\ndef f():\n    os.execv('/bin/sh', ['sh', '-c', 'touch {target}'])",
        f"import subprocess\ndef f():\n    subprocess.run(['touch', '{target}'])",
        f"import os\ndef f():\n    return os.posix_spawn('/usr/bin/touch', ['touch', '{target}'], {{}})",
        f"import pty\ndef f():\n    pty.spawn(['touch', '{target}'])",
    ]
    for prog in progs:
        r = pool.run(prog)
        assert not r.ok, prog


def test_file_writes_outside_scratch(pool, host_path):
    home = os.path.expanduser("~")
    for directory in ("/tmp", home, "/var/tmp", "/dev/shm", os.getcwd()):
        target = host_path(directory)
        for prog in (
            f"def f():\n    open({target!r}, 'w').write('x')",
            f"import os\ndef f():\n    os.close(os.open({target!r}, os.O_WRONLY | os.O_CREAT))",
            f"import io\ndef f():\n    io.FileIO({target!r}, 'w').write(b'x')",
            f"import os\ndef f():\n    os.mkdir({target!r})",
        ):
            r = pool.run(prog)
            assert not r.ok, prog


def test_scratch_is_private_and_removed(pool):
    prog = ("import os\n"
            "def f():\n"
            "    open('data.txt', 'w').write('hello')\n"
            "    return os.getcwd(), open('data.txt').read()\n")
    r = pool.run(prog)
    assert r.ok, r.error
    cwd, text = eval(r.output)  # noqa: S307 -- our own test output
    assert text == "hello"
    if os.path.exists(cwd):  # only visible without a private /tmp; then it must be gone
        pytest.fail(f"scratch dir {cwd} left behind")


def test_file_size_and_descriptor_limits(pool):
    big = "def f():\n    open('big', 'wb').write(b'x' * (64 * 1024 * 1024))\n"
    assert not pool.run(big).ok
    many = "def f():\n    return [open(f'f{i}', 'w') for i in range(10000)]\n"
    assert not pool.run(many).ok


def test_sockets_to_localhost(pool):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except socket.timeout:
                pass
            except OSError:
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        for prog in (
            f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), 1)",
            f"import _socket\ndef f():\n    s = _socket.socket()\n    s.connect(('127.0.0.1', {port}))",
            f"def f():\n    s = __import__('socket').socket()\n    s.connect(('127.0.0.1', {port}))",
        ):
            assert not pool.run(prog).ok, prog
        time.sleep(0.3)
    finally:
        stop.set()
        t.join()
        server.close()
    assert accepted == []


def test_ctypes(pool, host_path):
    target = host_path("/tmp")
    progs = [
        f"import ctypes\ndef f():\n    return ctypes.CDLL(None).kill({TRAINER_PID}, 9)",
        f"import ctypes\ndef f():\n    return ctypes.CDLL(None).system(b'touch {target}')",
        "import _ctypes\ndef f():\n    return _ctypes.dlopen(None)",
        "def f():\n    return __import__('ctypes').CDLL(None).getpid()",
    ]
    for prog in progs:
        r = pool.run(prog)
        assert not r.ok, prog


def test_signal_handlers_and_infinite_loops(pool):
    progs = [
        ("import signal\n"
         "def f():\n"
         "    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGALRM):\n"
         "        signal.signal(s, lambda *a: None)\n"
         "    while True: pass\n"),
        ("def f():\n"
         "    while True:\n"
         "        try:\n"
         "            while True: pass\n"
         "        except BaseException:\n"
         "            pass\n"),
        "import time\ndef f():\n    time.sleep(1000)\n",
    ]
    for prog in progs:
        start = time.monotonic()
        r = pool.run(prog, timeout_s=1.0)
        took = time.monotonic() - start
        assert not r.ok
        assert "timeout" in r.error or "not allowed" in r.error, r.error
        assert took < 4.0


def test_memory_bombs(pool):
    progs = [
        "def f():\n    return len(bytearray(8 * 1024 ** 3))",
        "def f():\n    x = []\n    while True:\n        x.append(' ' * 10 ** 7)",
        "def f():\n    return len([0] * 10 ** 10)",
    ]
    for prog in progs:
        r = pool.run(prog, timeout_s=10.0)
        assert not r.ok
        assert "MemoryError" in r.error or "killed" in r.error or "timeout" in r.error, r.error


def test_recursion(pool):
    r = pool.run("def f(n=0):\n    return f(n + 1)")
    assert not r.ok and "RecursionError" in r.error
    deep = ("import sys\n"
            "sys.setrecursionlimit(10 ** 9)\n"
            "def g(n):\n    return g(n + 1) + 1\n"
            "def f():\n    return g(0)\n")
    r = pool.run(deep, timeout_s=10.0)
    assert not r.ok  # C stack overflow: the child dies, the worker does not


def test_exits(pool):
    for prog in ("import os\ndef f():\n    os._exit(0)",
                 "import os\ndef f():\n    os.abort()",
                 "import sys\ndef f():\n    sys.exit(0)",
                 "def f():\n    raise SystemExit(3)",
                 "def f():\n    raise KeyboardInterrupt",
                 "def f():\n    exit()"):
        r = pool.run(prog)
        assert not r.ok and r.error, prog


def test_output_floods(pool):
    prog = ("import os, sys\n"
            "def f():\n"
            "    for _ in range(200):\n"
            "        print('x' * 100000)\n"
            "        sys.stderr.write('y' * 100000)\n"
            "        os.write(1, b'z' * 100000)\n"
            "        os.write(2, b'w' * 100000)\n"
            "    return 7\n")
    r = pool.run(prog, timeout_s=10.0)
    assert r.ok and r.output == "7"
    assert len(r.stdout) <= pool.pool.max_stdout_chars
    huge = pool.run("def f():\n    return 'a' * 10 ** 7")
    assert not huge.ok and "longer than" in huge.error


def test_killing_the_parent(pool):
    workers = pool.pool.worker_pids()
    targets = [TRAINER_PID, *workers, os.getppid()]
    for prog in (
        f"import os, signal\ndef f():\n    for p in {targets}:\n        os.kill(p, signal.SIGKILL)",
        f"import os, signal\ndef f():\n    for p in {targets}:\n        os.killpg(p, signal.SIGKILL)",
        "import os\ndef f():\n    os.kill(-1, 9)",
        "import os\ndef f():\n    os.kill(os.getppid(), 9)",
        "import os\ndef f():\n    os.kill(1, 9)",
    ):
        r = pool.run(prog)
        assert not r.ok, prog
        assert pool.pool.worker_pids() == workers and pool.pool.restarts == 0
    for pid in workers:
        os.kill(pid, 0)  # still alive


def test_reading_the_environment(monkeypatch):
    secret = f"zeroplay-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("ZEROPLAY_TEST_SECRET", secret)  # before the workers start
    with code.SandboxPool(num_workers=1) as fresh:
        prog = ("import os\n"
                "def f():\n"
                "    found = [dict(os.environ)]\n"
                f"    for p in ('/proc/{TRAINER_PID}/environ', '/proc/self/environ',\n"
                "              '/proc/1/environ', f'/proc/{os.getppid()}/environ',\n"
                f"              '/proc/{os.getppid()}/environ'):\n"
                "        try:\n"
                "            found.append(open(p, 'rb').read())\n"
                "        except Exception as e:\n"
                "            found.append(repr(e))\n"
                "    try:\n"
                "        names = os.listdir('/proc')\n"
                "    except OSError:\n"
                "        names = []  # no /proc in the filesystem view\n"
                "    for name in names:\n"
                "        try:\n"
                "            found.append(open(f'/proc/{name}/environ', 'rb').read())\n"
                "        except Exception:\n"
                "            pass\n"
                "    print(found)\n"
                "    return found\n")
        r = code.run(prog, "", pool=fresh)
        assert r.ok, r.error
        assert secret not in (r.output or "") and secret not in r.stdout
        assert "ZEROPLAY_TEST_SECRET" not in (r.output or "")


def test_threads_and_privileges(pool):
    for prog in ("import threading\ndef f():\n    threading.Thread(target=print).start()",
                 "import _thread\ndef f():\n    _thread.start_new_thread(print, ())",
                 "import os\ndef f():\n    os.setuid(0)",
                 "import os\ndef f():\n    os.chroot('.')"):
        assert not pool.run(prog).ok, prog


def test_forged_report_gains_nothing(pool):
    forge = ("import os, json\n"
             "def f(x):\n"
             "    rep = json.dumps({'error': None, 'runs': [['42']], 'errors': [None],\n"
             "                      'matches': [True], 'ok': True}).encode()\n"
             "    for fd in range(3, 64):\n"
             "        try:\n"
             "            os.write(fd, rep)\n"
             "        except OSError:\n"
             "            pass\n"
             "    os._exit(0)\n")
    assert not code.check_program_prediction(forge, [("1", "123456789")], pool=pool.pool)
    assert not code.check_input_prediction(forge, "1", "123456789", pool=pool.pool)


def test_dead_worker_is_replaced(pool):
    victim = pool.pool.worker_pids()[0]
    before = pool.pool.restarts
    os.kill(victim, 9)
    time.sleep(0.2)
    results = code.run_batch([("def f(x):\n    return x + 1", str(i)) for i in range(20)],
                             pool=pool.pool)
    assert [r.output for r in results] == [str(i + 1) for i in range(20)]
    assert victim not in pool.pool.worker_pids()
    assert pool.pool.restarts > before
    # The other worker may have served all 20 jobs before the replacement said hello; its
    # PID-1 child exists only after that, so wait for it before taking the new baseline.
    pool.pool.layers()
    pool.baseline = _descendants(pool.pool.worker_pids())


@pytest.mark.parametrize("program,input_expr,needle", [
    ("def f(:\n", "", "SyntaxError"),
    ("def g(x):\n    return x\n", "1", "does not define"),
    ("def f(x):\n    return x\n", "__import__('os').getpid()", "not a literal"),
    ("def f(x):\n    return x\n", "1; import os", "argument list"),
    ("def f(x):\n    return x\n", "f(1)", "not a literal"),
    (b"\xff\xfe\x00garbage\x80", "", "UTF-8"),
    ("def f():\n    return 1\x00\n", "", "null"),
    ("x = '" + "a" * (10 * 1024 * 1024) + "'\ndef f():\n    return 1\n", "", "too large"),
    (None, "", "string"),
    ("def f(x):\n    return x\n", "[" * 100000, "argument list"),
    ("def f(x):\n    return x\n", "'\ud800'", "surrogates"),
    ("raise ValueError('at import')", "", "ValueError"),
])
def test_bad_input_is_an_error_not_an_exception(pool, program, input_expr, needle):
    r = pool.run(program, input_expr)
    assert not r.ok and r.output is None
    assert isinstance(r.error, str) and needle.lower() in r.error.lower(), r.error


@pytest.fixture(scope="module")
def bare():
    """Workers without the audit hook: only the OS layers (uid, namespaces, read-only root,
    private /tmp, rlimits, seccomp) stand between these programs and the host."""
    if os.geteuid() != 0:
        pytest.skip("the OS layers need root (separate uid, namespaces)")
    box = code.SandboxPool(num_workers=1, audit_hook=False)
    assert not box.layers()["audit_hook"]
    yield box
    box.close()


def test_os_layers_hold_without_the_audit_hook(bare, host_path, monkeypatch):
    run = (lambda prog: code.run(prog, "", timeout_s=2.0, pool=bare))
    workers = bare.worker_pids()
    for directory in ("/tmp", os.path.expanduser("~"), os.getcwd(), "/var/tmp", "/dev/shm"):
        target = host_path(directory)
        run(f"def f():\n    open({target!r}, 'w').write('x')")
    target = host_path("/tmp")
    escapes = [
        "import os\ndef f():\n    return os.fork()",
        f"import ctypes\ndef f():\n    return ctypes.CDLL(None).system(b'touch {target}')",
        f"import os\ndef f():\n    os.execv('/usr/bin/touch', ['touch', '{target}'])",
        "import ctypes\ndef f():\n    return ctypes.CDLL(None).fork()",
        "import threading\ndef f():\n    threading.Thread(target=print).start()",
        "import socket\ndef f():\n    socket.create_connection(('127.0.0.1', 22), 1)",
        f"import os\ndef f():\n    os.kill({TRAINER_PID}, 9)",
        f"import ctypes\ndef f():\n    return ctypes.CDLL(None).kill({TRAINER_PID}, 9)",
        "import os\ndef f():\n    os.kill(-1, 9)",
        "import os\ndef f():\n    os.setuid(0)",
    ]
    for prog in escapes:
        r = run(prog)
        assert not r.ok or r.output in ("-1", "(-1, 0)", str(127 << 8)), (prog, r)
    r = run("import os\ndef f():\n    return sorted(p for p in os.listdir('/proc') if p.isdigit())")
    if bare.layers()["fs_view_mount"]:  # no /proc at all in the view
        assert not r.ok and "FileNotFoundError" in r.error, r
    else:
        assert r.ok and str(TRAINER_PID) not in eval(r.output)  # noqa: S307 -- PID namespace
    r = run("import os\ndef f():\n    return os.listdir(os.path.expanduser('/root'))")
    assert not r.ok or ".bash_history" not in r.output
    assert bare.worker_pids() == workers
    os.kill(TRAINER_PID, 0)


# -- the filesystem view: a program sees the interpreter and its scratch dir, nothing else --------

_PROBE = '''
import os
def f(paths):
    out = {}
    for p in paths:
        seen = []
        for name, fn in (("stat", os.stat), ("listdir", os.listdir),
                         ("open", lambda q: open(q, "rb").read(64))):
            try:
                v = fn(p)
                seen.append(["ok", sorted(v) if name == "listdir" else repr(v)[:80]])
            except Exception as e:
                seen.append([type(e).__name__, str(e)[:200]])
        out[p] = seen
    return out
'''


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.realpath(zeroplay.__file__)))


def _some_file(directory: str) -> str | None:
    """A regular file (not a symlink) somewhere under `directory` that this process can read,
    outside the interpreter's own prefixes (which the view does show)."""
    prefixes = [os.path.realpath(p) + "/" for p in (sys.prefix, sys.base_prefix)]
    for top, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))[:5]
        for name in sorted(files):
            p = os.path.join(top, name)
            if (os.path.isfile(p) and not os.path.islink(p) and os.access(p, os.R_OK)
                    and not any(os.path.realpath(p).startswith(pre) for pre in prefixes)):
                return p
    return None


def _secret_targets() -> tuple[list[str], list[str]]:
    """(directories, files) a program must not read: the project folder, ../shared next to it
    (the benchmark data), the home folder, /etc/passwd."""
    root = _project_root()
    dirs, files = [root], [os.path.realpath(zeroplay.__file__), "/etc/passwd"]
    shared = os.path.join(os.path.dirname(root), "shared")
    home = os.path.realpath(os.path.expanduser("~"))
    for d in (shared, os.path.join(shared, "data"), home):
        if os.path.isdir(d):
            dirs.append(d)
            f = _some_file(d)
            if f is not None:
                files.append(f)
    for f in ("README.md", "pytest.ini", "setup.sh"):
        if os.path.isfile(os.path.join(root, f)):
            files.append(os.path.join(root, f))
    return dirs, sorted({f for f in files if os.path.isfile(f)})


def _on_the_way(directory: str) -> set[str]:
    """Names under `directory` on the way to the interpreter's own trees: the view may show
    them as empty skeletons (never more)."""
    names = set()
    for p in [sys.prefix, sys.base_prefix, sys.executable, *sysconfig.get_paths().values()]:
        for q in {p, os.path.realpath(p)} if p else ():
            if q.startswith(directory.rstrip("/") + "/"):
                names.add(q[len(directory.rstrip("/")) + 1:].split("/")[0])
    return names


@pytest.fixture(scope="module", params=["auto", "landlock"])
def viewed(request, sandbox):
    """A pool per mechanism: the default one, and Landlock alone (what a non-root user gets)."""
    if request.param == "auto":
        box, close = sandbox.pool, False
    else:
        box, close = code.SandboxPool(num_workers=1, fs_view="landlock"), True
    layers = box.layers()
    try:
        if request.param == "auto" and not layers.get("fs_view"):
            pytest.skip(f"no filesystem view here: {layers.get('fs_view_detail')}")
        if request.param == "landlock" and not layers.get("landlock"):
            pytest.skip(f"no Landlock here: {layers.get('fs_view_detail')}")
        yield box, layers
    finally:
        if close:
            box.close()


def test_programs_cannot_read_the_host(viewed):
    box, layers = viewed
    dirs, files = _secret_targets()
    for p in dirs + files:  # the host side can: the test would prove nothing otherwise
        assert os.path.exists(p), p
    r = code.run(_PROBE, repr(dirs + files), timeout_s=5.0, pool=box)
    assert r.ok, r.error
    seen = eval(r.output)  # noqa: S307 -- our own test output
    for p in files:
        st, ls, op = seen[p]
        assert op[0] != "ok", (p, op)  # not one byte of it
        if layers["fs_view_mount"]:
            assert st[0] == "FileNotFoundError", (p, st)  # not even its name
    for p in dirs:
        st, ls, op = seen[p]
        assert op[0] != "ok", (p, op)
        allowed = _on_the_way(p)
        assert ls[0] != "ok" or set(ls[1]) <= allowed, (p, ls)  # never its contents
        if layers["fs_view_mount"] and not allowed:
            assert st[0] == "FileNotFoundError", (p, st)
    # Landlock alone denies reads and listings, not stat: names outside can still be stat'ed.


def test_programs_still_run_with_the_view(viewed):
    """What AZR's programs import (random with a seed, datetime...) works inside the view."""
    box, _ = viewed
    prog = ("import math, itertools, collections, functools, re, string, heapq, bisect\n"
            "import random, datetime, hashlib, json, decimal, fractions, statistics, typing\n"
            "def f(seed):\n"
            "    random.seed(seed)\n"
            "    return (math.isqrt(17), list(itertools.permutations('ab')),\n"
            "            collections.Counter('abca').most_common(1),\n"
            "            functools.reduce(lambda a, b: a * b, range(1, 6)),\n"
            "            re.findall(r'\\d+', 'a1b22'), string.ascii_uppercase[:3],\n"
            "            heapq.nlargest(2, [5, 1, 9]), bisect.bisect_left([1, 3, 5], 4),\n"
            "            [random.randint(0, 10 ** 6) for _ in range(3)], random.random(),\n"
            "            str(datetime.date(2024, 2, 28) + datetime.timedelta(days=2)),\n"
            "            hashlib.md5(b'zeroplay').hexdigest(), str(decimal.Decimal('0.1') * 3),\n"
            "            str(fractions.Fraction(3, 6)), statistics.median([3, 1, 2]),\n"
            "            json.dumps({'a': 1}))\n")
    rng = random.Random(1234)
    expected = (4, [("a", "b"), ("b", "a")], [("a", 2)], 120, ["1", "22"], "ABC", [9, 5], 2,
                [rng.randint(0, 10 ** 6) for _ in range(3)], rng.random(), "2024-03-01",
                hashlib.md5(b"zeroplay").hexdigest(), "0.3", "1/2", 2, '{"a": 1}')
    r = code.run(prog, "1234", pool=box)
    assert r.ok, r.error
    assert r.output == repr(expected)
    # Writing and reading back in the scratch dir still works.
    r = code.run("def f():\n    open('x', 'w').write('hi')\n    return open('x').read()",
                 "", pool=box)
    assert r.ok and r.output == "'hi'", r.error


def test_missing_view_is_reported_and_logged(monkeypatch, caplog):
    """Without a filesystem view (here: asked for none) the pool says so in `layers()` and
    logs one warning; programs still run."""
    monkeypatch.setattr(code, "_warned", set())
    with caplog.at_level("WARNING", logger=code.__name__):
        with code.SandboxPool(num_workers=1, fs_view="none") as box:
            layers = box.layers()
            assert layers["fs_view"] is False and not layers["landlock"]
            assert not layers["fs_view_mount"]
            assert "unavailable" in layers["fs_view_detail"]
            assert code.run("def f():\n    return 2", "", pool=box).output == "2"
            box.layers()
    warnings = [rec for rec in caplog.records if "filesystem view" in rec.getMessage()]
    assert len(warnings) == 1, warnings
    with pytest.raises(ValueError):
        code.SandboxPool(fs_view="bogus")
