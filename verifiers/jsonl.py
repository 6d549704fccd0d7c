"""Reading the JSONL datasets that `flywheel verify` takes."""

from __future__ import annotations

import json
from typing import Any


def read_objects(path: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line. Raises OSError/UnicodeDecodeError when the file
    cannot be read, ValueError naming the first line that is not a JSON object."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {line_no}: invalid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"line {line_no}: row must be a JSON object")
            rows.append((line_no, obj))
    return rows
