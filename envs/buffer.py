"""Task buffers and the audit ledger, persisted in one SQLite file (":memory:" for throwaway runs).

A `TaskStore` holds one bounded, deduplicated `TaskBuffer` per family (tasks stored as `Task.to_json()`,
never pickled) and the ledger: every generated proposal and answer with its verdict, for audits.
Re-opening a store on the same path gives back the same buffers and ledger.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.envs.base import Rejection, Task, TaskFamily

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    family TEXT NOT NULL,
    task_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    task TEXT NOT NULL,
    UNIQUE (family, task_id)
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    step INTEGER NOT NULL,
    role TEXT NOT NULL,
    family TEXT NOT NULL,
    prompt TEXT NOT NULL,
    output TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_family ON ledger (family, seq);
"""


@dataclass(frozen=True)
class AddResult:
    added: int
    duplicates: int


class TaskStore:
    """One SQLite database holding every family's buffer and the ledger."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def buffer(self, family: str, capacity: int) -> TaskBuffer:
        """The buffer of `family`, holding at most `capacity` tasks (the oldest are evicted)."""
        return TaskBuffer(self, family, capacity)

    def record(self, step: int, role: str, family: str, prompt: str, output: str, result: Mapping[str, Any]) -> None:
        """Append one generated proposal or answer and its verdict (`result`, JSON-serialisable) to the ledger."""
        row = (time.time(), int(step), role, family, prompt, output, json.dumps(dict(result), sort_keys=True))
        self._db.execute(
            "INSERT INTO ledger (time, step, role, family, prompt, output, result) VALUES (?, ?, ?, ?, ?, ?, ?)", row
        )
        self._db.commit()

    def ledger(self, family: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows in insertion order, optionally for one family."""
        query = "SELECT time, step, role, family, prompt, output, result FROM ledger"
        rows = self._db.execute(
            query + (" WHERE family = ? ORDER BY seq" if family is not None else " ORDER BY seq"),
            (family,) if family is not None else (),
        ).fetchall()
        keys = ("time", "step", "role", "family", "prompt", "output")
        return [{**dict(zip(keys, row[:6], strict=True)), "result": json.loads(row[6])} for row in rows]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TaskBuffer:
    """A bounded set of one family's tasks, deduplicated by task id (a hash of the family's dedup key)."""

    def __init__(self, store: TaskStore, family: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, not {capacity}")
        self.store = store
        self.family = family
        self.capacity = capacity
        self._evict()

    @property
    def _db(self) -> sqlite3.Connection:
        return self.store._db

    def add(self, tasks: Iterable[Task], step: int = 0) -> AddResult:
        """Insert new tasks (duplicates of stored ones or of each other are counted, not stored)."""
        added = duplicates = 0
        for task in tasks:
            if task.family != self.family:
                raise ValueError(f"task of family {task.family!r} added to the {self.family!r} buffer")
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO tasks (family, task_id, step, task) VALUES (?, ?, ?, ?)",
                (self.family, task.task_id, int(step), task.to_json()),
            )
            added += cursor.rowcount
            duplicates += 1 - cursor.rowcount
        self._evict()
        return AddResult(added=added, duplicates=duplicates)

    def _evict(self) -> None:
        self._db.execute(
            "DELETE FROM tasks WHERE family = ? AND seq NOT IN "
            "(SELECT seq FROM tasks WHERE family = ? ORDER BY seq DESC LIMIT ?)",
            (self.family, self.family, self.capacity),
        )
        self._db.commit()

    def _rows(self, seqs: Sequence[int]) -> list[Task]:
        marks = ",".join("?" * len(seqs))
        rows = dict(self._db.execute(f"SELECT seq, task FROM tasks WHERE seq IN ({marks})", tuple(seqs)).fetchall())
        return [Task.from_json(rows[seq]) for seq in seqs]

    def sample(self, k: int, rng: random.Random) -> list[Task]:
        """`k` distinct tasks drawn uniformly with `rng` (all of them, shuffled, when fewer are stored)."""
        seqs = [
            row[0] for row in self._db.execute("SELECT seq FROM tasks WHERE family = ? ORDER BY seq", (self.family,))
        ]
        return self._rows(rng.sample(seqs, min(k, len(seqs)))) if seqs else []

    def newest(self, n: int) -> list[Task]:
        """The `n` most recently added tasks, newest first."""
        rows = self._db.execute(
            "SELECT task FROM tasks WHERE family = ? ORDER BY seq DESC LIMIT ?", (self.family, n)
        ).fetchall()
        return [Task.from_json(row[0]) for row in rows]

    def all(self) -> list[Task]:
        """Every stored task, oldest first."""
        rows = self._db.execute("SELECT task FROM tasks WHERE family = ? ORDER BY seq", (self.family,)).fetchall()
        return [Task.from_json(row[0]) for row in rows]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM tasks WHERE family = ?", (self.family,)).fetchone()[0]


def load_azr_seeds(path: str | Path, family: TaskFamily, limit: int | None = None) -> list[Task]:
    """Tasks from AZR's seed files, validated through `family` (its sandbox), never trusted.

    Reads ``azr_*_seed_io.jsonl`` rows (snippet, input, output, imports) for deduction and abduction, and
    ``azr_*_code_f_seed_io.jsonl`` rows (snippet, inputs, outputs, message, imports) for induction; rows of
    the other format, and rows the family rejects, are skipped. `limit` reads only the first rows.
    """
    to_proposal = getattr(family, "proposal_from_azr", None)
    if to_proposal is None:
        raise TypeError(f"family {family.name!r} cannot read AZR seed files")
    proposals = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if limit is not None and number >= limit:
                break
            if line.strip():
                proposal = to_proposal(json.loads(line))
                if proposal is not None:
                    proposals.append(proposal)
    return [item for item in family.validate_proposals(proposals) if not isinstance(item, Rejection)]
