"""The self-play game state and rules, independent of TRL: buffers, prompts, rewards, audit ledger.

`SelfPlay` holds what a run accumulates besides the weights: one task buffer per family (in a
`TaskStore` SQLite file inside the run directory), the RNG that picks references and solver tasks,
and the self-play step counter. The trainer (`flywheel.train.trainer`) does the generation and scores
through `flywheel.envs.scoring`; this module decides what to ask (AZR's Algorithm 1) and keeps the ledger.

In a multi-process run only the main process holds the store (`SelfPlay(..., store)`); every other process
holds a follower (`SelfPlay(..., None)`): the same families, rewards and step counter, and no store, buffers,
gates or ledger: using them raises `NoStoreError`, so a follower can never open or write the SQLite file.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from flywheel.envs.base import Prompt, Task, TaskFamily
from flywheel.envs.buffer import AddResult, TaskBuffer, TaskStore, load_azr_seeds
from flywheel.envs.gate import Gate
from flywheel.envs.rails import RAILS_FILE, Rails
from flywheel.envs.rewards import RewardConfig
from flywheel.envs.scoring import Answer, Proposal

STORE_FILE = "tasks.sqlite"
STATE_FILE = "selfplay_state.json"


class NoStoreError(RuntimeError):
    """A follower (a non-main process of a multi-process run) was asked for the task store, which only the main
    process holds."""


class SelfPlay:
    """Buffers, reference sampling, rewards and the ledger for a set of families."""

    def __init__(
        self,
        families: Mapping[str, TaskFamily],
        store: TaskStore | None,
        rewards: RewardConfig,
        *,
        buffer_capacity: int,
        k_references: int,
        seed: int,
        rails: Rails | None = None,
    ) -> None:
        """`rails` (default: the default rails) are recorded in the store, on every ledger row and in every
        checkpoint; the families should have been made with the same rails. `store` None makes a follower (the
        game of a non-main process), which has no store, buffers, gates or ledger."""
        self.families = dict(families)
        self._store = store
        self.rewards = rewards
        self.rails = rails if rails is not None else Rails()
        self.k_references = k_references
        self._buffers: dict[str, TaskBuffer] = {}
        self._gates: dict[str, Gate] = {}
        if store is not None:
            store.set_rails(self.rails.digest(), self.rails.to_dict())
            store.set_family_configs({name: family.config.to_dict() for name, family in self.families.items()})
            self._buffers = {name: store.buffer(name, buffer_capacity) for name in self.families}
            self._gates = {name: Gate(family, self._buffers[name]) for name, family in self.families.items()}
        self.rng = random.Random(seed)
        self.step = 0

    @property
    def holds_store(self) -> bool:
        """Whether this game holds the task store (the main process's game), not a follower."""
        return self._store is not None

    @property
    def store(self) -> TaskStore:
        """The task store (buffers and ledger); `NoStoreError` in a follower."""
        self._require_store()
        return self._store  # type: ignore[return-value]

    @property
    def buffers(self) -> dict[str, TaskBuffer]:
        """Per family, its buffer in the store; `NoStoreError` in a follower."""
        self._require_store()
        return self._buffers

    @property
    def gates(self) -> dict[str, Gate]:
        """Per family, the data gate over its buffer; `NoStoreError` in a follower."""
        self._require_store()
        return self._gates

    def _require_store(self) -> None:
        if self._store is None:
            raise NoStoreError("only the main process holds the task store; this process's game is a follower")

    # --- buffers ----------------------------------------------------------------------------------
    def seed_buffers(self, seed_files: Sequence[str] = ()) -> dict[str, AddResult]:
        """Put each family's zero-data seeds (and FAMILY=PATH seed files) into empty buffers."""
        extra: dict[str, list[Task]] = {name: [] for name in self.families}
        for entry in seed_files:
            name, _, path = entry.partition("=")
            extra[name] += load_azr_seeds(path, self.families[name])
        results = {}
        for name, family in self.families.items():
            if len(self.buffers[name]) == 0:
                results[name] = self.buffers[name].add([*family.seed_tasks(), *extra[name]], step=0)
        return results

    def proposer_prompts(self, name: str, count: int) -> list[Prompt]:
        """`count` proposer prompts, each showing K references sampled from the family's buffer."""
        family, buffer = self.families[name], self.buffers[name]
        return [family.proposer_prompt(buffer.sample(self.k_references, self.rng), self.rng) for _ in range(count)]

    def solver_tasks(self, name: str, count: int, fresh: int) -> list[Task]:
        """`count` tasks for the solver: the `fresh` tasks just added (newest first), then random buffer tasks.

        A buffer smaller than `count` is sampled with repetition so the batch keeps its size.
        """
        buffer = self.buffers[name]
        tasks = buffer.newest(min(fresh, count))
        chosen = {task.task_id for task in tasks}
        pool = [task for task in buffer.sample(count, self.rng) if task.task_id not in chosen]
        tasks += pool[: count - len(tasks)]
        everything = tasks or buffer.sample(count, self.rng)
        while len(tasks) < count:
            tasks.append(self.rng.choice(everything))
        return tasks

    # --- audit ledger -----------------------------------------------------------------------------
    def record_proposals(self, proposals: Sequence[Proposal]) -> None:
        store = self.store
        for proposal in proposals:
            if proposal.task is not None:
                task = proposal.task
                result: dict[str, Any] = {"valid": True, "task_id": task.task_id, "task": task.to_json()}
            else:
                result = {"valid": False, "reason": proposal.result.reason, "detail": proposal.result.detail}
            result.update(solve_rate=proposal.solve_rate, reward=proposal.reward)
            store.record(self.step, "propose", proposal.family, proposal.prompt.text, proposal.text, result)

    def record_answers(self, answers: Sequence[Answer], role: str) -> None:
        """`role` is ``solve`` for trained answers and ``estimate`` for solve-rate samples."""
        store = self.store
        for answer in answers:
            result = {
                "task_id": answer.task.task_id,
                "status": answer.verdict.status,
                "reason": answer.verdict.reason,
                "reward": answer.reward,
            }
            store.record(self.step, role, answer.family, answer.prompt.text, answer.text, result)

    def close(self) -> None:
        """Close the task store (if held) and the verifier processes the families share."""
        if self._store is not None:
            self._store.close()
        for family in self.families.values():
            family.verifiers.close()

    # --- checkpoints ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write the counters, the RNG state and a verified copy of the task store into `directory`."""
        store = self.store
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "rng": _jsonable_rng(self.rng.getstate())}
        (directory / STATE_FILE).write_text(json.dumps(state) + "\n")
        (directory / RAILS_FILE).write_text(self.rails.to_json())
        copy_database(store.path, directory / STORE_FILE)

    def load_state(self, directory: str | Path) -> None:
        """Restore the counters and RNG written by `save` (the store is restored before it is opened)."""
        state = json.loads((Path(directory) / STATE_FILE).read_text())
        self.step = int(state["step"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


class StoreCopyError(RuntimeError):
    """A task store copy that is missing, unreadable or differs from its source."""


def copy_database(source: str | Path, target: str | Path) -> None:
    """Copy an SQLite database into the new file `target` with the backup API (consistent even while
    `source` is open), then check the copy (`quick_check`, same row counts) and flush it to disk.

    A missing `source` is an error, never an empty database; `target` must not exist yet.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise StoreCopyError(f"task store {source} does not exist")
    if target.exists():
        raise FileExistsError(f"{target} exists; a store is copied into a new file only")
    try:
        with (
            closing(sqlite3.connect(str(source))) as src,
            closing(sqlite3.connect(str(target))) as dst,
        ):
            src.backup(dst)
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok" or _row_counts(src) != _row_counts(dst):
                raise StoreCopyError(f"the copy of {source} does not match it ({check})")
    except sqlite3.Error as error:
        raise StoreCopyError(f"cannot copy task store {source}: {error}") from error
    with open(target, "rb") as stream:
        os.fsync(stream.fileno())


def restore_store(copy: str | Path, live: str | Path) -> None:
    """Replace the live store `live` by the checkpoint's `copy`; the live store is untouched until a verified
    copy of `copy` is on disk, and is then replaced in one rename."""
    live = Path(live)
    partial = live.with_name(f"{live.name}.restoring")
    partial.unlink(missing_ok=True)
    try:
        copy_database(copy, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    # A journal left by a killed writer belongs to the old file and must not be replayed into the new one.
    for suffix in ("-journal", "-wal", "-shm"):
        live.with_name(live.name + suffix).unlink(missing_ok=True)
    os.replace(partial, live)


def _row_counts(db: sqlite3.Connection) -> list[tuple[str, int]]:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return [(table, db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]) for table in tables]


def _jsonable_rng(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]
