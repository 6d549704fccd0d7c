"""Hostile programs: each gets a clear status, has no host effect, and never passes.

Most run with the static check and the runtime guard OFF and dangerous imports allowed, so they exercise
the deeper walls (namespaces, read-only mounts, zygote, uid drop, rlimits, seccomp) in both full and
degraded ("rlimits") isolation.  Reflection, filesystem, memory and parse-bomb classes: test_sandbox_walls.py.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flywheel.verifiers.sandbox import DEFAULT_ALLOWED_IMPORTS, Sandbox, SandboxConfig, Status

RELAXED_IMPORTS = DEFAULT_ALLOWED_IMPORTS | {
    "os",
    "sys",
    "subprocess",
    "socket",
    "ctypes",
    "signal",
    "threading",
    "builtins",
    "gc",
}


@pytest.fixture(scope="module", params=["full", "rlimits"])
def relaxed(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    config = SandboxConfig(
        workers=2,
        timeout_s=1.0,
        memory_mb=256,
        static_check=False,
        runtime_guard=False,
        allowed_imports=RELAXED_IMPORTS,
        isolation=request.param,
    )
    with Sandbox(config) as sb:
        yield sb


@pytest.fixture(scope="module")
def strict() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(workers=2, timeout_s=0.5)) as sb:
        yield sb


def one(sb: Sandbox, program: str, args: str = "") -> tuple[Status, str]:
    (result,) = sb.run(program, [args])
    return result.status, result.error or result.value or ""


def test_infinite_loop(relaxed: Sandbox) -> None:
    assert one(relaxed, "def f():\n    while True:\n        pass")[0] == Status.TIMEOUT


def test_memory_bomb(relaxed: Sandbox) -> None:
    assert one(relaxed, "def f():\n    return len(bytearray(2 * 1024**3))")[0] == Status.MEMORY
    # bytes(n) is calloc'ed, so the limit is hit without writing 256 MB first (slow on a loaded machine).
    grow = "def f():\n    x = []\n    while True:\n        x.append(bytes(50 * 1024**2))"
    assert one(relaxed, grow)[0] == Status.MEMORY


def test_fork_bomb_and_subprocess(relaxed: Sandbox) -> None:
    status, error = one(relaxed, "import os\ndef f():\n    while True:\n        os.fork()")
    assert status == Status.ERROR and "BlockingIOError" in error
    spawn = "import subprocess\ndef f():\n    return subprocess.run(['touch', '/tmp/flywheel_sub']).returncode"
    status, _ = one(relaxed, spawn)
    assert status == Status.ERROR
    assert not Path("/tmp/flywheel_sub").exists()


def test_huge_stdout(relaxed: Sandbox) -> None:
    assert one(relaxed, "def f():\n    while True:\n        print('x' * 1000)")[0] == Status.OUTPUT_LIMIT
    status, _ = one(relaxed, "import os\ndef f():\n    while True:\n        os.write(1, b'x' * 65536)")
    assert status == Status.TIMEOUT  # fd 1 is /dev/null: nothing reaches the executor


def test_write_host_files(relaxed: Sandbox) -> None:
    status, error = one(relaxed, "def f():\n    open('/root/flywheel_pwned', 'w').write('x')\n    return 1")
    assert status == Status.ERROR and "PermissionError" in error
    status, error = one(relaxed, "def f():\n    open('/tmp/flywheel_pwned', 'w').write('x')\n    return 'written'")
    # Full isolation: the private /tmp is root-owned and read-only to the job.  Degraded: seccomp refuses.
    assert status == Status.ERROR and "PermissionError" in error
    assert not Path("/tmp/flywheel_pwned").exists() and not Path("/root/flywheel_pwned").exists()


def test_read_host_files(relaxed: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"  # pytest's tmp dirs are mode 0700, root-owned
    secret.write_text("s3cret")
    status, error = one(relaxed, f"def f():\n    return open({str(secret)!r}).read()")
    assert status == Status.ERROR and ("PermissionError" in error or "FileNotFoundError" in error)


def test_network_connect(relaxed: Sandbox) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    connect = f"import socket\ndef f():\n    socket.socket().connect(('127.0.0.1', {port}))\n    return 1"
    status, error = one(relaxed, connect)
    thread.join()
    server.close()
    assert status == Status.ERROR and "PermissionError" in error
    assert accepted == []


def test_import_and_builtins_tricks_rejected_statically(strict: Sandbox) -> None:
    for program in (
        "def f():\n    return __import__('os').getcwd()",
        "def f():\n    return getattr(__builtins__, 'open')",
        "def f():\n    return ().__class__.__bases__[0].__subclasses__()",
        "def f():\n    return eval('1')",
        "import ctypes\ndef f():\n    return 1",
    ):
        assert one(strict, program)[0] == Status.REJECTED


def test_import_and_builtins_tricks_against_deeper_walls(relaxed: Sandbox) -> None:
    status, _ = one(relaxed, "def f():\n    return __import__('os').system('touch /tmp/flywheel_sys')")
    assert status != Status.OK or not Path("/tmp/flywheel_sys").exists()
    assert not Path("/tmp/flywheel_sys").exists()
    trick = "import builtins\ndef f():\n    return builtins.__import__('socket').socket().fileno()"
    status, error = one(relaxed, trick)
    assert status == Status.ERROR and "PermissionError" in error


def test_ctypes(relaxed: Sandbox) -> None:
    program = (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None)\n"
        "    assert libc.unshare(0x40000000) == 0, 'unshare refused'\n    return 'escaped'"
    )
    assert one(relaxed, program) == (Status.ERROR, "AssertionError: unshare refused")
    status, error = one(relaxed, "import ctypes\ndef f():\n    return ctypes.string_at(0)")
    assert status == Status.ERROR and "SIGSEGV" in error


def test_signal_tampering(relaxed: Sandbox) -> None:
    program = (
        "import signal\ndef f():\n"
        "    for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGXCPU):\n"
        "        signal.signal(s, signal.SIG_IGN)\n    while True:\n        pass"
    )
    assert one(relaxed, program)[0] == Status.TIMEOUT


def test_sys_exit_and_os_exit(relaxed: Sandbox) -> None:
    assert one(relaxed, "import sys\ndef f():\n    sys.exit(0)") == (Status.ERROR, "SystemExit: 0")
    assert one(relaxed, "def f():\n    raise SystemExit")[0] == Status.ERROR
    status, error = one(relaxed, "import os\ndef f():\n    os._exit(0)")
    assert status == Status.ERROR and "exited with code 0" in error


def test_threads_that_outlive_the_call(relaxed: Sandbox) -> None:
    program = (
        "import threading, time\ndef f():\n    threading.Thread(target=time.sleep, args=(30,)).start()\n"
        "    return 'started'"
    )
    status, error = one(relaxed, program)
    assert status == Status.ERROR and "thread" in error


def test_huge_ints(relaxed: Sandbox) -> None:
    assert one(relaxed, "def f():\n    return 10**10**8")[0] in (Status.TIMEOUT, Status.MEMORY)
    assert one(relaxed, "def f():\n    return 10**5000")[0] == Status.OUTPUT_LIMIT
    assert one(relaxed, "def f():\n    return str(10**5000)")[0] == Status.ERROR  # int->str digit limit
    assert one(relaxed, "def f():\n    return 'x' * 20_000")[0] == Status.OUTPUT_LIMIT


def test_lying_objects(relaxed: Sandbox) -> None:
    liar = (
        "class Liar:\n    def __eq__(self, other):\n        return True\n    def __repr__(self):\n"
        "        return '42'\n    __hash__ = object.__hash__\n"
    )
    assert one(relaxed, liar + "def f():\n    return Liar()") == (Status.ERROR, "unsupported return type: Liar")
    assert one(relaxed, liar + "def f():\n    return [1, {Liar()}]")[0] == Status.ERROR
    sub = "class I(int):\n    def __eq__(self, o):\n        return True\ndef f():\n    return I(1)"
    assert one(relaxed, sub) == (Status.ERROR, "unsupported return type: I")


def test_recursion_bomb(relaxed: Sandbox) -> None:
    status, error = one(relaxed, "def f():\n    return f()")
    assert status == Status.ERROR and error.startswith("RecursionError")
    status, _ = one(relaxed, "import sys\nsys.setrecursionlimit(10**7)\ndef f(n=0):\n    return f(n + 1)")
    assert status in (Status.ERROR, Status.MEMORY, Status.TIMEOUT)
    assert one(relaxed, "def f():\n    a = []\n    a.append(a)\n    return a")[0] == Status.ERROR


HARNESS = "\ndef check(candidate):\n    assert candidate(2) == 4\n\ndef f():\n    check(double)\n"


@pytest.mark.parametrize(
    "candidate",
    [
        "def double(x):\n    import sys\n    sys.exit(0)",
        "def double(x):\n    raise SystemExit(0)",
        "def double(x):\n    import os\n    os._exit(0)",
        "def double(x):\n    import sys\n    sys._getframe(1).f_locals['candidate'] = lambda x: 4\n    return 0",
        "def double(x):\n    import sys\n    fr = sys._getframe()\n    while fr.f_back:\n        fr = fr.f_back\n"
        "    fr.f_globals['check'] = lambda c: None\n    return 0",
    ],
)
def test_harness_cannot_fake_a_pass(relaxed: Sandbox, strict: Sandbox, candidate: str) -> None:
    assert one(relaxed, candidate + HARNESS)[0] != Status.OK
    assert one(strict, candidate + HARNESS)[0] != Status.OK
    assert one(strict, "def double(x):\n    return 2 * x" + HARNESS) == (Status.OK, "None")


def test_no_socket_of_any_family(relaxed: Sandbox) -> None:
    """Abstract AF_UNIX names would be a channel between concurrent jobs (and, without a network namespace,
    to host services listening on them)."""
    program = "import socket\ndef f():\n    socket.socket(socket.AF_UNIX).bind('\\0flywheel-probe')\n    return 1"
    status, error = one(relaxed, program)
    assert status == Status.ERROR and "PermissionError" in error


def test_no_ipc_object_outlives_a_job(relaxed: Sandbox) -> None:
    """SysV shared memory and POSIX message queues persist after their creator exits."""
    program = (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    shm = libc.shmget(0x5eed, 4096, 0o1666)\n"
        "    queue = libc.mq_open(b'/flywheel-probe', 0o102, 0o666, None)\n"
        "    return [shm, queue, ctypes.get_errno()]"
    )
    assert one(relaxed, program) == (Status.OK, "[-1, -1, 1]")  # both refused with EPERM
