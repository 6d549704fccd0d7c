"""`flywheel verify math FILE.jsonl` (flywheel.verifiers.math_dataset.main)."""

from __future__ import annotations

import json
import re

import pytest
from flywheel.verifiers.math_dataset import main, parser


def test_verify_file(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    rows = [
        {"gold": "\\frac{1}{2}", "prediction": "0.5"},
        {"answer": "3", "prediction": "4"},
        {"gold": "3", "prediction": "3 +"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main([str(path), "--workers", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["verdict"] for line in lines[:3]] == ["equal", "not_equal", "parse_error"]
    assert [line["index"] for line in lines[:3]] == [0, 1, 2] and all(line["reason"] for line in lines[:3])
    totals = lines[3]
    assert totals["rows"] == 3 and totals["equal"] == 1 and totals["not_equal"] == 1
    assert totals["parse_error"] == 1 and totals["timeout"] == 0 and totals["seconds"] >= 0


def test_unreadable_file(tmp_path, capsys):
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_malformed_row_reports_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"gold": "1", "prediction": "1"}\n{"gold": "1"}\n')
    assert main([str(path)]) == 2
    assert "line 2" in capsys.readouterr().err
    path.write_text('{"gold": "1", "prediction": "1"}\nnot json\n')
    assert main([str(path)]) == 2
    assert "line 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--timeout", "inf"),
        ("--timeout", "1e308"),
        ("--timeout", "0"),
        ("--timeout", "-1"),
        ("--timeout", "nan"),
        ("--timeout", "soon"),
        ("--workers", "0"),
        ("--workers", "-3"),
        ("--workers", "1000"),
        ("--workers", "2.5"),
        ("--rel-tol", "nan"),
        ("--rel-tol", "2"),
        ("--abs-tol", "-1"),
        ("--abs-tol", "inf"),
    ],
)
def test_bad_option_values_exit_2_before_reading(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "never-read.jsonl"), option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err and "Traceback" not in err


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    options = [a for a in parser()._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} == {"workers", "timeout", "rel_tol", "abs_tol"}
    for action in options:
        assert re.search(rf"{action.option_strings[0]} \S+ [^-]*\(default: {re.escape(str(action.default))}\)", text)


def test_options_reach_the_checker(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"gold": "1/3", "prediction": "0.333"}) + "\n")
    assert main([str(path), "--workers", "1", "--timeout", "5"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["verdict"] == "not_equal"
    assert main([str(path), "--workers", "1", "--rel-tol", "0.01"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["verdict"] == "equal"
