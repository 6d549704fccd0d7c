"""Reading the JSONL datasets that `flywheel verify` takes."""

from __future__ import annotations

import json
from typing import Any

MAX_ROW_CHARS = 64 << 20  # a longer line is refused before it is read whole or decoded
MAX_DEPTH = 100  # rows are flat records; deeper nesting would also strain every recursive consumer


def read_objects(path: str, max_row_chars: int = MAX_ROW_CHARS) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line. Raises OSError/UnicodeDecodeError when the file
    cannot be read, ValueError naming the first line that is too long, too deeply nested or not a JSON object."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        line_no = 0
        while line := handle.readline(max_row_chars + 1):
            line_no += 1
            if len(line) > max_row_chars:
                raise ValueError(f"line {line_no}: row longer than {max_row_chars:,} characters")
            if line.strip():
                rows.append((line_no, _decode(line, line_no)))
    return rows


def _decode(line: str, line_no: int) -> dict[str, Any]:
    too_deep = ValueError(f"line {line_no}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {line_no}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise too_deep from None
    if not isinstance(obj, dict):
        raise ValueError(f"line {line_no}: row must be a JSON object")
    if line.count("[") + line.count("{") > MAX_DEPTH and _deeper_than(obj, MAX_DEPTH):
        raise too_deep
    return obj


def _deeper_than(row: dict[str, Any], limit: int) -> bool:
    """Whether decoded JSON nests lists/objects more than `limit` levels (the row itself is level 1)."""
    stack: list[tuple[dict | list, int]] = [(row, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False
