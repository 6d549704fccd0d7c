"""Public data types of the sandbox: statuses, results, jobs and configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_ALLOWED_IMPORTS = frozenset(
    {
        "math",
        "cmath",
        "itertools",
        "functools",
        "collections",
        "heapq",
        "bisect",
        "re",
        "string",
        "fractions",
        "decimal",
        "typing",
        "dataclasses",
        "operator",
        "statistics",
        "copy",
        "random",
        "datetime",
        "enum",
        "array",
        "numbers",
        "abc",
        "json",
        "textwrap",
        "unicodedata",
        "calendar",
        "time",
        "queue",
    }
)


class Status(StrEnum):
    """Outcome of one call."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    REJECTED = "rejected"


@dataclass(frozen=True)
class CallResult:
    """One call's outcome; `value` is canonical literal text (see flywheel.verifiers.values) when ok."""

    status: Status
    value: str | None = None
    error: str | None = None
    stdout: str = ""


@dataclass(frozen=True)
class Job:
    """A program and the argument lists to call `entry` with ("[1, 2], 3" means f([1, 2], 3); "" means f())."""

    program: str
    inputs: tuple[str, ...]
    entry: str = "f"


@dataclass(frozen=True)
class SandboxConfig:
    """Limits are per call except `memory_mb`, which bounds the child's address space.

    `isolation`: "auto" (namespaces when available, else degrade with a warning), "full" (fail without
    namespaces), "rlimits" (skip namespaces; rlimits, uid drop, no_new_privs and seccomp only).
    `static_check=False` is for tests that prove the deeper walls hold on their own.
    `workers` is the number of concurrent child slots; two per core hide the fork and pipe latency
    (measured with benchmarks/sandbox.py, see docs/sandbox.md).
    """

    workers: int = 2 * (os.cpu_count() or 1)
    timeout_s: float = 1.0
    memory_mb: int = 512
    max_value_chars: int = 10_000
    stdout_bytes: int = 4096
    allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS
    hash_seed: int = 0
    isolation: str = "auto"
    static_check: bool = True
