"""The `flywheel` command line as a user runs it: every command answers `--help` with its options."""

from __future__ import annotations

import subprocess
import sys

import pytest

HELP_MENTIONS = {
    ("train",): ["Flywheel options", "--heldout_per_family", "--guards", "--rails", "--sandbox_workers"],
    ("eval",): ["--model", "--tasks", "--samples", "--output"],
    ("ledger",): ["summary", "show", "export", "replay"],
    ("model",): ["convert-smollm"],
    ("verify", "code"): ["--timeout", "--workers", "--allow-import", "(default:"],
    ("verify", "math"): ["--timeout", "--workers", "(default:"],
}


def flywheel(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flywheel.train.cli", *argv], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("command", list(HELP_MENTIONS), ids=" ".join)
def test_every_command_documents_its_options(command: tuple[str, ...]) -> None:
    done = flywheel(*command, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    for mention in HELP_MENTIONS[command]:
        assert mention in done.stdout, f"{mention!r} missing from `flywheel {' '.join(command)} --help`"


def test_an_unknown_command_is_a_clear_exit_2() -> None:
    done = flywheel("trian")
    assert done.returncode == 2
    assert "unknown command 'trian'" in done.stderr and "commands:" in done.stderr
