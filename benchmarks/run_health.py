"""Does the default run end with no family collapsed? Last-quarter figures per family, from the audit ledger.

    .venv/bin/python benchmarks/run_health.py --seeds 0 1 2 [--parallel 2] [--out DIR] [-- RECIPE OVERRIDES]
    .venv/bin/python benchmarks/run_health.py --runs RUN_DIR [RUN_DIR ...]     # runs that already finished

`--seeds` runs `flywheel train` (the default recipe, plus any overrides after ``--``) once per seed, each in its
own run directory under `--out`; `--runs` reads finished run directories. For every run and family, over the
last quarter of the self-play steps, it prints:

* the duplicate rate: proposals the data gate rejected as duplicates, as a share of the otherwise valid ones
  (valid + duplicate), the definition of ``selfplay/{family}/propose/duplicate_rate``;
* the learnability: the mean proposer reward of the valid proposals (AZR's ``1 - p``, 0 for p in {0, 1});
* the valid rate and the number of guard events.

A family counts as collapsed when its duplicate rate is 0.3 or more, or its learnability is 0 (issue 9's bar).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import fmean
from typing import Any

from flywheel.train.ledger import open_store, read_rows

MAX_DUPLICATE_RATE = 0.3


def late_figures(run_dir: Path, share: float = 0.25) -> dict[str, dict[str, Any]]:
    """Per family, the figures of the last `share` of one run's self-play steps, read from its ledger."""
    db = open_store(run_dir)
    try:
        rows = list(read_rows(db, with_text=False))
    finally:
        db.close()
    last_step = max((row.step for row in rows if row.role == "propose"), default=0)
    start = last_step - int(last_step * share) + 1
    proposals: dict[str, list[Any]] = defaultdict(list)
    guards = sum(1 for row in rows if row.role == "guard")
    for row in rows:
        if row.role == "propose" and row.step >= start:
            proposals[row.family].append(row)
    figures = {}
    for family, members in sorted(proposals.items()):
        valid = [row for row in members if row.verdict == "valid"]
        duplicates = sum(1 for row in members if row.verdict == "duplicate")
        figures[family] = {
            "steps": f"{start}-{last_step}",
            "valid_rate": len(valid) / len(members),
            "duplicate_rate": duplicates / (len(valid) + duplicates) if valid or duplicates else 0.0,
            "learnability": fmean(float(row.result.get("reward", 0.0)) for row in valid) if valid else 0.0,
            "guard_events": guards,
        }
    return figures


def train(seed: int, out: Path, overrides: list[str]) -> Path:
    run_dir = out / f"seed-{seed}"
    log = out / f"seed-{seed}.log"
    command = [sys.executable, "-m", "flywheel.train.cli", "train", "--seed", str(seed), "--output_dir", str(run_dir)]
    started = time.perf_counter()
    with log.open("w") as handle:
        subprocess.run([*command, *overrides], stdout=handle, stderr=subprocess.STDOUT, check=True)
    print(f"seed {seed}: trained in {(time.perf_counter() - started) / 60:.1f} min ({log})", flush=True)
    return run_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--seeds", type=int, nargs="+", help="train the default recipe once per seed")
    source.add_argument("--runs", type=Path, nargs="+", help="finished run directories to read")
    parser.add_argument("--parallel", type=int, default=2, help="training runs at once (with --seeds)")
    parser.add_argument("--out", type=Path, default=Path("flywheel-runs/health"), help="run directories (--seeds)")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="-- then `flywheel train` flags")
    args = parser.parse_args()
    overrides = args.overrides[1:] if args.overrides[:1] == ["--"] else args.overrides
    if args.seeds is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            runs = list(pool.map(lambda seed: train(seed, args.out, overrides), args.seeds))
    else:
        runs = args.runs

    collapsed = 0
    print(f"\n{'run':<28} {'family':<16} {'steps':<9} {'valid':>6} {'dup':>6} {'learn':>6} {'guards':>6}")
    for run_dir in runs:
        for family, row in late_figures(run_dir).items():
            bad = row["duplicate_rate"] >= MAX_DUPLICATE_RATE or row["learnability"] <= 0
            collapsed += bad
            print(
                f"{str(run_dir)[-28:]:<28} {family:<16} {row['steps']:<9} {row['valid_rate']:>6.2f} "
                f"{row['duplicate_rate']:>6.2f} {row['learnability']:>6.3f} {row['guard_events']:>6}"
                + ("  COLLAPSED" if bad else "")
            )
    print(f"\nfamilies collapsed over the last quarter: {collapsed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
