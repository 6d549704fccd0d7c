"""`flywheel verify math FILE.jsonl`: check `gold` (or `answer`) against `prediction` for every row."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable

from flywheel.verifiers.jsonl import read_objects
from flywheel.verifiers.math import MathChecker
from flywheel.verifiers.math.checker import (
    MAX_WORKERS,
    default_workers,
    valid_timeout,
    valid_tolerance,
    valid_workers,
)


def _load(path: str) -> list[tuple[str, str]]:
    """Rows as (gold, prediction); ValueError names the first bad line."""
    pairs = []
    for line_no, row in read_objects(path):
        gold = row.get("gold", row.get("answer"))
        prediction = row.get("prediction")
        if not isinstance(gold, str) or not isinstance(prediction, str):
            raise ValueError(f"line {line_no}: needs string fields 'gold' (or 'answer') and 'prediction'")
        pairs.append((gold, prediction))
    return pairs


def _option(parse: Callable[[str], object], check: Callable[[object], object]) -> Callable[[str], object]:
    """An argparse type: `parse` the text, then `check` it; either failing is argparse's exit-2 error."""

    def convert(text: str) -> object:
        try:
            return check(parse(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def parser() -> argparse.ArgumentParser:
    """The command line of `flywheel verify math` (every option shows its default in --help)."""
    cli = argparse.ArgumentParser(
        prog="flywheel verify math",
        description="Check `gold` (or `answer`) against `prediction` for every row of a JSONL file; prints one "
        "JSON line per row (index, verdict, reason) and a totals line.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cli.add_argument("path", help="JSONL file, one JSON object per line")
    cli.add_argument(
        "--workers",
        type=_option(int, valid_workers),
        default=default_workers(),
        help=f"checker processes, 1 to {MAX_WORKERS} (the default is the number of cores, at most 8)",
    )
    cli.add_argument("--timeout", type=_option(float, valid_timeout), default=2.0, help="seconds per check, above 0")
    cli.add_argument(
        "--rel-tol",
        type=_option(float, valid_tolerance),
        default=1e-9,
        help="relative tolerance when an answer holds a decimal literal (0 to 1)",
    )
    cli.add_argument(
        "--abs-tol",
        type=_option(float, lambda value: valid_tolerance(value, maximum=math.inf)),
        default=0.0,
        help="absolute tolerance when an answer holds a decimal literal (finite, at least 0)",
    )
    return cli


def main(argv: list[str]) -> int:
    """Print one JSON line per row (`index`, `verdict`, `reason`) and a totals line; 2 on bad input."""
    args = parser().parse_args(argv)
    start = time.monotonic()
    try:
        pairs = _load(args.path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"flywheel verify math: cannot read {args.path}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"flywheel verify math: {args.path}: {exc}", file=sys.stderr)
        return 2
    settings = {"workers": args.workers, "timeout_s": args.timeout, "rel_tol": args.rel_tol, "abs_tol": args.abs_tol}
    with MathChecker(**settings) as checker:
        verdicts = checker.check_many(pairs)
    counts = Counter(v.verdict for v in verdicts)
    for i, v in enumerate(verdicts):
        print(json.dumps({"index": i, "verdict": v.verdict, "reason": v.reason}))
    totals = {"rows": len(pairs)}
    totals.update({k: counts.get(k, 0) for k in ("equal", "not_equal", "parse_error", "timeout")})
    totals["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(totals))
    return 0
