"""`flywheel verify code FILE.jsonl`: replay code/input/output rows (CRUXEval/AZR style) in the sandbox."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from flywheel.verifiers.jsonl import read_objects
from flywheel.verifiers.sandbox import DEFAULT_ALLOWED_IMPORTS, Job, Sandbox, SandboxConfig, Status
from flywheel.verifiers.values import values_equal


@dataclass(frozen=True)
class Row:
    """One dataset row: `program` already has the row's import lines prepended."""

    program: str
    input: str
    output: str


def parse_row(obj: dict[str, Any], line_no: int) -> Row:
    """Validate one decoded JSON row; raises ValueError naming the line and the problem."""
    code = obj.get("code", obj.get("snippet"))
    imports = obj.get("imports") or []
    if not isinstance(code, str):
        raise ValueError(f"line {line_no}: missing string field 'code' (or 'snippet')")
    if not isinstance(imports, list) or not all(isinstance(x, str) for x in imports):
        raise ValueError(f"line {line_no}: 'imports' must be a list of import lines")
    for key in ("input", "output"):
        if not isinstance(obj.get(key), str):
            raise ValueError(f"line {line_no}: missing string field {key!r}")
    program = "".join(line.strip() + "\n" for line in imports) + code
    return Row(program, obj["input"], obj["output"])


def read_rows(path: str) -> list[Row]:
    """All rows of a JSONL file (blank lines skipped); raises OSError or ValueError with the line number."""
    return [parse_row(obj, line_no) for line_no, obj in read_objects(path)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flywheel verify code", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    default = SandboxConfig()
    parser.add_argument("path", help="JSONL rows: code (or snippet), optional imports, input, output")
    parser.add_argument("--timeout", type=float, default=2.0, help="wall-clock seconds per call")
    parser.add_argument("--workers", type=int, default=default.workers, help="concurrent sandbox children")
    parser.add_argument("--rel-tol", type=float, default=1e-9, help="relative tolerance for floats")
    parser.add_argument("--abs-tol", type=float, default=0.0, help="absolute tolerance for floats")
    parser.add_argument(
        "--strict-types",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="1, 1.0 and True are different answers (--no-strict-types compares them as numbers)",
    )
    parser.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="also allow this standard-library module (repeatable); default allowlist: "
        + ", ".join(sorted(default.allowed_imports)),
    )
    return parser


def _config(args: argparse.Namespace) -> SandboxConfig:
    """The sandbox config the options ask for; raises ValueError naming each bad option."""
    problems = [
        f"--{name.replace('_', '-')} must be a finite number of at least 0, not {getattr(args, name)!r}"
        for name in ("rel_tol", "abs_tol")
        if not 0 <= getattr(args, name) < math.inf
    ]
    for module in args.allow_import:
        if not module.isidentifier():
            problems.append(f"--allow-import {module!r}: give a top-level module name")
        elif module not in sys.stdlib_module_names:
            problems.append(
                f"--allow-import {module}: only standard-library modules can be allowed (third-party packages "
                "are not loaded into the sandbox and their values are not plain data)"
            )
    try:
        config = SandboxConfig(
            timeout_s=args.timeout,
            workers=args.workers,
            allowed_imports=DEFAULT_ALLOWED_IMPORTS | frozenset(args.allow_import),
        )
    except ValueError as exc:
        message = str(exc).replace("timeout_s", "--timeout").replace("workers", "--workers")
        problems.append(message.removeprefix("invalid sandbox config: "))
    if problems:
        raise ValueError("; ".join(problems))
    return config


def main(argv: list[str]) -> int:
    """Print one JSON line per row (index, status, passed, got) and a totals line; 2 on bad input."""
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"flywheel verify code: {exc}", file=sys.stderr)
        return 2
    try:
        rows = read_rows(args.path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"flywheel verify code: {args.path}: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with Sandbox(config) as sandbox:
        results = sandbox.run_many([Job(row.program, (row.input,)) for row in rows])
    counts: Counter[str] = Counter()
    passed = 0
    for index, (row, (result,)) in enumerate(zip(rows, results, strict=True)):
        ok = result.status == Status.OK and values_equal(
            result.value or "", row.output, rel_tol=args.rel_tol, abs_tol=args.abs_tol, strict_types=args.strict_types
        )
        passed += ok
        counts[str(result.status)] += 1
        print(
            json.dumps(
                {
                    "index": index,
                    "status": str(result.status),
                    "passed": ok,
                    "got": result.value if result.status == Status.OK else result.error,
                }
            )
        )
    print(
        json.dumps(
            {
                "rows": len(rows),
                "passed": passed,
                "failed": len(rows) - passed,
                "status_counts": dict(sorted(counts.items())),
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
    )
    return 0
