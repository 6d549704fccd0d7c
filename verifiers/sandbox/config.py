"""Public data types of the sandbox: statuses, results, jobs and configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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


ISOLATION_MODES = ("auto", "full", "rlimits")
MAX_WORKERS = 64
MAX_TIMEOUT_S = 3600.0


def default_workers(processes: int = 1) -> int:
    """Sandbox slots for each of `processes` processes that share this machine: two per core between them
    (at least 1, at most `MAX_WORKERS`)."""
    return min(MAX_WORKERS, max(1, 2 * (os.cpu_count() or 1) // processes))


@dataclass(frozen=True)
class SandboxConfig:
    """Limits are per call except `memory_mb`, which bounds the child's address space.

    Invalid values raise ValueError when the config is built (see `problems`).
    """

    workers: int = field(
        default_factory=default_workers,
        metadata={"help": f"Concurrent child slots, 1-{MAX_WORKERS}; two per core hide fork and pipe latency."},
    )
    timeout_s: float = field(
        default=1.0, metadata={"help": f"Wall-clock seconds per call, finite, above 0 and at most {MAX_TIMEOUT_S:g}."}
    )
    memory_mb: int = field(default=512, metadata={"help": "Address-space limit of each child, in MiB (at least 64)."})
    max_value_chars: int = field(
        default=10_000, metadata={"help": "Longest returned value text (output_limit past it)."}
    )
    stdout_bytes: int = field(default=4096, metadata={"help": "Captured stdout per call (output_limit past it)."})
    max_program_chars: int = field(
        default=65_536,
        metadata={"help": "Longest program, checked before anything parses it (longer: rejected)."},
    )
    max_program_lines: int = field(
        default=5_000, metadata={"help": "Most lines in a program, checked before anything parses it."}
    )
    max_input_chars: int = field(
        default=65_536, metadata={"help": "Longest argument-list text per call, checked before anything parses it."}
    )
    allowed_imports: frozenset[str] = field(
        default=DEFAULT_ALLOWED_IMPORTS, metadata={"help": "Top-level modules a program may import."}
    )
    hash_seed: int = field(default=0, metadata={"help": "PYTHONHASHSEED of the executor."})
    isolation: str = field(
        default="auto",
        metadata={
            "help": '"auto" (namespaces when available, else degrade with a warning), "full" (fail without '
            'namespaces) or "rlimits" (no namespaces: rlimits, uid drop, no_new_privs and seccomp only).'
        },
    )
    static_check: bool = field(
        default=True, metadata={"help": "Run the AST filter in the parent; off only in tests of the deeper walls."}
    )
    runtime_guard: bool = field(
        default=True,
        metadata={
            "help": "Audit hook in each child refusing frame, tracing, gc and ctypes introspection; off only in "
            "tests of the deeper walls."
        },
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid sandbox config: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is out of range, in words (empty when the config is valid)."""
        found = []
        if type(self.workers) is not int or not 1 <= self.workers <= MAX_WORKERS:
            found.append(f"workers must be an integer from 1 to {MAX_WORKERS}, not {self.workers!r}")
        if type(self.timeout_s) not in (int, float) or not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            found.append(f"timeout_s must be a number above 0 and at most {MAX_TIMEOUT_S:g}, not {self.timeout_s!r}")
        minimums = {
            "memory_mb": 64,
            "max_value_chars": 16,
            "stdout_bytes": 0,
            "max_program_chars": 1,
            "max_program_lines": 1,
            "max_input_chars": 0,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if type(value) is not int or value < minimum:
                found.append(f"{name} must be an integer of at least {minimum}, not {value!r}")
        if self.isolation not in ISOLATION_MODES:
            found.append(f"isolation must be one of {ISOLATION_MODES}, not {self.isolation!r}")
        return found
