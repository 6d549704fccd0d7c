"""The `flywheel` command line: `flywheel train`, `flywheel verify code|math FILE.jsonl`."""

from __future__ import annotations

import argparse
import sys

USAGE = """usage: flywheel <command> [args]

commands:
  train [--config RECIPE.yaml] [--key value ...]   self-play training (default: the laptop recipe)
  verify code FILE.jsonl                           run code/input/output rows in the sandbox
  verify math FILE.jsonl                           check gold/prediction rows with the math checker
"""


def _verify(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flywheel verify", description="Verify a JSONL dataset.")
    parser.add_argument("kind", choices=["code", "math"])
    parser.add_argument("path", help="JSONL file, one row per line")
    args, rest = parser.parse_known_args(argv)
    if args.kind == "code":
        from flywheel.verifiers.code_dataset import main as verify_code

        return verify_code([args.path, *rest])
    from flywheel.verifiers.math_dataset import main as verify_math

    return verify_math([args.path, *rest])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from flywheel.train.run import main as train_main

        return train_main(rest)
    if command == "verify":
        return _verify(rest)
    print(f"flywheel: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
