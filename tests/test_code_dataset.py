"""`flywheel verify code`: row parsing, output format, error handling, and the AZR seed replay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from flywheel.verifiers.code_dataset import main

# Measured 243/256 (docs/sandbox.md explains all 13 disagreements: 7 truncated gold outputs, 3 non-plain
# return types, 2 nondeterministic programs, 1 disallowed import).  The margin covers
# the two nondeterministic rows and a loaded machine.
AZR_MIN_AGREEMENT = 240


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_rows_lines_and_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(
        tmp_path / "rows.jsonl",
        [
            {"code": "def f(a, b):\n    return a + b", "input": "1, 2", "output": "3"},
            {
                "snippet": "def f(x):\n    return math.sqrt(x)",
                "imports": ["import math"],
                "input": "4",
                "output": "2.0",
            },
            {"code": "def f(x):\n    return x", "input": "1", "output": "2"},
            {"code": "import os\ndef f():\n    return 1", "input": "", "output": "1"},
            {"code": "def f():\n    return 1 / 0", "input": "", "output": "1"},
        ],
    )
    assert main([str(data)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["index"], r["status"], r["passed"]) for r in lines[:-1]] == [
        (0, "ok", True),
        (1, "ok", True),
        (2, "ok", False),
        (3, "rejected", False),
        (4, "error", False),
    ]
    assert lines[1]["got"] == "2.0"
    totals = lines[-1]
    assert (totals["rows"], totals["passed"], totals["failed"]) == (5, 2, 3)
    assert totals["status_counts"] == {"error": 1, "ok": 3, "rejected": 1}
    assert totals["seconds"] >= 0


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "line 2: invalid JSON"),
        ('{"input": "1", "output": "1"}', "line 2: missing string field 'code'"),
        ('{"code": "x", "output": "1"}', "line 2: missing string field 'input'"),
        ('{"code": "x", "input": "1", "output": "1", "imports": "math"}', "line 2: 'imports'"),
        ("[1, 2]", "line 2: row must be a JSON object"),
    ],
)
def test_malformed_row_exits_2_with_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, needle: str
) -> None:
    data = _write(tmp_path / "bad.jsonl", [{"code": "def f():\n    return 1", "input": "", "output": "1"}, line])
    assert main([str(data)]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and captured.out == ""


def test_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_azr_seed_replay_through_cli(shared_data: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from flywheel.train.cli import main; sys.exit(main())",
            "verify",
            "code",
            str(shared_data / "azr_7b_coder_seed_io.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    totals = lines[-1]
    assert totals["rows"] == 256 == len(lines) - 1
    assert totals["passed"] >= AZR_MIN_AGREEMENT, totals


def test_expression_inputs_run_in_the_program_globals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CRUXEval/AZR-style argument texts that are expressions, evaluated inside the sandbox."""
    program = "LIMIT = [5, 6, 7]\ndef f(a, b=None):\n    return [a, b(1) if callable(b) else b]"
    rows = [
        ("dict(a=1)", "[{'a': 1}, None]"),
        ("'abc'.upper()", "['ABC', None]"),
        ("[1] * 3, b=2", "[[1, 1, 1], 2]"),
        ("list(range(100, 103))", "[[100, 101, 102], None]"),
        ("0, lambda x: x < 2", "[0, True]"),
        ("LIMIT[1:]", "[[6, 7], None]"),
        ("{1: 2}.items()", "[dict_items([(1, 2)]), None]"),
        ("range(3)", "[range(0, 3), None]"),
        ("1)(2", "[1, None]"),  # not one argument list: bad input, never run
        ("__import__('os')", "[1, None]"),  # the static check covers inputs too
    ]
    data = _write(tmp_path / "expr.jsonl", [{"code": program, "input": i, "output": o} for i, o in rows])
    assert main([str(data)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["passed"] for r in lines[:-1]] == [True] * 8 + [False, False]
    assert lines[8]["got"].startswith("bad input") and lines[9]["status"] == "rejected"


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--timeout", "inf"], "--timeout"),
        (["--timeout", "1e308"], "--timeout"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-1"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--workers", "0"], "--workers"),
        (["--workers", "-3"], "--workers"),
        (["--rel-tol", "-1"], "--rel-tol"),
        (["--allow-import", "numpy"], "only standard-library modules"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list, needle: str) -> None:
    data = _write(tmp_path / "rows.jsonl", [{"code": "def f():\n    return 1", "input": "", "output": "1"}])
    assert main([str(data), *options]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and captured.out == ""


def test_comparison_and_import_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"code": "def f():\n    return 1", "input": "", "output": "1.0"},
        {"code": "def f():\n    return 0.1", "input": "", "output": "0.11"},
        {
            "code": "import hashlib\ndef f():\n    return hashlib.md5(b'').hexdigest()[:4]",
            "input": "",
            "output": "'d41d'",
        },
    ]
    data = _write(tmp_path / "rows.jsonl", rows)
    assert main([str(data)]) == 0
    assert [json.loads(x)["passed"] for x in capsys.readouterr().out.splitlines()[:-1]] == [False, False, False]
    assert main([str(data), "--no-strict-types", "--abs-tol", "0.02", "--allow-import", "hashlib"]) == 0
    assert [json.loads(x)["passed"] for x in capsys.readouterr().out.splitlines()[:-1]] == [True, True, True]


def test_help_lists_every_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--timeout", "--workers", "--rel-tol", "--abs-tol", "--strict-types", "--allow-import"):
        assert option in text
    assert "(default: 2.0)" in text and "(default: 1e-09)" in text
