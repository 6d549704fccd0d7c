"""Reading task files (JSONL, optionally gzipped) into `Task`s, for `flywheel eval`, held-out sets and real data.

Each row is recognised by its fields:

* **Flywheel task rows** (``family``, ``payload``, ``task_id``: what `Task.to_json` writes and the task store
  holds) are used as they are; the family must be registered.
* **Code rows**, CRUXEval / AZR style (``code`` or ``snippet``, ``input``, ``output``, optional ``imports``),
  become ``code_deduction`` tasks (predict the output) or, with ``mode="abduction"``, ``code_abduction``
  tasks (find an input, checked by running the function). The program runs in the family's sandbox, as a
  proposal would (static check, outputs, determinism), and the row's ``output`` is then verified as an
  answer to the task by the family, so the row and the sandbox must agree.
* **MATH-style rows** (``problem``, ``answer``; a ``solution`` is never shown) and **GSM8K rows**
  (``question``, ``answer`` whose last line is ``#### N``; thousands separators are dropped from N) become
  ``math_answer`` tasks, checked by the math checker against the answer.

A row that is not JSON, not an object, or not one of these kinds raises `TaskFileError` naming the file and
line. A well-formed row that its family does not accept (the program times out or is nondeterministic, the
row's output is not what the program returns, the checker cannot read the answer) is an `UnusableRow`:
`load_task_file` returns them beside the tasks, and `read_task_file` warns about them, with their lines.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.envs.base import Rejection, Task, TaskFamily
from flywheel.envs.parsing import format_answer
from flywheel.envs.registry import family_names, make_family
from flywheel.envs.resources import SharedVerifiers

CODE_MODES = {"deduction": "code_deduction", "abduction": "code_abduction"}
"""``mode`` -> the family code rows become."""
ANSWER_FAMILY = "math_answer"


class TaskFileError(ValueError):
    """A task file that cannot be read; the message names the file and, for a bad row, its line."""


@dataclass(frozen=True)
class UnusableRow:
    """A well-formed row that its family did not accept as a task."""

    line: int
    reason: str


@dataclass
class TaskFile:
    """The tasks of one file, the line each came from, and the rows that could not be used."""

    path: str
    tasks: list[Task] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    unusable: list[UnusableRow] = field(default_factory=list)


def read_task_file(
    path: str | Path, *, mode: str = "deduction", verifiers: SharedVerifiers | None = None, limit: int | None = None
) -> list[Task]:
    """The tasks of a task file; unusable rows are reported with a warning. See `load_task_file`."""
    loaded = load_task_file(path, mode=mode, verifiers=verifiers, limit=limit)
    if loaded.unusable:
        shown = "; ".join(f"line {row.line}: {row.reason}" for row in loaded.unusable[:5])
        more = f" (and {len(loaded.unusable) - 5} more)" if len(loaded.unusable) > 5 else ""
        warnings.warn(f"{path}: {len(loaded.unusable)} rows unusable: {shown}{more}", stacklevel=2)
    return loaded.tasks


def load_task_file(
    path: str | Path, *, mode: str = "deduction", verifiers: SharedVerifiers | None = None, limit: int | None = None
) -> TaskFile:
    """Read and build the tasks of `path` (the first `limit` rows when given), in file order.

    `mode` (``deduction`` or ``abduction``) applies to code rows. Code rows run in `verifiers`' sandbox and
    answer rows go through its math checker (fresh verifiers, closed afterwards, when None). Raises
    `TaskFileError` for a file that cannot be read or a malformed row, `ValueError` for an unknown mode.
    """
    if mode not in CODE_MODES:
        raise ValueError(f"mode must be one of {sorted(CODE_MODES)}, not {mode!r}")
    pending: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    ready: list[tuple[int, Task]] = []
    for line, row in _rows(Path(path), limit):
        kind = _kind(row, line, path)
        if kind == "task":
            ready.append((line, _flywheel_task(row, line, path)))
        else:
            pending.setdefault(kind, []).append((line, _proposal(kind, row, line, path)))
    loaded = TaskFile(str(path))
    own = verifiers is None
    shared = SharedVerifiers() if own else verifiers
    try:
        built = ready + _build(pending.get("code", []), mode, shared, loaded.unusable)
        built += _build_answers(pending.get("answer", []), shared, loaded.unusable)
    finally:
        if own:
            shared.close()
    for line, task in sorted(built, key=lambda item: item[0]):
        loaded.lines.append(line)
        loaded.tasks.append(task)
    loaded.unusable.sort(key=lambda row: row.line)
    return loaded


# ------------------------------------------------------------------------------------------- rows


def _rows(path: Path, limit: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            count = 0
            for line, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                if limit is not None and count >= limit:
                    return
                count += 1
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as error:
                    raise TaskFileError(f"{path} line {line}: invalid JSON: {error.msg}") from None
                if not isinstance(row, dict):
                    raise TaskFileError(f"{path} line {line}: a row must be a JSON object")
                yield line, row
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise TaskFileError(f"{path}: cannot read: {error}") from None


def _kind(row: Mapping[str, Any], line: int, path: str | Path) -> str:
    if "family" in row:
        return "task"
    if "code" in row or "snippet" in row:
        return "code"
    if "answer" in row and ("problem" in row or "question" in row):
        return "answer"
    raise TaskFileError(
        f"{path} line {line}: unrecognised row with fields {sorted(row)[:8]}; expected a Flywheel task "
        "(family, payload, task_id), a code row (code or snippet, input, output), a MATH row (problem, answer) "
        "or a GSM8K row (question, answer)"
    )


def _flywheel_task(row: Mapping[str, Any], line: int, path: str | Path) -> Task:
    family, payload, task_id = row.get("family"), row.get("payload"), row.get("task_id")
    if not isinstance(payload, dict) or not isinstance(task_id, str):
        raise TaskFileError(f"{path} line {line}: a task row needs a payload object and a task_id text")
    if family not in family_names():
        raise TaskFileError(f"{path} line {line}: unknown family {family!r}; registered: {', '.join(family_names())}")
    return Task(family=family, payload=payload, task_id=task_id)


def _text(row: Mapping[str, Any], key: str, line: int, path: str | Path) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise TaskFileError(f"{path} line {line}: missing text field {key!r}")
    return value


def _proposal(kind: str, row: Mapping[str, Any], line: int, path: str | Path) -> dict[str, str]:
    """The proposal a row amounts to (what the family validates), the row's claimed gold under ``gold``."""
    if kind == "code":
        code = row["code"] if "code" in row else row["snippet"]
        imports = row.get("imports") or []
        if not isinstance(code, str):
            raise TaskFileError(f"{path} line {line}: 'code' (or 'snippet') must be text")
        if not isinstance(imports, list) or not all(isinstance(item, str) for item in imports):
            raise TaskFileError(f"{path} line {line}: 'imports' must be a list of import lines")
        program = "\n".join([*(item.strip() for item in imports), code]).strip("\n")
        return {"program": program, "input": _text(row, "input", line, path), "gold": _text(row, "output", line, path)}
    if "problem" in row:
        return {"problem": _text(row, "problem", line, path), "answer": _text(row, "answer", line, path)}
    question, answer = _text(row, "question", line, path), _text(row, "answer", line, path)
    if "####" in answer:
        answer = answer.rsplit("####", 1)[1].strip().replace(",", "")
    elif "\n" in answer.strip():
        raise TaskFileError(f"{path} line {line}: the answer has several lines and no final '#### N' line")
    return {"problem": question, "answer": answer}


