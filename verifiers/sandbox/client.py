"""Parent side: `Sandbox` owns one warm executor process and talks to it in JSON lines."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Sequence
from typing import IO

from flywheel.verifiers.sandbox.config import CallResult, Job, SandboxConfig, Status
from flywheel.verifiers.sandbox.preload import modules_to_preload
from flywheel.verifiers.static_check import check_program
from flywheel.verifiers.values import canonical, parse_literal

STARTUP_TIMEOUT_S = 60.0


class Sandbox:
    """Runs untrusted programs in locked-down children of a separate warm executor process, each cloned
    from a zygote that never holds a job (docs/sandbox.md).

    Use as a context manager (or call close()).  Not for concurrent use from several threads at once:
    calls are serialised by a lock.  `isolation` names the layers in force, e.g.
    ``namespaces(net,mount,ipc)+readonly(/)+tmpfs(/tmp,/dev/shm)+setuid+...+seccomp+zygote+runtime_guard``.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._lock = threading.Lock()
        self._shadow: Sandbox | None = None
        self._next_id = 0
        self._buf = bytearray()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the executor
        self._proc: subprocess.Popen[bytes] | None = None
        self.isolation = ""
        self.executor_pid = 0
        self._executor_tmp = ""
        self._start()

    # ------------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        cfg = self.config
        env = {
            "PYTHONHASHSEED": str(cfg.hash_seed),
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-P", "-s", "-m", "flywheel.verifiers.sandbox.executor"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd="/",
            close_fds=True,
        )
        setup = {
            "workers": cfg.workers,
            "timeout_s": cfg.timeout_s,
            "memory_mb": cfg.memory_mb,
            "max_value_chars": cfg.max_value_chars,
            "stdout_bytes": cfg.stdout_bytes,
            "allowed_imports": sorted(cfg.allowed_imports),
            "preload": modules_to_preload(cfg.allowed_imports),
            "isolation": cfg.isolation,
            "runtime_guard": cfg.runtime_guard,
        }
        assert self._proc.stdin is not None and self._proc.stdout is not None
        os.write(self._proc.stdin.fileno(), (json.dumps(setup) + "\n").encode())
        hello = json.loads(self._read_line(STARTUP_TIMEOUT_S) or b'{"hello": false}')
        if not hello.get("hello"):
            reason = hello.get("error") or self._stderr_tail()
            self.close()
            raise RuntimeError(f"sandbox executor failed to start: {reason}")
        self.isolation = hello["isolation"]
        self.executor_pid = hello["pid"]
        self._executor_tmp = hello["tmp"]
        for message in hello["warnings"]:
            warnings.warn(f"sandbox: {message}", RuntimeWarning, stacklevel=3)
        os.set_blocking(self._proc.stdin.fileno(), False)

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode("utf-8", "replace")

    def _read_line(self, timeout: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                if not sel.select(timeout):
                    return b""
                data = os.read(fd, 1 << 16)
                if not data:
                    return b""
                self._buf += data
        cut = self._buf.index(b"\n")
        line = bytes(self._buf[:cut])
        del self._buf[: cut + 1]
        return line

    def close(self) -> None:
        """End the executor (which kills its running children) and the determinism shadow, if any."""
        if self._shadow is not None:
            self._shadow.close()
            self._shadow = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        self._stderr.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ running

    def run(self, program: str, inputs: Sequence[str], entry: str = "f") -> list[CallResult]:
        """Call `entry(*args)` once per argument-list text in `inputs`; one result per input, in order."""
        return self.run_many([Job(program, tuple(inputs), entry)])[0]

    def run_many(self, jobs: Sequence[Job]) -> list[list[CallResult]]:
        """Run many jobs concurrently on all slots; results keep the order of `jobs` and of their inputs."""
        results: list[list[CallResult] | None] = [None] * len(jobs)
        payload = bytearray()
        index_of: dict[int, int] = {}
        for i, job in enumerate(jobs):
            reason = self._reject_reason(job)
            if reason is not None:
                results[i] = [CallResult(Status.REJECTED, error=reason) for _ in job.inputs]
                continue
            self._next_id += 1
            index_of[self._next_id] = i
            payload += (
                json.dumps(
                    {"id": self._next_id, "program": job.program, "inputs": list(job.inputs), "entry": job.entry}
                )
                + "\n"
            ).encode()
        if index_of:
            with self._lock:
                for job_id, raw in self._exchange(bytes(payload), set(index_of)):
                    results[index_of[job_id]] = [self._result(*r) for r in raw]
        return results  # type: ignore[return-value]

    def _reject_reason(self, job: Job) -> str | None:
        """Why a job is refused before it runs; sizes are checked before anything parses the text."""
        cfg = self.config
        if not job.entry.isidentifier():
            return f"entry {job.entry!r} is not an identifier"
        if len(job.program) > cfg.max_program_chars:
            return f"program too long ({len(job.program)} > {cfg.max_program_chars} chars)"
        lines = job.program.count("\n") + 1
        if lines > cfg.max_program_lines:
            return f"program too long ({lines} > {cfg.max_program_lines} lines)"
        longest = max(map(len, job.inputs), default=0)
        if longest > cfg.max_input_chars:
            return f"input too long ({longest} > {cfg.max_input_chars} chars)"
        if cfg.static_check:
            problems = check_program(job.program, cfg.allowed_imports, job.inputs)
            if problems:
                return "static check: " + "; ".join(problems[:5])
        return None

    def _exchange(self, payload: bytes, pending: set[int]) -> list[tuple[int, list]]:
        proc = self._proc
        if proc is None:
            raise RuntimeError("sandbox is closed")
        in_fd, out_fd = proc.stdin.fileno(), proc.stdout.fileno()  # type: ignore[union-attr]
        view, sent, got = memoryview(payload), 0, []
        with selectors.DefaultSelector() as sel:
            sel.register(out_fd, selectors.EVENT_READ)
            sel.register(in_fd, selectors.EVENT_WRITE)
            while pending:
                for key, _ in sel.select():
                    if key.fd == in_fd:
                        sent += os.write(in_fd, view[sent : sent + (1 << 16)])
                        if sent == len(view):
                            sel.unregister(in_fd)
                        continue
                    data = os.read(out_fd, 1 << 20)
                    if not data:
                        self._proc = None
                        raise RuntimeError(f"sandbox executor died: {self._stderr_tail()}")
                    self._buf += data
                    while (cut := self._buf.find(b"\n")) >= 0:
                        message = json.loads(bytes(self._buf[:cut]))
                        del self._buf[: cut + 1]
                        pending.discard(message["id"])
                        got.append((message["id"], message["results"]))
        return got

    def _result(self, status: str, value: str | None, error: str | None, stdout: str) -> CallResult:
        """Trust only data: an ok value must parse as a plain literal and is re-printed canonically."""
        if status == Status.OK:
            try:
                value = canonical(parse_literal(value or "", max_chars=self.config.max_value_chars * 4))
            except ValueError as exc:
                return CallResult(Status.ERROR, error=f"invalid value text from child: {exc}", stdout=stdout)
            return CallResult(Status.OK, value=value, stdout=stdout)
        return CallResult(Status(status), error=error, stdout=stdout)

    def shadow(self) -> Sandbox:
        """A second executor with a different hash seed (created on first use, closed with this one)."""
        if self._shadow is None:
            self._shadow = Sandbox(dataclasses.replace(self.config, hash_seed=self.config.hash_seed + 1))
        return self._shadow


def run_deterministic(
    sandbox: Sandbox, jobs: Sequence[Job], *, rerun_failures: bool = False
) -> list[tuple[list[CallResult], bool]]:
    """Run each job, then run it again in the same executor and under another PYTHONHASHSEED. Per job: the
    first run's results and whether status/value/error repeated in both re-runs.

    Without `rerun_failures`, a job with a failed call is not re-run (its failure is its outcome; its flag is
    True), so a batch of proposals that time out costs one run, not three.
    """
    first = sandbox.run_many(jobs)
    rerun = [i for i, results in enumerate(first) if rerun_failures or all(r.status == Status.OK for r in results)]
    repeated = dict.fromkeys(range(len(jobs)), True)
    if rerun:
        subset = [jobs[i] for i in rerun]
        again, other = sandbox.run_many(subset), sandbox.shadow().run_many(subset)

        def key(results: list[CallResult]) -> list[tuple[str, str | None, str | None]]:
            return [(r.status, r.value, r.error) for r in results]

        for i, b, c in zip(rerun, again, other, strict=True):
            repeated[i] = key(first[i]) == key(b) == key(c)
    return [(results, repeated[i]) for i, results in enumerate(first)]


def check_deterministic(sandbox: Sandbox, jobs: Sequence[Job]) -> list[bool]:
    """True per job only if status/value/error repeat in the same executor AND under another PYTHONHASHSEED."""
    return [deterministic for _, deterministic in run_deterministic(sandbox, jobs, rerun_failures=True)]
