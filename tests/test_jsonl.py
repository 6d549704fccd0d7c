"""JSONL rows for `flywheel verify code|math`: nesting and size limits, with the line number and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flywheel.train.cli import main as flywheel
from flywheel.verifiers.jsonl import MAX_DEPTH, read_objects

GOOD_ROW = json.dumps({"gold": "1", "prediction": "1", "code": "def f(x):\n    return x", "input": "1", "output": "1"})


def _nested(levels: int) -> str:
    """A row whose `extra` field nests lists so that the row is `levels` deep (the row itself is level 1)."""
    return '{"extra": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


@pytest.mark.parametrize("kind", ["code", "math"])
@pytest.mark.parametrize("bomb", ["[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000])
def test_deeply_nested_row_is_exit_2_with_line_number(tmp_path: Path, capsys, kind: str, bomb: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(f"{GOOD_ROW}\n\n{bomb}\n")
    assert flywheel(["verify", kind, str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and f"nested deeper than {MAX_DEPTH} levels" in err and "Traceback" not in err


def test_nesting_limit_is_exact(tmp_path: Path) -> None:
    """Nesting the C decoder still handles (under the recursion limit) is refused past MAX_DEPTH too."""
    path = tmp_path / "rows.jsonl"
    path.write_text(_nested(MAX_DEPTH) + "\n")
    assert [line for line, _ in read_objects(str(path))] == [1]
    path.write_text(_nested(MAX_DEPTH + 1) + "\n")
    with pytest.raises(ValueError, match=f"line 1: JSON nested deeper than {MAX_DEPTH} levels"):
        read_objects(str(path))
    path.write_text(_nested(500) + "\n")
    with pytest.raises(ValueError, match="line 1: JSON nested deeper"):
        read_objects(str(path))


def test_long_row_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(GOOD_ROW + "\n" + json.dumps({"gold": "1", "prediction": "x" * 5000}) + "\n")
    assert len(read_objects(str(path))) == 2
    with pytest.raises(ValueError, match="line 2: row longer than 1,000 characters"):
        read_objects(str(path), max_row_chars=1000)


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(f"\n{GOOD_ROW}\n   \n{GOOD_ROW}\n[1]\n")
    with pytest.raises(ValueError, match="line 5: row must be a JSON object"):
        read_objects(str(path))
    path.write_text(f"\n{GOOD_ROW}\n   \n{GOOD_ROW}")
    assert [line for line, _ in read_objects(str(path))] == [2, 4]
