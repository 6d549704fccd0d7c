"""Inside one forked child: lock the process down, run one program's calls, report each as a data line.

Runs in the executor's fork; nothing here returns.  Each call's outcome is written to fd 3 as one JSON
line ``[status, value, error, stdout]``; the executor attributes lines to inputs in order.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import io
import json
import os
import resource
import socket
import sys
import tempfile
import types
from dataclasses import dataclass

try:  # imported here, before the executor unshares: its tmpfs on /tmp hides a checkout or venv under /tmp
    import pyseccomp
except ImportError:
    pyseccomp = None

from flywheel.verifiers.values import UnsupportedValue, ValueTooLarge, canonical, parse_arguments

RESULT_FD = 3
SETUP_FAILED_EXIT = 70
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
_LIBC = ctypes.CDLL(None, use_errno=True)
MAX_ERROR_CHARS = 1000
# Denied outright (EPERM).  Socket creation is denied separately for every family except AF_UNIX.
DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "userfaultfd",
    "io_uring_setup",
    "acct",
    "settimeofday",
    "clock_settime",
    "syslog",
    "quotactl",
    "name_to_handle_at",
    "open_by_handle_at",
    "fanotify_init",
    "personality",
)
# Without a private mount namespace the program must not create anything on the host file system.
FILE_CREATION_SYSCALLS = (
    "creat",
    "mkdir",
    "mkdirat",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "rename",
    "renameat",
    "renameat2",
    "mknod",
    "mknodat",
)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class SeccompProgram:
    """A libseccomp filter (default allow; listed syscalls fail with EPERM) compiled once to raw BPF.

    libseccomp recompiles on every seccomp_load (~1 ms); children instead install the exported program
    with a single prctl(PR_SET_SECCOMP).
    """

    def __init__(self, deny_file_creation: bool) -> None:
        if pyseccomp is None:
            raise RuntimeError("the pyseccomp package is not installed")
        sc = pyseccomp
        filt = sc.SyscallFilter(sc.ALLOW)
        deny = sc.ERRNO(errno.EPERM)
        for name in DENIED_SYSCALLS + (FILE_CREATION_SYSCALLS if deny_file_creation else ()):
            try:
                filt.add_rule(deny, name)
            except Exception:  # syscall absent on this architecture
                continue
        filt.add_rule(deny, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
        if deny_file_creation:
            filt.add_rule(deny, "open", sc.Arg(1, sc.MASKED_EQ, os.O_CREAT, os.O_CREAT))
            filt.add_rule(deny, "openat", sc.Arg(2, sc.MASKED_EQ, os.O_CREAT, os.O_CREAT))
        with tempfile.TemporaryFile() as raw:
            filt.export_bpf(raw)
            raw.seek(0)
            code = raw.read()
        self._buffer = ctypes.create_string_buffer(code, len(code))
        self._prog = _SockFprog(len(code) // 8, ctypes.addressof(self._buffer))

    def install(self) -> None:
        """Load into the calling process (needs no_new_privs first); irreversible."""
        if _LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


@dataclass(frozen=True)
class Limits:
    """What every child gets; `uid` None means no privilege drop (executor not root)."""

    memory_bytes: int
    timeout_s: float
    fsize_bytes: int
    nofile: int
    stdout_bytes: int
    max_value_chars: int
    max_fd: int


class _OutputLimit(Exception):
    pass


class _Capture(io.TextIOBase):
    """sys.stdout replacement: keeps up to `cap` bytes, flags and raises past it."""

    def __init__(self, cap: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.cap = cap
        self.overflow = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:  # type: ignore[override]
        if type(s) is not str:
            raise TypeError("write() argument must be str")
        self.size += len(s.encode("utf-8", "replace"))
        if self.size > self.cap:
            self.overflow = True
            raise _OutputLimit(f"stdout exceeded {self.cap} bytes")
        self.parts.append(s)
        return len(s)


def _lock_down(
    workdir: str,
    uid: int | None,
    limits: Limits,
    n_calls: int,
    devnull: int,
    result_fd: int,
    seccomp: SeccompProgram | None,
) -> None:
    os.setsid()
    os.chdir(workdir)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.dup2(result_fd, RESULT_FD)
    os.closerange(RESULT_FD + 1, limits.max_fd)
    cpu = int(limits.timeout_s * n_calls) + 2
    for rlimit, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, limits.fsize_bytes),
        (resource.RLIMIT_NOFILE, limits.nofile),
        (resource.RLIMIT_CORE, 0),
        # Counted per real uid, and not enforced for root: it works because the uid drop comes next.
        (resource.RLIMIT_NPROC, 1 if uid is not None else resource.getrlimit(resource.RLIMIT_NPROC)[0]),
    ):
        resource.setrlimit(rlimit, (value, value))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    if _LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if seccomp is not None:
        seccomp.install()


def _describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:  # a user exception whose __str__ fails
        text = type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _call(namespace: dict, entry: str, text: str, limits: Limits) -> tuple[str, str | None, str | None]:
    try:
        args, kwargs = parse_arguments(text)
    except ValueError as exc:
        return "error", None, f"bad input: {exc}"[:MAX_ERROR_CHARS]
    fn = namespace.get(entry)
    if not callable(fn):
        return "error", None, f"entry function {entry!r} is not defined"
    try:
        value = fn(*args, **kwargs)
    except MemoryError:
        return "memory", None, "MemoryError"
    except BaseException as exc:  # SystemExit included: exiting early is never a pass
        return "error", None, _describe(exc)
    try:
        return "ok", canonical(value, max_chars=limits.max_value_chars), None
    except ValueTooLarge as exc:
        return "output_limit", None, str(exc)
    except UnsupportedValue as exc:
        return "error", None, str(exc)
    except MemoryError:
        return "memory", None, "MemoryError while printing the value"
    except RecursionError:
        return "error", None, "value nested too deeply"


def run_child(
    program: str,
    inputs: list[str],
    entry: str,
    workdir: str,
    uid: int | None,
    limits: Limits,
    devnull: int,
    result_fd: int,
    seccomp: SeccompProgram | None,
) -> None:
    """Lock down, run the program once, then call `entry` on each input; always ends with os._exit."""
    write = os.write
    dumps = json.dumps
    try:
        _lock_down(workdir, uid, limits, len(inputs), devnull, result_fd, seccomp)
    except BaseException:
        os._exit(SETUP_FAILED_EXIT)
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    load_error: tuple[str, str | None, str | None] | None = None
    out = _Capture(limits.stdout_bytes)
    sys.stdout = sys.stderr = out
    try:
        exec(compile(program, "<program>", "exec"), module.__dict__)
    except MemoryError:
        load_error = ("memory", None, "MemoryError while loading the program")
    except BaseException as exc:
        load_error = ("error", None, f"program failed to load: {_describe(exc)}")
    for text in inputs:
        out = _Capture(limits.stdout_bytes)
        sys.stdout = sys.stderr = out
        status, value, error = load_error or _call(module.__dict__, entry, text, limits)
        if out.overflow:
            status, value, error = "output_limit", None, f"stdout exceeded {limits.stdout_bytes} bytes"
        try:
            payload = (dumps([status, value, error, "".join(out.parts)]) + "\n").encode("utf-8", "replace")
        except MemoryError:
            payload = b'["memory", null, "MemoryError while reporting", ""]\n'
        while payload:
            payload = payload[write(RESULT_FD, payload) :]
    os._exit(0)
