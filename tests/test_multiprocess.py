"""Several processes: `accelerate launch` with the 2-process CPU config (gloo) runs two self-play steps and
resumes for a third, with one task store owned by the main process; a follower game cannot touch the store;
sandbox slots are shared by the processes of a machine."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_RUN_ARGS
from flywheel.envs import make_family
from flywheel.envs.rails import Rails
from flywheel.envs.resources import SharedVerifiers
from flywheel.envs.rewards import RewardConfig
from flywheel.train.run import sandbox_config
from flywheel.train.selfplay import NoStoreError, SelfPlay
from flywheel.verifiers.sandbox.config import MAX_WORKERS, SandboxConfig, default_workers
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
PROCESSES = 2
FAMILIES = ("code_deduction", "math_deduction")
GENERATIONS = 2  # TINY_RUN_ARGS' num_generations
SOLVER_SAMPLES = 2  # TINY_RUN_ARGS' n_solver_samples
ARGS = [
    *TINY_RUN_ARGS,
    "--families", *FAMILIES,
    "--solver_batch_size", "1",
    "--max_proposer_completion_length", "16",
    "--warm_start_steps", "0",
    "--heldout_per_family", "2",
    "--save_steps", "2",
]  # fmt: skip
PER_STEP = PROCESSES * len(FAMILIES) * 1 * GENERATIONS
"""Propose rows and solve rows per step: processes x families x (proposer or solver batch 1) x generations."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(run: Path, probes: Path, *extra: str) -> None:
    """`accelerate launch --config_file recipes/accelerate/cpu_gloo.yaml` of `flywheel train` (through
    tests/multiprocess_train.py, which adds the probes); fails the test with its output on a non-zero exit."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "recipes" / "accelerate" / "cpu_gloo.yaml"),
        "--main_process_port", str(free_port()),
        str(REPO / "tests" / "multiprocess_train.py"),
        *ARGS, "--output_dir", str(run), *extra,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLYWHEEL_TEST_PROBES": str(probes), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert done.stdout.count("flywheel train: done") == 1, done.stdout  # the main process reports, once


def ledger(run: Path) -> list[tuple[int, str, str, dict]]:
    with sqlite3.connect(run / "tasks.sqlite") as db:
        rows = db.execute("SELECT step, role, family, result FROM ledger ORDER BY seq").fetchall()
    return [(step, role, family, json.loads(result)) for step, role, family, result in rows]


def count(rows: list, step: int, role: str, family: str | None = None) -> int:
    return sum(1 for s, r, f, _ in rows if s == step and r == role and family in (None, f))


def checksums(probes: Path, rank: int) -> dict[int, str]:
    lines = (probes / f"weights-{rank}.jsonl").read_text().splitlines()
    return {entry["global_step"]: entry["sha256"] for entry in map(json.loads, lines)}


@pytest.mark.slow
def test_two_processes_share_one_store_then_resume(tmp_path: Path) -> None:
    run, probes = tmp_path / "run", tmp_path / "probes"
    probes.mkdir()
    launch(run, probes, "--max_steps", "2")

    # One store: the live one and the checkpoint's copy, nothing per process.
    stores = sorted(path.relative_to(run).as_posix() for path in run.rglob("tasks.sqlite*"))
    assert stores == ["checkpoint-2/tasks.sqlite", "tasks.sqlite"]
    rows = ledger(run)
    for step in (1, 2):
        # Ledger rows from both processes' rollouts, written once by the main process.
        assert count(rows, step, "propose") == PER_STEP
        assert count(rows, step, "solve") == PER_STEP
        valid = sum(1 for s, r, _, result in rows if s == step and r == "propose" and result["valid"])
        assert count(rows, step, "estimate") == SOLVER_SAMPLES * valid
    # Every process proposed the same code_deduction program: the main process validated all of them at once,
    # so one became a task and the other three (from both processes) were duplicates; at step 2 all four were.
    scripted = [result for s, r, f, result in rows if s == 1 and r == "propose" and f == "code_deduction"]
    assert sorted(result.get("reason", "valid") for result in scripted) == ["duplicate"] * 3 + ["valid"]
    task_id = next(result["task_id"] for result in scripted if result["valid"])
    second = [result for s, r, f, result in rows if s == 2 and r == "propose" and f == "code_deduction"]
    assert [result.get("reason") for result in second] == ["duplicate"] * 4
    with sqlite3.connect(run / "tasks.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM tasks WHERE task_id = ?", (task_id,)).fetchone() == (1,)
        duplicates = db.execute(
            "SELECT family, task_id FROM tasks GROUP BY family, task_id HAVING COUNT(*) > 1"
        ).fetchall()
        assert duplicates == []

    # DDP kept the processes' weights identical after every optimizer step.
    assert checksums(probes, 0) == checksums(probes, 1)
    assert sorted(checksums(probes, 0)) == [1, 2]

    # TensorBoard: one writer (the main process), and the self-play scalars are over both processes' rollouts:
    # 1 valid code_deduction proposal of 4 at step 1 (either process's half alone would say 1 of 2 or 0 of 2).
    (events,) = (run / "runs" / "selfplay").glob("events.out.tfevents.*")
    board = EventAccumulator(str(events)).Reload()
    valid_rate = board.Scalars("selfplay/code_deduction/propose/valid_rate")
    assert [(e.step, e.value) for e in valid_rate] == [(1, 0.25), (2, 0.0)]
    assert [e.step for e in board.Scalars("selfplay/step")] == [1, 2]
    history = [json.loads(line)["step"] for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert history == [0, 2]

    launch(run, probes, "--max_steps", "3", "--resume")
    state = json.loads((run / "checkpoint-3" / "selfplay_state.json").read_text())
    assert state["step"] == 3
    resumed = ledger(run)
    assert resumed[: len(rows)] == rows  # the store was restored once: steps 1 and 2 as they were, not doubled
    assert count(resumed, 3, "propose") == PER_STEP and count(resumed, 3, "solve") == PER_STEP
    assert checksums(probes, 0) == checksums(probes, 1)
    assert sorted(checksums(probes, 0)) == [1, 2, 3]
    history = [json.loads(line)["step"] for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert history == [0, 2, 3]


def test_a_follower_game_has_no_store(tmp_path: Path) -> None:
    rails = Rails()
    with SharedVerifiers(SandboxConfig(workers=1)) as verifiers:
        families = {name: make_family(name, None, verifiers, rails) for name in FAMILIES}
        follower = SelfPlay(families, None, RewardConfig(), buffer_capacity=8, k_references=1, seed=0, rails=rails)
        assert not follower.holds_store
        for use in (
            lambda: follower.store,
            lambda: follower.buffers,
            lambda: follower.gates,
            lambda: follower.proposer_prompts("code_deduction", 1),
            lambda: follower.seed_buffers(),
            lambda: follower.record_answers([], "solve"),
            lambda: follower.record_proposals([]),
            lambda: follower.save(tmp_path / "checkpoint"),
        ):
            with pytest.raises(NoStoreError, match="only the main process holds the task store"):
                use()
        follower.close()
    assert list(tmp_path.iterdir()) == []


def test_the_processes_of_a_machine_share_its_sandbox_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [default_workers(n) for n in (1, 2, 3, 16, 100)] == [16, 8, 5, 1, 1]
    monkeypatch.setattr(os, "cpu_count", lambda: 96)
    assert default_workers(1) == MAX_WORKERS and default_workers(4) == 48
    rails = Rails(sandbox_timeout_s=2.5)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # as torchrun sets it for 4 processes on this machine
    config = sandbox_config(rails)
    assert (config.workers, config.timeout_s) == (48, 2.5)
    assert sandbox_config(rails, processes_here=2).workers == MAX_WORKERS
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert sandbox_config(rails).workers == MAX_WORKERS
    assert sandbox_config(rails, workers=3).workers == 3, "the recipe's sandbox_workers wins"
