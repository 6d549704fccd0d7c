"""The self-play game state and rules, independent of TRL: buffers, prompts, rewards, audit ledger.

`SelfPlay` holds what a run accumulates besides the weights: one task buffer per family (in a
`TaskStore` SQLite file inside the run directory), the RNG that picks references and solver tasks,
and the self-play step counter. The trainer (`flywheel.train.trainer`) does the generation; this module
decides what to ask and how to score it, following AZR's Algorithm 1.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.envs.base import Prompt, Rejection, Task, TaskFamily, Verdict
from flywheel.envs.buffer import AddResult, TaskStore, load_azr_seeds
from flywheel.envs.rewards import RewardConfig

STORE_FILE = "tasks.sqlite"
STATE_FILE = "selfplay_state.json"


@dataclass
class Proposal:
    """One proposer rollout: what was asked, what came back, and how it scored."""

    family: str
    prompt: Prompt
    text: str
    result: Task | Rejection
    solve_rate: float | None = None
    reward: float = 0.0
    complexity: int | None = None

    @property
    def task(self) -> Task | None:
        return self.result if isinstance(self.result, Task) else None


@dataclass
class Answer:
    """One solver rollout (trained) or estimation sample (not trained)."""

    family: str
    task: Task
    prompt: Prompt
    text: str
    verdict: Verdict
    reward: float


class SelfPlay:
    """Buffers, reference sampling, rewards and the ledger for a set of families."""

    def __init__(
        self,
        families: Mapping[str, TaskFamily],
        store: TaskStore,
        rewards: RewardConfig,
        *,
        buffer_capacity: int,
        k_references: int,
        seed: int,
    ) -> None:
        self.families = dict(families)
        self.store = store
        self.rewards = rewards
        self.k_references = k_references
        self.buffers = {name: store.buffer(name, buffer_capacity) for name in self.families}
        self.rng = random.Random(seed)
        self.step = 0

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

    def add_tasks(self, name: str, tasks: Sequence[Task]) -> AddResult:
        return self.buffers[name].add(tasks, step=self.step)

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

    # --- scoring ----------------------------------------------------------------------------------
    def score_answers(
        self, name: str, tasks: Sequence[Task], prompts: Sequence[Prompt], texts: Sequence[str]
    ) -> list[Answer]:
        verdicts = self.families[name].verify(tasks, texts)
        return [
            Answer(name, task, prompt, text, verdict, self.rewards.solver_reward(verdict))
            for task, prompt, text, verdict in zip(tasks, prompts, texts, verdicts, strict=True)
        ]

    def score_proposals(self, proposals: Sequence[Proposal], solve_rates: Mapping[int, float]) -> None:
        """Set each proposal's reward: learnability of its estimated solve rate, or `proposer_invalid`.

        `solve_rates` maps an index into `proposals` to the share of n solver samples that were correct.
        """
        for index, proposal in enumerate(proposals):
            proposal.solve_rate = solve_rates.get(index)
            proposal.reward = self.rewards.proposer_reward(proposal.solve_rate)
            if proposal.task is not None:
                proposal.complexity = self.families[proposal.family].complexity(proposal.task)

    # --- audit ledger -----------------------------------------------------------------------------
    def record_proposals(self, proposals: Sequence[Proposal]) -> None:
        for proposal in proposals:
            if proposal.task is not None:
                result: dict[str, Any] = {"valid": True, "task_id": proposal.task.task_id}
            else:
                result = {"valid": False, "reason": proposal.result.reason, "detail": proposal.result.detail}
            result.update(solve_rate=proposal.solve_rate, reward=proposal.reward)
            self.store.record(self.step, "propose", proposal.family, proposal.prompt.text, proposal.text, result)

    def record_answers(self, answers: Sequence[Answer], role: str) -> None:
        """`role` is ``solve`` for trained answers and ``estimate`` for solve-rate samples."""
        for answer in answers:
            result = {
                "task_id": answer.task.task_id,
                "status": answer.verdict.status,
                "reason": answer.verdict.reason,
                "reward": answer.reward,
            }
            self.store.record(self.step, role, answer.family, answer.prompt.text, answer.text, result)

    def close(self) -> None:
        """Close the task store and the verifier processes the families share."""
        self.store.close()
        for family in self.families.values():
            family.verifiers.close()

    # --- checkpoints ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write the counters, the RNG state and a consistent copy of the task store into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "rng": _jsonable_rng(self.rng.getstate())}
        (directory / STATE_FILE).write_text(json.dumps(state) + "\n")
        copy_database(self.store.path, directory / STORE_FILE)

    def load_state(self, directory: str | Path) -> None:
        """Restore the counters and RNG written by `save` (the store is restored before it is opened)."""
        state = json.loads((Path(directory) / STATE_FILE).read_text())
        self.step = int(state["step"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


def copy_database(source: str | Path, target: str | Path) -> None:
    """Copy an SQLite database with the backup API (consistent even while `source` is open)."""
    Path(target).unlink(missing_ok=True)
    with closing(sqlite3.connect(str(source))) as src, closing(sqlite3.connect(str(target))) as dst:
        src.backup(dst)


def _jsonable_rng(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]
