"""Diversity you can see: structure shares and entropy from the store, near-duplicates, solver answer diversity."""

from __future__ import annotations

import math

import pytest
from flywheel.envs.base import Prompt, Rejection, Task, Verdict
from flywheel.envs.buffer import TaskStore
from flywheel.envs.gate import DUPLICATE, STRUCTURE_QUOTA
from flywheel.envs.scoring import Answer, Proposal
from flywheel.train.metrics import StepRecord, answer_diversity, buffer_diversity, scalar_layout

FAMILY = "code_deduction"


def task(task_id: str) -> Task:
    return Task(family=FAMILY, payload={"program": task_id}, task_id=task_id)


def test_structure_shares_and_entropy_come_from_the_buffer() -> None:
    with TaskStore(":memory:") as store:
        buffer = store.buffer(FAMILY, capacity=10)
        assert buffer_diversity(buffer, window=2) == {}
        buffer.add([task("seed1"), task("seed2")], step=0)  # seeds: no structure, not counted
        assert buffer_diversity(buffer, window=2) == {}
        buffer.add([task("a1"), task("b1")], step=1, structures=["A", "B"])
        buffer.add([task("a2"), task("a3")], step=2, structures=["A", "A"])
        stats = buffer_diversity(buffer, window=2)
        assert stats["distinct_structures"] == pytest.approx(2 / 4)
        assert stats["recent_distinct_structures"] == pytest.approx(1 / 2)  # the newest two are both A
        assert stats["structure_entropy"] == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
        assert buffer.repeated_structures(1) == 0
        assert buffer.repeated_structures(2) == 2
        buffer.add([task(f"c{i}") for i in range(4)], step=3, structures=["C", "D", "E", "F"])
        assert buffer_diversity(buffer, window=4)["recent_distinct_structures"] == 1.0
        # Evicted tasks leave the counts: capacity 10 keeps the newest 10, seeds go first.
        assert len(buffer) == 10 and buffer_diversity(buffer, window=100)["distinct_structures"] == pytest.approx(6 / 8)


def test_near_duplicates_count_exact_duplicates_quota_rejections_and_repeated_structures() -> None:
    prompt = Prompt("propose")
    proposals = [
        Proposal(FAMILY, prompt, "p1", task("a1")),
        Proposal(FAMILY, prompt, "p2", task("a2")),
        Proposal(FAMILY, prompt, "p3", Rejection(DUPLICATE)),
        Proposal(FAMILY, prompt, "p4", Rejection(STRUCTURE_QUOTA)),
        Proposal(FAMILY, prompt, "p5", Rejection("parse_error")),
    ]
    record = StepRecord(step=1, families=[FAMILY], proposals=proposals)
    record.keys = [f"{FAMILY}/propose"] * 5
    record.rewards, record.groups, record.completion_lengths = [0.0] * 5, [0] * 5, [3] * 5
    record.repeated_structures = {FAMILY: 1}  # a2 shares a1's structure
    scalars = record.scalars()
    assert scalars[f"selfplay/{FAMILY}/diversity/near_duplicate_rate"] == pytest.approx(3 / 4)
    assert scalars[f"selfplay/{FAMILY}/propose/duplicate_rate"] == pytest.approx(1 / 3)
    record.repeated_structures = {}
    assert record.scalars()[f"selfplay/{FAMILY}/diversity/near_duplicate_rate"] == pytest.approx(2 / 4)


def test_answer_diversity_is_distinct_normalised_answers_per_task() -> None:
    def answer(task_id: str, text: str) -> Answer:
        return Answer(FAMILY, task(task_id), Prompt("solve"), text, Verdict("wrong"), -0.5)

    answers = [
        answer("t1", "<answer>1</answer>"),
        answer("t1", "<think>x</think><answer>  1 </answer>"),
        answer("t1", "<answer>2</answer>"),
        answer("t1", "no answer block"),
        answer("t2", "garbage"),
        answer("t2", "more garbage"),
    ]
    assert answer_diversity(answers) == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert answer_diversity(answers[:1]) == 1.0


def test_the_layout_puts_token_entropy_beside_the_diversity_curves() -> None:
    charts = scalar_layout([FAMILY])[f"family {FAMILY}"]
    patterns = [pattern for title, chart in charts.items() if "diversity" in title for pattern in chart[1]]
    for stat in ("distinct_structures", "recent_distinct_structures", "structure_entropy", "near_duplicate_rate"):
        assert f"selfplay/{FAMILY}/diversity/{stat}$" in patterns
    assert "train/entropy$" in patterns
