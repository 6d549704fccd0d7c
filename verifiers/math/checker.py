"""MathChecker: a pool of persistent SymPy worker processes with a hard per-task timeout.

Workers are started with `subprocess` (`python -m flywheel.verifiers.math.worker`, clean environment,
RLIMIT_AS set by the worker), never forked from the caller. Tasks are sent in batches; each task's hard
deadline runs from the moment the worker starts it (the previous reply, or the send), and a worker that
misses it is killed, the task answered `timeout`, the rest of its batch re-queued, and a fresh worker started.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .types import ComputeRequest, ComputeResult, MathVerdict

MAX_TEXT_CHARS = 4000  # longer answers are parse errors without a round trip (same limit as the parser)
WORKER_MEMORY_BYTES = 2 << 30
MAX_BATCH = 16
START_TIMEOUT_S = 60.0
MAX_START_FAILURES = 3
MAX_TIMEOUT_S = 600.0
MAX_WORKERS = 64


def default_workers() -> int:
    """The number of cores, at most 8."""
    return min(os.cpu_count() or 1, 8)


def valid_timeout(seconds: float) -> float:
    """`seconds` if it is a finite number above 0 and at most MAX_TIMEOUT_S, else ValueError."""
    if not (isinstance(seconds, int | float) and 0 < seconds <= MAX_TIMEOUT_S):  # also refuses nan and inf
        raise ValueError(f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, not {seconds!r}")
    return float(seconds)


def valid_workers(count: int) -> int:
    """`count` if it is a whole number from 1 to MAX_WORKERS, else ValueError."""
    if not (isinstance(count, int) and 1 <= count <= MAX_WORKERS):
        raise ValueError(f"workers must be a whole number from 1 to {MAX_WORKERS}, not {count!r}")
    return count


def valid_tolerance(value: float, maximum: float = 1.0) -> float:
    """`value` if it is a finite number from 0 to `maximum`, else ValueError."""
    if not (isinstance(value, int | float) and 0 <= value <= maximum and math.isfinite(value)):
        raise ValueError(f"tolerance must be a finite number from 0 to {maximum:g}, not {value!r}")
    return float(value)


@dataclass
class _Proc:
    proc: subprocess.Popen
    ready: bool = False
    buf: bytes = b""
    batch: deque[int] = field(default_factory=deque)
    deadline: float = math.inf
    started: float = 0.0
    spawned: float = field(default_factory=time.monotonic)


class MathChecker:
    """Checks answers and runs SymPy operations in worker processes; use as a context manager."""

    def __init__(
        self, workers: int | None = None, timeout_s: float = 2.0, rel_tol: float = 1e-9, abs_tol: float = 0.0
    ) -> None:
        self.workers = valid_workers(workers if workers is not None else default_workers())
        self.timeout_s = valid_timeout(timeout_s)
        self.rel_tol = valid_tolerance(rel_tol)
        self.abs_tol = valid_tolerance(abs_tol, maximum=math.inf)
        self.last_latencies: list[float] = []  # seconds per task of the latest batch (diagnostics)
        self._lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._procs: list[_Proc] = []
        self._start_failures = 0
        self._closed = False
        for _ in range(self.workers):
            self._spawn()

    # ------------------------------------------------------------------ public API
    def check(self, gold: str, prediction: str) -> MathVerdict:
        """Compare one prediction with its gold answer."""
        return self.check_many([(gold, prediction)])[0]

    def check_many(self, pairs: Sequence[tuple[str, str]]) -> list[MathVerdict]:
        """Compare many pairs in parallel over the workers; results keep the input order."""
        tasks: list[list | None] = []
        early: dict[int, MathVerdict] = {}
        for i, pair in enumerate(pairs):
            try:
                gold, pred = pair
            except (TypeError, ValueError):
                early[i] = MathVerdict("parse_error", "pair is not (gold, prediction)")
                tasks.append(None)
                continue
            gold, gerr = _clean(gold)
            pred, perr = _clean(pred)
            if gerr or perr:
                early[i] = MathVerdict("parse_error", f"gold: {gerr}" if gerr else f"prediction: {perr}")
                tasks.append(None)
            else:
                tasks.append(["check", gold, pred])
        replies = self._run(tasks)
        return [early[i] if i in early else MathVerdict(r[0], r[1]) for i, r in enumerate(replies)]

    def compute_many(self, requests: Sequence[ComputeRequest]) -> list[ComputeResult]:
        """Run SymPy operations (see OPERATIONS) in the same pool, under the same hard timeout."""
        tasks: list[list | None] = []
        early: dict[int, ComputeResult] = {}
        for i, req in enumerate(requests):
            expr, err = _clean(req.expression)
            params = {str(k): _clean(v)[0] for k, v in dict(req.params).items()}
            if err:
                early[i] = ComputeResult("parse_error", None, f"expression: {err}")
                tasks.append(None)
            else:
                tasks.append(["compute", str(req.operation), expr, str(req.variable), params])
        replies = self._run(tasks)
        return [early[i] if i in early else ComputeResult(r[0], r[1], r[2], r[3]) for i, r in enumerate(replies)]

    def close(self) -> None:
        """Stop all workers."""
        if self._closed:
            return
        self._closed = True
        for p in self._procs:
            self._stop(p)
        self._procs.clear()
        self._sel.close()

    def __enter__(self) -> MathChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ pool
    def _spawn(self) -> _Proc:
        config = {
            "timeout_s": self.timeout_s,
            "rel_tol": self.rel_tol,
            "abs_tol": self.abs_tol,
            "memory_bytes": WORKER_MEMORY_BYTES,
        }
        env = {
            "PATH": os.defpath,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p)),
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LC_ALL": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "flywheel.verifiers.math.worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        os.set_blocking(proc.stdout.fileno(), False)
        p = _Proc(proc)
        self._sel.register(proc.stdout, selectors.EVENT_READ, p)
        self._procs.append(p)
        return p

    def _stop(self, p: _Proc) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(p.proc.stdout)
        if p.proc.poll() is None:
            p.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.proc.wait(timeout=5)
        for stream in (p.proc.stdin, p.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def _replace(self, p: _Proc) -> None:
        self._stop(p)
        self._procs.remove(p)
        self._spawn()

    def _run(self, tasks: list[list | None]) -> list[list]:
        if self._closed:
            raise RuntimeError("MathChecker is closed")
        with self._lock:
            return self._run_locked(tasks)

    def _run_locked(self, tasks: list[list | None]) -> list[list]:
        n = len(tasks)
        results: list[list | None] = [None if t is not None else ["skip"] for t in tasks]
        latencies = [0.0] * n
        pending = deque(i for i, t in enumerate(tasks) if t is not None)
        batch_size = max(1, min(MAX_BATCH, math.ceil(len(pending) / (2 * self.workers))))
        while pending or any(p.batch for p in self._procs):
            now = time.monotonic()
            for p in self._procs:
                if p.ready and not p.batch and pending:
                    ids = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
                    payload = [[i, *tasks[i]] for i in ids]
                    try:
                        p.proc.stdin.write((json.dumps(payload) + "\n").encode())
                        p.proc.stdin.flush()
                    except OSError:
                        pending.extendleft(reversed(ids))
                        self._worker_failed(p, tasks, results, latencies, pending, "worker pipe closed")
                        break
                    p.batch.extend(ids)
                    p.started = now
                    p.deadline = now + self.timeout_s
            if self._start_failures > MAX_START_FAILURES:
                for i in pending:
                    results[i] = _failed(tasks[i], "math workers failed to start")
                pending.clear()
                continue
            busy = [p.deadline for p in self._procs if p.batch]
            starting = [p.spawned + START_TIMEOUT_S for p in self._procs if not p.ready]
            wait = max(0.0, min([*busy, *starting], default=now + 1.0) - now)
            for key, _ in self._sel.select(timeout=wait):
                self._read(key.data, tasks, results, latencies, pending)
            now = time.monotonic()
            for p in list(self._procs):
                if p.batch and now >= p.deadline:
                    self._worker_failed(
                        p, tasks, results, latencies, pending, f"killed after {self.timeout_s:.2f}s (hard limit)"
                    )
                elif not p.ready and now >= p.spawned + START_TIMEOUT_S:
                    self._start_failures += 1
                    self._replace(p)
        self.last_latencies = [latencies[i] for i, t in enumerate(tasks) if t is not None]
        return results  # type: ignore[return-value]

    def _read(self, p: _Proc, tasks: list, results: list, latencies: list, pending: deque) -> None:
        try:
            chunk = os.read(p.proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            if not p.ready:
                self._start_failures += 1
            self._worker_failed(p, tasks, results, latencies, pending, "worker process died (memory limit or crash)")
            return
        p.buf += chunk
        *lines, p.buf = p.buf.split(b"\n")
        for line in lines:
            if not p.ready:
                p.ready = line.strip() == b"ready"
                if p.ready:
                    self._start_failures = 0
                continue
            reply = json.loads(line)
            i = p.batch.popleft()
            now = time.monotonic()
            latencies[i] = now - p.started
            p.started = now
            p.deadline = now + self.timeout_s
            results[i] = reply[1:]

    def _worker_failed(
        self, p: _Proc, tasks: list, results: list, latencies: list, pending: deque, reason: str
    ) -> None:
        """Answer the task in progress `timeout`, re-queue the rest of the batch, replace the worker."""
        if p.batch:
            i = p.batch.popleft()
            latencies[i] = time.monotonic() - p.started
            results[i] = _failed(tasks[i], reason)
            pending.extendleft(reversed(p.batch))
            p.batch.clear()
        self._replace(p)


def _failed(task: list, reason: str) -> list:
    return ["timeout", reason] if task[0] == "check" else ["timeout", None, reason, 0]


def _clean(text: object) -> tuple[str, str]:
    """(text, error): bytes are decoded, other non-strings and over-long text are rejected."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return "", f"not a string ({type(text).__name__})"
    if len(text) > MAX_TEXT_CHARS:
        return "", f"longer than {MAX_TEXT_CHARS} characters"
    return text, ""
