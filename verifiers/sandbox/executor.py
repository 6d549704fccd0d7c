"""The warm executor process: `python -m flywheel.verifiers.sandbox.executor`, started by `Sandbox`.

Protocol (JSON lines).  stdin: first a config object, then jobs ``{"id", "program", "inputs", "entry"}``.
stdout: first ``{"hello": ..., "isolation": ..., "warnings": [...], "pid": ...}``, then
``{"id", "results": [[status, value, error, stdout], ...]}`` per job, in completion order.

At startup it preloads the allowed modules, unshares namespaces, makes the whole mount tree read-only
and mounts a pool of *cells* (an unprivileged uid with its own small private tmpfs), then forks the
*zygote*: a process that never receives any job.  Each child is cloned from the zygote (``CLONE_PARENT``,
so it is still this process's child) and only then gets its own job over a pipe: no child's memory
holds another job's program, inputs or results.  One child per program (and again after a call that
killed its child), at most `workers` at a time.  A cell goes back to the pool only once its child is
reaped and its directory emptied, so no job ever shares a uid or a directory with a living or earlier
one, while the next job starts at once in another cell.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field

from flywheel.verifiers.sandbox.child import SETUP_FAILED_EXIT, Limits, SeccompProgram, run_child
from flywheel.verifiers.sandbox.preload import preload

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
CLONE_PARENT = 0x00008000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
SYS_MOUNT_SETATTR = 442  # same number on every architecture (Linux >= 5.12)
SYS_CLONE = {"x86_64": 56, "aarch64": 220}
PR_SET_CHILD_SUBREAPER = 36
CELL_UID_BASE = 100_000
MAX_SLOTS = 64
CELLS_PER_WORKER = 2
MAX_CELLS = MAX_SLOTS * CELLS_PER_WORKER
CELL_TMP = b"size=16m,nr_inodes=256,mode=0700"  # each cell's private working directory (a tmpfs)
STATUSES = frozenset({"ok", "error", "timeout", "memory", "output_limit"})


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


@dataclass
class _Job:
    id: int
    program: str
    inputs: list[str]
    entry: str
    results: list[list] = field(default_factory=list)


@dataclass
class _Child:
    pid: int
    fd: int
    cell: int
    job: _Job
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), what)


def _unshare_namespaces(libc: ctypes.CDLL) -> list[str]:
    """Private network, mount and IPC namespaces; the inherited mount tree made read-only, with fresh
    root-owned (not world-writable) tmpfs on /tmp and /dev/shm.  Raises OSError if anything is refused."""
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC), "unshare(CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWIPC)")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY)
    setattr_result = libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), 32)
    _check(setattr_result, "mount_setattr(/, AT_RECURSIVE, MOUNT_ATTR_RDONLY)")
    mounted = []
    for target, size in ((b"/tmp", b"64m"), (b"/dev/shm", b"1m")):
        if not os.path.isdir(target):
            continue
        options = b"mode=0755,size=" + size
        _check(libc.mount(b"tmpfs", target, b"tmpfs", MS_NOSUID | MS_NODEV, options), f"mount tmpfs on {target!r}")
        mounted.append(target.decode())
    return ["namespaces(net,mount,ipc)", "readonly(/)", f"tmpfs({','.join(mounted)})"]


def _describe_exit(status: int) -> tuple[str, str]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return "timeout", "CPU time limit exceeded"
        if sig == signal.SIGXFSZ:
            return "error", "file size limit exceeded"
        return "error", f"process killed by {signal.Signals(sig).name} before returning"
    code = os.WEXITSTATUS(status)
    if code == SETUP_FAILED_EXIT:
        return "error", "sandbox setup failed in the child"
    return "error", f"process exited with code {code} before returning"


def _empty(directory: str) -> None:
    """Remove everything inside `directory` (a cell's tmpfs root, usually already empty)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


class _Zygote:
    """The clean process every child is cloned from.  It is forked before any job is read, holds no job,
    and answers each request ``cell`` (with the job pipe's read end and the result pipe's write end
    attached) with the new child's pid.  The child reads its own job from the pipe after the clone."""

    def __init__(self, run: dict) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                self.sock.close()
                _serve_zygote(theirs, run)
            finally:
                os._exit(SETUP_FAILED_EXIT)
        theirs.close()

    def spawn(self, cell: int, job_fd: int, result_fd: int) -> int:
        socket.send_fds(self.sock, [str(cell).encode()], [job_fd, result_fd])
        reply = self.sock.recv(64)
        if not reply:
            raise RuntimeError("the sandbox zygote died")
        return int(reply)

    def close(self) -> None:
        self.sock.close()


def _serve_zygote(sock: socket.socket, run: dict) -> None:
    """The zygote's loop: clone one child per request; the child never returns from `run_child`."""
    for fd in (0, 1):
        os.dup2(run["devnull"], fd)
    for fd in map(int, os.listdir("/proc/self/fd")):  # the executor's pipes and selector are not ours
        if fd > 2 and fd not in (sock.fileno(), run["devnull"]):
            with contextlib.suppress(OSError):
                os.close(fd)
    pylibc = ctypes.PyDLL(None, use_errno=True)  # holds the GIL across the raw clone
    api = ctypes.pythonapi
    clone = SYS_CLONE[platform.machine()]
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 64, 2)
        if not message:
            return
        cell = int(message)
        api.PyOS_BeforeFork()
        pid = pylibc.syscall(clone, CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            api.PyOS_AfterFork_Child()
            sock.close()
            try:
                run_child(fds[0], fds[1], run["workdirs"][cell], run["uids"][cell], run)
            finally:
                os._exit(SETUP_FAILED_EXIT)
        api.PyOS_AfterFork_Parent()
        for fd in fds:
            os.close(fd)
        sock.send(str(pid).encode())


class Executor:
    """The select loop: job queue, cells, per-call deadlines, cleanup after every child."""

    def __init__(self, config: dict) -> None:
        if platform.machine() not in SYS_CLONE:
            raise RuntimeError(f"no clone() syscall number known for {platform.machine()}")
        self.workers = max(1, min(int(config["workers"]), MAX_SLOTS))
        self.timeout_s = float(config["timeout_s"])
        self.line_cap = int(config["max_value_chars"]) * 6 + int(config["stdout_bytes"]) * 6 + 8192
        limits = Limits(
            memory_bytes=int(config["memory_mb"]) << 20,
            timeout_s=self.timeout_s,
            fsize_bytes=1 << 20,
            nofile=32,
            stdout_bytes=int(config["stdout_bytes"]),
            max_value_chars=int(config["max_value_chars"]),
            max_fd=min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 16),
        )
        self.warnings: list[str] = []
        layers = self._isolate(config["isolation"])
        self.namespaced = bool(layers)
        cells = self.workers * CELLS_PER_WORKER
        uid_base = CELL_UID_BASE + (os.getpid() % 10_000) * MAX_CELLS if os.geteuid() == 0 else None
        uids = [None if uid_base is None else uid_base + cell for cell in range(cells)]
        if uid_base is None:
            self.warnings.append("not root: children keep the executor's uid (no per-job uid drop)")
        else:
            layers.append("setuid")
        self.tmp = ""
        self.workdirs = ["/"] * cells  # degraded: no writable directory at all (seccomp refuses writes)
        if self.namespaced:
            self.tmp = tempfile.mkdtemp(prefix="flywheel-sandbox-")  # on the private /tmp
            self.workdirs = [self._cell_dir(cell, uid) for cell, uid in enumerate(uids)]
            layers.append(f"private tmpfs per job ({CELL_TMP.split(b',')[0].decode()})")
        layers += ["rlimits", "no_new_privs"]
        seccomp: SeccompProgram | None = None
        try:
            seccomp = SeccompProgram(deny_writes=not self.namespaced)
            layers.append("seccomp" if self.namespaced else "seccomp(+no file writes)")
        except Exception as exc:
            self.warnings.append(f"seccomp unavailable: {exc}")
        layers.append("zygote")
        if config.get("runtime_guard", True):
            layers.append("runtime_guard")
        self.isolation = "+".join(layers)
        devnull = os.open(os.devnull, os.O_RDWR)
        self.run_config = {
            "workdirs": self.workdirs,
            "uids": uids,
            "limits": limits,
            "devnull": devnull,
            "seccomp": seccomp,
            "runtime_guard": bool(config.get("runtime_guard", True)),
            "allowed_imports": frozenset(config["allowed_imports"]),
        }
        self.zygote: _Zygote | None = None
        self.sel = selectors.DefaultSelector()
        self.queue: deque[_Job] = deque()
        self.free_workers = self.workers
        self.free_cells = list(range(cells - 1, -1, -1))
        self.running: dict[int, _Child] = {}
        self.dying: dict[int, _Child] = {}  # pidfd -> killed child not yet reaped
        self.exited: dict[int, int] = {}  # pid -> wait status, for children reaped by _reap first
        self.inbuf = bytearray()

    def _isolate(self, mode: str) -> list[str]:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphaned grandchildren come back to be reaped
        if mode == "rlimits":
            return []
        try:
            return _unshare_namespaces(libc)
        except OSError as exc:
            if mode == "full":
                raise
            self.warnings.append(f"namespaces unavailable ({exc}); degraded to rlimits+uid+seccomp isolation")
            return []

    def _cell_dir(self, cell: int, uid: int | None) -> str:
        path = os.path.join(self.tmp, f"cell-{cell}")
        os.mkdir(path, 0o700)
        owner = b"" if uid is None else f",uid={uid},gid={uid}".encode()
        libc = ctypes.CDLL(None, use_errno=True)
        _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, CELL_TMP + owner), "cell tmpfs")
        return path

    def start_zygote(self) -> None:
        self.zygote = _Zygote(self.run_config)

    # ------------------------------------------------------------------ children

    def _start(self, job: _Job, cell: int) -> None:
        assert self.zygote is not None
        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            pid = self.zygote.spawn(cell, job_read, result_write)
        finally:
            os.close(job_read)
            os.close(result_write)
        todo = {"program": job.program, "inputs": job.inputs[len(job.results) :], "entry": job.entry}
        child = _Child(pid, result_read, cell, job, time.monotonic() + self.timeout_s)
        self.running[result_read] = child
        self.sel.register(result_read, selectors.EVENT_READ, child)
        data = json.dumps(todo).encode()
        try:  # the child reads its whole job before anything else runs in it
            while data:
                data = data[os.write(job_write, data) :]
        except OSError:
            pass  # the child died during setup: its exit status explains it
        finally:
            os.close(job_write)

    def _end(self, child: _Child, need_status: bool) -> int:
        """Kill the child's process group and stop reading it.

        With `need_status` it is reaped now and its wait status returned; otherwise reaping and cleanup
        happen when its pidfd becomes readable, off the critical path (returns 0).
        """
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(child.pid, signal.SIGKILL)
        self.sel.unregister(child.fd)
        os.close(child.fd)
        del self.running[child.fd]
        if need_status or child.pid in self.exited:
            return self._collect(child)
        pidfd = os.pidfd_open(child.pid)  # works on zombies; only _reap (which records in exited) reaps
        self.dying[pidfd] = child
        self.sel.register(pidfd, selectors.EVENT_READ, pidfd)
        return 0

    def _collect(self, child: _Child) -> int:
        """Reap a killed child (blocking), reap strays, return its emptied cell to the pool; gives the wait status."""
        status = self.exited.pop(child.pid, None)
        if status is None:
            status = os.waitpid(child.pid, 0)[1]
        self._reap()
        if self.namespaced:
            _empty(self.workdirs[child.cell])
        self.free_cells.append(child.cell)
        return status

    def _on_exit(self, pidfd: int) -> None:
        child = self.dying.pop(pidfd)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        self._collect(child)

    def _reap(self) -> None:
        """Collect reparented grandchildren (we are a subreaper) without losing tracked children's status."""
        tracked = {c.pid for c in self.running.values()} | {c.pid for c in self.dying.values()}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in tracked:
                self.exited[pid] = status

    def _finish(self, child: _Child, outcome: tuple[str, str] | None) -> None:
        """End a child; `outcome` is the verdict for its current call when it did not report one.

        outcome None with results missing means the child exited on its own: its exit status explains it.
        """
        job = child.job
        missing = len(job.results) < len(job.inputs)
        status = self._end(child, need_status=missing and outcome is None)
        self.free_workers += 1
        if missing:
            kind, message = outcome or _describe_exit(status)
            job.results.append([kind, None, message, ""])
        if len(job.results) < len(job.inputs):
            self.queue.appendleft(job)  # remaining inputs run next, in a fresh child
            return
        self._send({"id": job.id, "results": job.results})

    def _on_data(self, child: _Child, data: bytes) -> None:
        child.buf += data
        job = child.job
        while (cut := child.buf.find(b"\n")) >= 0 and len(job.results) < len(job.inputs):
            line = bytes(child.buf[:cut])
            del child.buf[: cut + 1]
            job.results.append(self._validate(line))
            child.deadline = time.monotonic() + self.timeout_s
        if len(job.results) == len(job.inputs):
            self._finish(child, None)
        elif len(child.buf) > self.line_cap:
            self._finish(child, ("output_limit", "result line too long"))

    @staticmethod
    def _validate(line: bytes) -> list:
        try:
            status, value, error, stdout = json.loads(line)
            if status in STATUSES and all(x is None or type(x) is str for x in (value, error)) and type(stdout) is str:
                return [status, value, error, stdout]
        except (ValueError, TypeError):
            pass
        return ["error", None, "malformed result line from child", ""]

    # ------------------------------------------------------------------ protocol

    def _send(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(1, data) :]

    def _on_stdin(self) -> bool:
        data = os.read(0, 1 << 20)
        if not data:
            return False
        self.inbuf += data
        while (cut := self.inbuf.find(b"\n")) >= 0:
            msg = json.loads(bytes(self.inbuf[:cut]))
            del self.inbuf[: cut + 1]
            job = _Job(int(msg["id"]), str(msg["program"]), [str(x) for x in msg["inputs"]], str(msg["entry"]))
            if job.inputs:
                self.queue.append(job)
            else:
                self._send({"id": job.id, "results": []})
        return True

    def serve(self) -> None:
        self._send(
            {"hello": True, "isolation": self.isolation, "warnings": self.warnings, "tmp": self.tmp, "pid": os.getpid()}
        )
        self.sel.register(0, selectors.EVENT_READ, None)
        open_input = True
        while open_input or self.running or self.queue or self.dying:
            while self.queue and self.free_workers and self.free_cells:
                self.free_workers -= 1
                self._start(self.queue.popleft(), self.free_cells.pop())
            timeout = None
            if self.running:
                timeout = max(0.0, min(c.deadline for c in self.running.values()) - time.monotonic())
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    if not self._on_stdin():
                        open_input = False
                        self.sel.unregister(0)
                        for child in list(self.running.values()):
                            self._end(child, need_status=False)
                        self.queue.clear()
                elif isinstance(key.data, int):
                    self._on_exit(key.data)
                elif key.fd in self.running:
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        self._on_data(key.data, data)
                    else:
                        self._finish(key.data, None)
            now = time.monotonic()
            for child in [c for c in self.running.values() if c.deadline <= now]:
                self._finish(child, ("timeout", f"call exceeded {self.timeout_s:g} s wall clock"))
        if self.zygote is not None:
            self.zygote.close()
            with contextlib.suppress(ChildProcessError):  # already reaped if it died early
                os.waitpid(self.zygote.pid, 0)


def _read_line(fd: int) -> bytes:
    """One line from `fd` without read-ahead (the job stream that follows is read with os.read)."""
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    return bytes(line)


def main() -> None:
    config = json.loads(_read_line(0))
    preload(config["preload"])
    try:
        executor = Executor(config)
    except Exception as exc:
        sys.stdout.write(json.dumps({"hello": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stdout.flush()
        raise SystemExit(1) from None
    gc.collect()
    gc.freeze()  # children cloned from the zygote then leave the preloaded heap's pages shared
    executor.start_zygote()
    executor.serve()


if __name__ == "__main__":
    main()
