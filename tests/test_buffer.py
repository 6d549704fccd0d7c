"""Task buffers and the ledger in SQLite: dedup, eviction, sampling, persistence."""

from __future__ import annotations

import random

import pytest
from flywheel.envs.base import Task
from flywheel.envs.buffer import AddResult, TaskStore


def task(i: int, family: str = "toy") -> Task:
    return Task(family=family, payload={"n": i, "text": f"task {i} ✓"}, task_id=f"id{i}")


@pytest.fixture
def store():
    with TaskStore(":memory:") as opened:
        yield opened


def test_add_deduplicates_by_task_id(store):
    buffer = store.buffer("toy", capacity=10)
    assert buffer.add([task(1), task(2), task(1)]) == AddResult(added=2, duplicates=1)
    assert buffer.add([task(2), task(3)], step=5) == AddResult(added=1, duplicates=1)
    assert len(buffer) == 3
    assert [t.task_id for t in buffer.all()] == ["id1", "id2", "id3"]
    assert buffer.all()[0] == task(1)


def test_capacity_evicts_the_oldest(store):
    buffer = store.buffer("toy", capacity=3)
    buffer.add([task(i) for i in range(5)])
    assert [t.task_id for t in buffer.all()] == ["id2", "id3", "id4"]
    assert [t.task_id for t in buffer.newest(2)] == ["id4", "id3"]
    assert len(store.buffer("toy", capacity=1)) == 1  # a smaller view trims the stored buffer


def test_buffers_of_families_are_separate(store):
    store.buffer("a", 5).add([task(1, "a")])
    store.buffer("b", 5).add([task(1, "b"), task(2, "b")])
    assert len(store.buffer("a", 5)) == 1 and len(store.buffer("b", 5)) == 2
    with pytest.raises(ValueError, match="family"):
        store.buffer("a", 5).add([task(3, "b")])
    with pytest.raises(ValueError, match="capacity"):
        store.buffer("a", 0)


def test_sample_is_seeded_distinct_and_bounded(store):
    buffer = store.buffer("toy", capacity=100)
    assert buffer.sample(3, random.Random(0)) == []
    buffer.add([task(i) for i in range(20)])
    first = buffer.sample(5, random.Random(7))
    assert first == buffer.sample(5, random.Random(7))
    assert len({t.task_id for t in first}) == 5
    assert sorted(t.task_id for t in buffer.sample(50, random.Random(1))) == sorted(t.task_id for t in buffer.all())


def test_store_persists_buffers_and_ledger(tmp_path):
    path = tmp_path / "run.sqlite"
    with TaskStore(path) as store:
        store.buffer("toy", 10).add([task(1), task(2)], step=3)
        store.record(3, "propose", "toy", "prompt ✓", "output", {"valid": True, "reward": 0.5})
        store.record(4, "solve", "other", "p", "o", {"verdict": "wrong"})
    with TaskStore(str(path)) as store:
        assert store.buffer("toy", 10).all() == [task(1), task(2)]
        rows = store.ledger()
        assert [row["role"] for row in rows] == ["propose", "solve"]
        assert rows[0]["result"] == {"valid": True, "reward": 0.5} and rows[0]["prompt"] == "prompt ✓"
        assert [row["step"] for row in store.ledger(family="other")] == [4]
