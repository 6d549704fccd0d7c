"""`flywheel verify code FILE.jsonl`: replay code/input/output rows (CRUXEval/AZR style) in the sandbox."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from flywheel.verifiers.jsonl import read_objects
from flywheel.verifiers.sandbox import Job, Sandbox, SandboxConfig, Status
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


def main(argv: list[str]) -> int:
    """Print one JSON line per row (index, status, passed, got) and a totals line; 2 on bad input."""
    parser = argparse.ArgumentParser(prog="flywheel verify code", description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per call (default 2)")
    parser.add_argument("--workers", type=int, default=None, help="concurrent slots (default: all cores)")
    args = parser.parse_args(argv)
    try:
        rows = read_rows(args.path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"flywheel verify code: {args.path}: {exc}", file=sys.stderr)
        return 2
    config = SandboxConfig(timeout_s=args.timeout)
    if args.workers:
        config = SandboxConfig(timeout_s=args.timeout, workers=args.workers)
    start = time.perf_counter()
    with Sandbox(config) as sandbox:
        results = sandbox.run_many([Job(row.program, (row.input,)) for row in rows])
    counts: Counter[str] = Counter()
    passed = 0
    for index, (row, (result,)) in enumerate(zip(rows, results, strict=True)):
        ok = result.status == Status.OK and values_equal(result.value or "", row.output)
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
