"""The data gate: which validated proposals may enter a family's buffer.

A proposal becomes a buffer task, and earns a proposer reward above an invalid proposal's, only if

1. its family accepts it: it parses, runs (or computes) within the rails' bounds, and is not trivial (the
   family's own checks: an output equal to an input, a constant function, an expression that is already
   its own answer; see docs/ledger.md, "The data gate");
2. it is new in substance: its task id (a hash of the family's normalised `dedup_key`) is neither in the
   buffer nor earlier in the same batch — ``duplicate``;
3. its structure (`TaskFamily.structure_key`) would not take more than `Rails.max_structure_share` of the
   buffer — ``structure_quota`` (the first task of a structure is always admitted; seeds count towards the
   buffer's size but not towards any structure).

Rule 1 runs inside `TaskFamily.propose`; `Gate` applies rules 2 and 3, which need the buffer, and adds
admitted tasks with their structure keys. A duplicate is rewarded `RewardConfig.proposer_reward(None,
DUPLICATE)`: `proposer_invalid` minus `duplicate_penalty`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from flywheel.envs.base import Rejection, Task, TaskFamily
from flywheel.envs.buffer import AddResult, TaskBuffer

DUPLICATE = "duplicate"
STRUCTURE_QUOTA = "structure_quota"


class Gate:
    """The buffer-relative rules of the data gate for one family and its buffer."""

    def __init__(self, family: TaskFamily, buffer: TaskBuffer) -> None:
        """The quota comes from the family's rails (`family.rails.max_structure_share`)."""
        self.family = family
        self.buffer = buffer

    def screen(self, results: Sequence[Task | Rejection]) -> list[Task | Rejection]:
        """`results` (from `family.propose`) with duplicates and over-quota tasks turned into rejections.

        Read-only: the buffer changes only in `admit`. Within the batch, the first of equal tasks passes.
        """
        size = len(self.buffer)
        passed: set[str] = set()
        structures: Counter[str] = Counter()
        screened: list[Task | Rejection] = []
        for result in results:
            if isinstance(result, Rejection):
                screened.append(result)
                continue
            if result.task_id in passed or result.task_id in self.buffer:
                screened.append(Rejection(DUPLICATE, f"the same task as {result.task_id} after normalisation"))
                continue
            structure = self.family.structure_key(result.payload)
            count = self.buffer.structure_count(structure) + structures[structure]
            total = size + len(passed) + 1
            if count >= 1 and count + 1 > self.family.rails.max_structure_share * total:
                screened.append(
                    Rejection(
                        STRUCTURE_QUOTA,
                        f"{count + 1} of {total} buffer tasks would share one structure "
                        f"(max_structure_share {self.family.rails.max_structure_share})",
                    )
                )
                continue
            passed.add(result.task_id)
            structures[structure] += 1
            screened.append(result)
        return screened

    def admit(self, tasks: Sequence[Task], step: int = 0) -> AddResult:
        """Add screened tasks to the buffer with their structure keys."""
        return self.buffer.add(tasks, step=step, structures=[self.family.structure_key(task.payload) for task in tasks])
