"""`flywheel verify math FILE.jsonl` (flywheel.verifiers.math_dataset.main)."""

from __future__ import annotations

import json

from flywheel.verifiers.math_dataset import main


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
