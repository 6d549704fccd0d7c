"""Inside one child: read its job, lock the process down, run the program's calls, report each as data.

Runs in a clone of the zygote; nothing here returns.  Each call's outcome is written to fd 3 as one JSON
line ``[status, value, error, stdout]``; the executor attributes lines to inputs in order.
"""

from __future__ import annotations

import _string
import ast
import builtins
import ctypes
import errno
import gc
import io
import itertools
import json
import operator
import os
import resource
import string
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass

try:  # imported here, before the executor unshares: its tmpfs on /tmp hides a checkout or venv under /tmp
    import pyseccomp
except ImportError:
    pyseccomp = None

from flywheel.verifiers.static_check import check_program
from flywheel.verifiers.values import UnsupportedValue, ValueTooLarge, canonical, literal_arguments

RESULT_FD = 3
SETUP_FAILED_EXIT = 70
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
_LIBC = ctypes.CDLL(None, use_errno=True)
_TYPE_MODIFIED = ctypes.pythonapi.PyType_Modified  # looked up once, before any child exists
MAX_ERROR_CHARS = 1000
# Runtime guard (an audit hook installed just before the program runs).  Frames reach every variable of
# every caller; tracing, gc and ctypes reach every object or byte of the process.
ALWAYS_DENIED_EVENTS = frozenset(
    {
        "sys._current_frames",
        "sys.settrace",
        "sys.setprofile",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "code.__new__",
        "function.__new__",
    }
)
FRAME_ATTRS = frozenset({"gi_frame", "cr_frame", "ag_frame", "tb_frame"})
CODE_ATTRS = frozenset({"__code__", "f_code", "gi_code", "cr_code", "ag_code"})
# The only callers that may take a frame: library code reading its caller's module name
# (namedtuple, Enum and TypeVar set __module__ with sys._getframe(1).f_globals).
FRAME_CALLERS = frozenset(
    os.path.join(os.path.dirname(os.__file__), name) for name in ("collections/__init__.py", "enum.py", "typing.py")
)
STDLIB_DIR = os.path.dirname(os.__file__) + os.sep
# Standard-library code that looks attributes up by a name taken from data (format fields).
DATA_DRIVEN_GETATTR = frozenset({string.__file__})
# Who may compile text unchecked: this module (the program and its inputs), the program itself, imports,
# and library code that compiles text it builds from validated identifiers (namedtuple, dataclass methods)
# or only parses it (ast).  Any other library code compiling text (typing's string annotations) compiles
# data: that text must pass the static check.
UNCHECKED_COMPILERS = frozenset(
    {__file__, "<program>", "<input>", "<frozen importlib._bootstrap_external>"}
    | {os.path.join(STDLIB_DIR, name) for name in ("collections/__init__.py", "dataclasses.py", "ast.py")}
)
_ARGUMENT_PACKER = ast.parse("lambda *args, **kwargs: (args, kwargs)", mode="eval").body
# Denied outright (EPERM).  `socket` of every family: even AF_UNIX, whose abstract names would be a
# channel between concurrent jobs (and, without a network namespace, to host services).
DENIED_SYSCALLS = (
    "socket",
    # SysV IPC objects and POSIX message queues outlive the process that made them: a channel to later jobs.
    "shmget",
    "shmat",
    "shmctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
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
# Without a private, read-only mount tree the program must not change anything on the host file system:
# these fail, and so does every open() for writing, creating or truncating.
FILE_WRITE_SYSCALLS = (
    "openat2",
    "truncate",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
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

    def __init__(self, deny_writes: bool) -> None:
        if pyseccomp is None:
            raise RuntimeError("the pyseccomp package is not installed")
        sc = pyseccomp
        filt = sc.SyscallFilter(sc.ALLOW)
        deny = sc.ERRNO(errno.EPERM)
        for name in DENIED_SYSCALLS + (FILE_WRITE_SYSCALLS if deny_writes else ()):
            try:
                filt.add_rule(deny, name)
            except Exception:  # syscall absent on this architecture
                continue
        if deny_writes:
            for syscall, flags_arg in (("open", 1), ("openat", 2)):
                for mask, value in (
                    (os.O_ACCMODE, os.O_WRONLY),
                    (os.O_ACCMODE, os.O_RDWR),
                    (os.O_CREAT, os.O_CREAT),
                    (os.O_TRUNC, os.O_TRUNC),
                ):
                    filt.add_rule(deny, syscall, sc.Arg(flags_arg, sc.MASKED_EQ, mask, value))
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


class _BadInput(Exception):
    """The input text is not one call's argument list: it never runs."""


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


class _DataReflection:
    """Checks on the routes that look attributes up by names taken from data (format fields,
    `string.Formatter.get_field`, `operator.attrgetter`/`methodcaller`): no name starting with ``_``
    (private or dunder: ``__globals__``, ``__builtins__``, ``_os``) but those of `NAMING_ATTRS`, and no
    module outside `allowed`."""

    # A type and names: what `type(x)` gives anyway; the standard library formats reprs with them
    # (`'{0.__class__.__name__}({0._mapping!r})'` in `collections.abc`'s views, hence `_mapping` too).
    NAMING_ATTRS = frozenset({"__class__", "__name__", "__qualname__", "_mapping"})

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    def reached(self, value: object) -> object:
        if isinstance(value, types.ModuleType) and str(value.__name__).partition(".")[0] not in self.allowed:
            raise PermissionError(f"sandbox: module {value.__name__!r} is outside the import allowlist")
        return value

    @staticmethod
    def check_name(name: str) -> None:
        if name.startswith("_") and name not in _DataReflection.NAMING_ATTRS:
            raise PermissionError(f"sandbox: attribute {name!r} named by data is not allowed")

    def walk(self, obj: object, path: list[tuple[bool, object]]) -> object:
        """`obj` followed along `path` ((is_attribute, key) pairs, as `_string.formatter_field_name_split`
        gives them), each name and each object reached checked."""
        for is_attribute, key in path:
            if is_attribute:
                self.check_name(key)  # type: ignore[arg-type]
        for is_attribute, key in path:
            obj = self.reached(getattr(obj, key) if is_attribute else obj[key])  # type: ignore[index]
        return obj

    def check_format(self, text: str, args: tuple, kwargs: object, numbers: itertools.count | None = None) -> None:
        """Walk every field of format string `text` (nested fields in format specs included) before the
        real `str.format` does; malformed text and failed lookups are left to it to report."""
        numbers = numbers if numbers is not None else itertools.count()
        try:
            fields = [(name, spec) for _, name, spec, _ in _string.formatter_parser(text) if name is not None]
        except ValueError:
            return
        for name, spec in fields:
            first, rest = _string.formatter_field_name_split(name)
            path = list(rest)
            first = next(numbers) if first == "" else first
            if path:
                try:
                    obj = args[first] if isinstance(first, int) else kwargs[first]  # type: ignore[index]
                    self.walk(obj, path)
                except PermissionError:
                    raise
                except Exception:
                    pass
            if spec and "{" in spec:
                self.check_format(spec, args, kwargs, numbers)

    def install(self) -> None:
        """Put the checks in front of the data-driven attribute routes of this process."""
        original_format, original_format_map = str.format, str.format_map
        original_attrgetter, original_methodcaller = operator.attrgetter, operator.methodcaller

        def format(text: str, /, *args: object, **kwargs: object) -> str:
            if isinstance(text, str):
                self.check_format(text, args, kwargs)
            return original_format(text, *args, **kwargs)

        def format_map(text: str, mapping: object, /) -> str:
            if isinstance(text, str):
                self.check_format(text, (), mapping)
            return original_format_map(text, mapping)

        def get_field(formatter: string.Formatter, field_name: str, args: tuple, kwargs: dict) -> tuple:
            first, rest = _string.formatter_field_name_split(field_name)
            return self.walk(formatter.get_value(first, args, kwargs), list(rest)), first

        def attrgetter(attr: str, /, *attrs: str) -> Callable[[object], object]:
            original_attrgetter(attr, *attrs)  # its own argument errors
            paths = [[(True, part) for part in name.split(".")] for name in (attr, *attrs)]
            for path in paths:
                for _, part in path:
                    self.check_name(part)
            if not attrs:
                return lambda obj: self.walk(obj, paths[0])
            return lambda obj: tuple(self.walk(obj, path) for path in paths)

        def methodcaller(name: str, /, *args: object, **kwargs: object) -> Callable[[object], object]:
            call = original_methodcaller(name, *args, **kwargs)
            self.check_name(name)
            return lambda obj: self.reached(call(obj))

        str_dict = gc.get_referents(str.__dict__)[0]
        str_dict["format"], str_dict["format_map"] = format, format_map
        _TYPE_MODIFIED(ctypes.py_object(str))
        string.Formatter.get_field = get_field  # type: ignore[method-assign]
        operator.attrgetter, operator.methodcaller = attrgetter, methodcaller  # type: ignore[assignment,misc]


def _install_guard(allowed: frozenset[str]) -> None:
    """Refuse, for the rest of the process's life, the introspection that reaches frames, code objects and
    raw memory, whatever route (attribute, format field, library helper) the program takes to it; check the
    routes from data to attributes (`_DataReflection`) and text that library code compiles."""
    _DataReflection(allowed).install()
    getframe = sys._getframe
    busy = [False]

    def caller() -> str:
        busy[0] = True
        try:
            return getframe(2).f_code.co_filename
        finally:
            busy[0] = False

    def hook(event: str, args: tuple) -> None:
        if busy[0]:
            return
        if event in ALWAYS_DENIED_EVENTS or event.startswith("ctypes."):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "sys._getframe" or (event == "object.__getattr__" and args[1] in FRAME_ATTRS):
            if caller() not in FRAME_CALLERS:
                raise PermissionError("sandbox: frame access is not allowed")
        elif event == "object.__getattr__" and args[1] in CODE_ATTRS:
            where = caller()
            if not where.startswith(STDLIB_DIR) or "site-packages" in where or where in DATA_DRIVEN_GETATTR:
                raise PermissionError(f"sandbox: {args[1]} is not allowed")
        elif event == "compile" and isinstance(args[0], str | bytes) and caller() not in UNCHECKED_COMPILERS:
            check_compiled(args[0])

    def check_compiled(source: str | bytes) -> None:
        busy[0] = True
        try:
            text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
            problems = check_program(text, allowed, assume_imported=allowed)
        finally:
            busy[0] = False
        if problems:
            raise PermissionError(f"sandbox: library code compiling text from data: {problems[0]}")

    sys.addaudithook(hook)


def _arguments(text: str, namespace: dict) -> tuple[tuple, dict]:
    """Evaluate a call's argument text (``"[1] * 3, key=len"``) in the program's globals.

    Raises _BadInput when the text is not exactly one call's argument list.  Plain literals (the common
    case) are built directly from the parse, with the same values evaluation gives; anything else is
    compiled and evaluated."""
    try:
        tree = ast.parse(f"f({text}\n)", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise _BadInput(f"not an argument list: {type(exc).__name__}: {exc}") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.func.id != "f":
        raise _BadInput("not an argument list")
    try:
        return literal_arguments(call)
    except ValueError:
        call.func = _ARGUMENT_PACKER
    try:
        code = compile(ast.fix_missing_locations(tree), "<input>", "eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _BadInput(f"not an argument list: {type(exc).__name__}: {exc}") from None
    return eval(code, namespace)


def _call(namespace: dict, entry: str, text: str, limits: Limits) -> tuple[str, str | None, str | None]:
    """Evaluate the argument text in the program's globals, as reference harnesses do, then call `entry`."""
    fn = namespace.get(entry)
    if not callable(fn):
        return "error", None, f"entry function {entry!r} is not defined"
    try:
        args, kwargs = _arguments(text, namespace)
        value = fn(*args, **kwargs)
    except _BadInput as exc:
        return "error", None, f"bad input: {exc}"[:MAX_ERROR_CHARS]
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


def _read_job(fd: int) -> dict:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return json.loads(b"".join(chunks))


def run_child(job_fd: int, result_fd: int, workdir: str, uid: int | None, run: dict) -> None:
    """Read this child's job, lock down, run the program once, then call the entry on each input.

    `run` is the executor's fixed setup (limits, devnull, seccomp, runtime_guard); always ends with os._exit.
    """
    write = os.write
    dumps = json.dumps
    limits: Limits = run["limits"]
    try:
        job = _read_job(job_fd)
        program, inputs, entry = job["program"], job["inputs"], job["entry"]
        _lock_down(workdir, uid, limits, len(inputs), run["devnull"], result_fd, run["seccomp"])
    except BaseException:
        os._exit(SETUP_FAILED_EXIT)
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    load_error: tuple[str, str | None, str | None] | None = None
    out = _Capture(limits.stdout_bytes)
    sys.stdout = sys.stderr = out
    del job
    if run["runtime_guard"]:
        _install_guard(run["allowed_imports"])
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