# ------------------------------------------------------------------------------------------- tasks


def _build(
    rows: list[tuple[int, dict[str, str]]], mode: str, verifiers: SharedVerifiers, unusable: list[UnusableRow]
) -> list[tuple[int, Task]]:
    """Code rows: validated as code_deduction proposals (the sandbox computes the output), then the row's
    output is verified as an answer; abduction tasks share the deduction payload."""
    if not rows:
        return []
    deduction = make_family("code_deduction", None, verifiers)
    results = deduction.validate_proposals([row for _, row in rows])
    accepted = [(line, row, task) for (line, row), task in zip(rows, results, strict=True) if isinstance(task, Task)]
    for (line, _), result in zip(rows, results, strict=True):
        if isinstance(result, Rejection):
            unusable.append(UnusableRow(line, f"{result.reason}: {result.detail}"[:300]))
    verdicts = deduction.verify([task for *_, task in accepted], [_output_answer(row) for _, row, _ in accepted])
    target = make_family(CODE_MODES[mode], None, verifiers) if mode != "deduction" else deduction
    built = []
    for (line, row, task), verdict in zip(accepted, verdicts, strict=True):
        if verdict.correct:
            built.append((line, task if target is deduction else target.make_task(task.payload)))
        else:
            reason = f"the row's output {row['gold'][:80]!r} is not what f returns ({task.payload['output'][:80]!r})"
            unusable.append(UnusableRow(line, f"{verdict.status}: {reason}"))
    return built


def _output_answer(row: Mapping[str, str]) -> str:
    return format_answer(("output", row["gold"]))


def _build_answers(
    rows: list[tuple[int, dict[str, str]]], verifiers: SharedVerifiers, unusable: list[UnusableRow]
) -> list[tuple[int, Task]]:
    if not rows:
        return []
    family: TaskFamily = make_family(ANSWER_FAMILY, None, verifiers)
    built = []
    for (line, _), result in zip(rows, family.validate_proposals([row for _, row in rows]), strict=True):
        if isinstance(result, Task):
            built.append((line, result))
        else:
            unusable.append(UnusableRow(line, f"{result.reason}: {result.detail}"[:300]))
    return built
