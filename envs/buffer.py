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
from collections import Counter
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
CREATE TABLE IF NOT EXISTS rails (
    digest TEXT PRIMARY KEY,
    time REAL NOT NULL,
    rails TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS families (
    family TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
"""
_ADDED_COLUMNS = (("tasks", "structure", "TEXT"), ("ledger", "rails", "TEXT NOT NULL DEFAULT ''"))
"""Columns newer than the first schema, added to stores written before them."""
BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another one's write lock before failing."""


@dataclass(frozen=True)
class AddResult:
    added: int
    duplicates: int


class TaskStore:
    """One SQLite database holding every family's buffer and the ledger."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """Open the store at `path` (":memory:" for a throwaway one); with ``create=False`` a missing file is
        an error (`FileNotFoundError`) instead of a new, empty store."""
        self.path = str(path)
        if not create and self.path != ":memory:" and not Path(self.path).is_file():
            raise FileNotFoundError(f"task store {self.path} does not exist")
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        if self.path != ":memory:":
            # Readers (`flywheel ledger` on a live run) never block the writer, nor it them.
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        for table, column, declaration in _ADDED_COLUMNS:
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        self._db.execute("CREATE INDEX IF NOT EXISTS tasks_structure ON tasks (family, structure)")
        self._db.commit()
        self.rails_digest = ""
        """The digest of the rails the store's writer runs under, written on every ledger row (`set_rails`)."""

    def buffer(self, family: str, capacity: int) -> TaskBuffer:
        """The buffer of `family`, holding at most `capacity` tasks (the oldest are evicted)."""
        return TaskBuffer(self, family, capacity)

    def set_rails(self, digest: str, rails: Mapping[str, Any]) -> None:
        """Record the rails (`flywheel.envs.rails.Rails.to_dict()`) the writer runs under; later ledger rows
        carry `digest`."""
        self._db.execute(
            "INSERT OR IGNORE INTO rails (digest, time, rails) VALUES (?, ?, ?)",
            (digest, time.time(), json.dumps(dict(rails), sort_keys=True)),
        )
        self._db.commit()
        self.rails_digest = digest

    def set_family_configs(self, configs: Mapping[str, Mapping[str, Any]]) -> None:
        """Record each played family's settings (`FamilyConfig.to_dict()`), so the ledger can be re-verified."""
        self._db.executemany(
            "INSERT OR REPLACE INTO families (family, config) VALUES (?, ?)",
            [(name, json.dumps(dict(config), sort_keys=True)) for name, config in configs.items()],
        )
        self._db.commit()

    def record(self, step: int, role: str, family: str, prompt: str, output: str, result: Mapping[str, Any]) -> None:
        """Append one generated proposal or answer and its verdict (`result`, JSON-serialisable) to the ledger."""
        row = (
            time.time(),
            int(step),
            role,
            family,
            prompt,
            output,
            json.dumps(dict(result), sort_keys=True),
            self.rails_digest,
        )
        self._db.execute(
            "INSERT INTO ledger (time, step, role, family, prompt, output, result, rails) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        self._db.commit()

    def ledger(self, family: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows in insertion order, optionally for one family and one role."""
        chosen = [(column, value) for column, value in (("family", family), ("role", role)) if value is not None]
        where = " WHERE " + " AND ".join(f"{column} = ?" for column, _ in chosen) if chosen else ""
        query = f"SELECT time, step, role, family, prompt, output, result FROM ledger{where} ORDER BY seq"
        rows = self._db.execute(query, tuple(value for _, value in chosen)).fetchall()
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

    def add(self, tasks: Iterable[Task], step: int = 0, structures: Sequence[str] | None = None) -> AddResult:
        """Insert new tasks (duplicates of stored ones or of each other are counted, not stored). `structures`
        gives each task's structure key (`TaskFamily.structure_key`; None for seeds, which no quota counts)."""
        tasks = list(tasks)
        keys: Sequence[str | None] = [None] * len(tasks) if structures is None else structures
        added = duplicates = 0
        for task, structure in zip(tasks, keys, strict=True):
            if task.family != self.family:
                raise ValueError(f"task of family {task.family!r} added to the {self.family!r} buffer")
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO tasks (family, task_id, step, task, structure) VALUES (?, ?, ?, ?, ?)",
                (self.family, task.task_id, int(step), task.to_json(), structure),
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

    def __contains__(self, task_id: object) -> bool:
        row = self._db.execute("SELECT 1 FROM tasks WHERE family = ? AND task_id = ?", (self.family, task_id))
        return row.fetchone() is not None

    def structure_counts(self, newest: int | None = None) -> Counter[str]:
        """Stored tasks per structure key, over the whole buffer or its `newest` tasks with a key (seeds, stored
        without one, are left out)."""
        if newest is None:
            query = "SELECT structure, COUNT(*) FROM tasks WHERE family = ? AND structure NOT NULL GROUP BY structure"
            return Counter(dict(self._db.execute(query, (self.family,)).fetchall()))
        query = (
            "SELECT structure, COUNT(*) FROM (SELECT structure FROM tasks WHERE family = ? AND structure NOT NULL "
            "ORDER BY seq DESC LIMIT ?) GROUP BY structure"
        )
        return Counter(dict(self._db.execute(query, (self.family, newest)).fetchall()))

    def repeated_structures(self, step: int) -> int:
        """Tasks added at `step` whose structure key an older buffer task already has (near-duplicates)."""
        query = (
            "SELECT COUNT(*) FROM tasks AS t WHERE t.family = ? AND t.step = ? AND t.structure IS NOT NULL AND "
            "EXISTS (SELECT 1 FROM tasks AS u WHERE u.family = t.family AND u.structure = t.structure "
            "AND u.seq < t.seq)"
        )
        return self._db.execute(query, (self.family, int(step))).fetchone()[0]

    def structure_count(self, structure: str) -> int:
        """Stored tasks of one structure key (seeds, stored without one, are never counted)."""
        query = "SELECT COUNT(*) FROM tasks WHERE family = ? AND structure = ?"
        return self._db.execute(query, (self.family, structure)).fetchone()[0]


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
