"""`flywheel verify math FILE.jsonl`: check `gold` (or `answer`) against `prediction` for every row."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from flywheel.verifiers.jsonl import read_objects
from flywheel.verifiers.math import MathChecker


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


def main(argv: list[str]) -> int:
    """Print one JSON line per row (`index`, `verdict`, `reason`) and a totals line; 2 on bad input."""
    parser = argparse.ArgumentParser(prog="flywheel verify math")
    parser.add_argument("path")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        pairs = _load(args.path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"flywheel verify math: cannot read {args.path}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"flywheel verify math: {args.path}: {exc}", file=sys.stderr)
        return 2
    with MathChecker(workers=args.workers, timeout_s=args.timeout) as checker:
        verdicts = checker.check_many(pairs)
    counts = Counter(v.verdict for v in verdicts)
    for i, v in enumerate(verdicts):
        print(json.dumps({"index": i, "verdict": v.verdict, "reason": v.reason}))
    totals = {"rows": len(pairs)}
    totals.update({k: counts.get(k, 0) for k in ("equal", "not_equal", "parse_error", "timeout")})
    totals["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(totals))
    return 0
