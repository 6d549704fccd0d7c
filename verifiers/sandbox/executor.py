"""The warm executor process: `python -m flywheel.verifiers.sandbox.executor`, started by `Sandbox`.

Protocol (JSON lines).  stdin: first a config object, then jobs ``{"id", "program", "inputs", "entry"}``.
stdout: first ``{"hello": ..., "isolation": ..., "warnings": [...], "tmp": ...}``, then
``{"id", "results": [[status, value, error, stdout], ...]}`` per job, in completion order.
It unshares namespaces once at startup, preloads the allowed modules, then forks one fresh child per
program (and again after a call that killed its child) in up to `workers` concurrent slots.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field

from flywheel.verifiers.sandbox.child import SETUP_FAILED_EXIT, Limits, SeccompProgram, run_child

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
PR_SET_CHILD_SUBREAPER = 36
SLOT_UID_BASE = 100_000
MAX_SLOTS = 64
STATUSES = frozenset({"ok", "error", "timeout", "memory", "output_limit"})


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
    slot: int
    job: _Job
    workdir: str
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


def _unshare_namespaces(libc: ctypes.CDLL) -> list[str]:
    """Private network, mount and IPC namespaces with tmpfs on /tmp and /dev/shm; raises OSError if refused."""
    if libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWIPC)")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    mounted = []
    for target, size in ((b"/tmp", b"256m"), (b"/dev/shm", b"64m")):
        if not os.path.isdir(target):
            continue
        if libc.mount(b"tmpfs", target, b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=1777,size=" + size) != 0:
            raise OSError(ctypes.get_errno(), f"mount tmpfs on {target.decode()}")
        mounted.append(target.decode())
    return ["namespaces(net,mount,ipc)", f"tmpfs({','.join(mounted)})"]


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


class Executor:
    """The select loop: job queue, slots, per-call deadlines, cleanup after every child."""

    def __init__(self, config: dict) -> None:
        self.workers = max(1, min(int(config["workers"]), MAX_SLOTS))
        self.timeout_s = float(config["timeout_s"])
        self.line_cap = int(config["max_value_chars"]) * 6 + int(config["stdout_bytes"]) * 6 + 8192
        self.limits = Limits(
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
        self.uid_base = SLOT_UID_BASE + (os.getpid() % 20_000) * MAX_SLOTS if os.geteuid() == 0 else None
        if self.uid_base is None:
            self.warnings.append("not root: children keep the executor's uid (no per-slot uid drop)")
        else:
            layers.append("setuid")
        self.namespaced = layers[0].startswith("namespaces")
        layers += ["rlimits", "no_new_privs"]
        try:
            self.seccomp: SeccompProgram | None = SeccompProgram(deny_file_creation=not self.namespaced)
            layers.append("seccomp" if self.namespaced else "seccomp(+no file creation)")
        except Exception as exc:
            self.seccomp = None
            self.warnings.append(f"seccomp unavailable: {exc}")
        self.isolation = "+".join(layers)
        self.tmp = tempfile.mkdtemp(prefix="flywheel-sandbox-")
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.sel = selectors.DefaultSelector()
        self.queue: deque[_Job] = deque()
        self.free_slots = list(range(self.workers - 1, -1, -1))
        self.running: dict[int, _Child] = {}
        self.dying: dict[int, _Child] = {}  # pidfd -> killed child not yet reaped
        self.exited: dict[int, int] = {}  # pid -> wait status, for children reaped by _reap first
        self.inbuf = bytearray()
        self.counter = 0

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

    # ------------------------------------------------------------------ children

    def _start(self, job: _Job, slot: int) -> None:
        self.counter += 1
        workdir = os.path.join(self.tmp, f"{slot}-{self.counter}")
        uid = None if self.uid_base is None else self.uid_base + slot
        os.mkdir(workdir, 0o700)
        if uid is not None:
            os.chown(workdir, uid, uid)
        read_fd, write_fd = os.pipe()
        todo = job.inputs[len(job.results) :]
        pid = os.fork()
        if pid == 0:  # child: never returns
            try:
                run_child(job.program, todo, job.entry, workdir, uid, self.limits, self.devnull, write_fd, self.seccomp)
            finally:
                os._exit(SETUP_FAILED_EXIT)
        os.close(write_fd)
        child = _Child(pid, read_fd, slot, job, workdir, time.monotonic() + self.timeout_s)
        self.running[read_fd] = child
        self.sel.register(read_fd, selectors.EVENT_READ, child)

    def _end(self, child: _Child, need_status: bool) -> int:
        """Kill the child's process group and stop reading it.

        With `need_status` it is reaped now and its wait status returned; otherwise reaping and directory
        removal happen when its pidfd becomes readable, off the critical path (returns 0).
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
        """Reap a killed child (blocking), reap strays, remove its working directory; returns wait status."""
        status = self.exited.pop(child.pid, None)
        if status is None:
            status = os.waitpid(child.pid, 0)[1]
        self._reap()
        try:
            os.rmdir(child.workdir)
        except OSError:
            shutil.rmtree(child.workdir, ignore_errors=True)
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
        if missing:
            kind, message = outcome or _describe_exit(status)
            job.results.append([kind, None, message, ""])
        if len(job.results) < len(job.inputs):
            self._start(job, child.slot)  # remaining inputs run in a fresh child, same slot
            return
        self.free_slots.append(child.slot)
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
            while self.queue and self.free_slots:
                self._start(self.queue.popleft(), self.free_slots.pop())
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
        shutil.rmtree(self.tmp, ignore_errors=True)


def _preload(modules: list[str]) -> None:
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


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
    _preload(sorted(config["allowed_imports"]))
    try:
        executor = Executor(config)
    except Exception as exc:
        sys.stdout.write(json.dumps({"hello": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stdout.flush()
        raise SystemExit(1) from None
    gc.collect()
    gc.freeze()  # forked children then leave the preloaded heap's pages shared
    executor.serve()


if __name__ == "__main__":
    main()
