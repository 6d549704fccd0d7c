"""Runs survive crashes: atomic checkpoints, resume that never destroys data, one run per directory, and
TensorBoard events with one value per tag and step after a resume.

The kill tests SIGKILL a real `flywheel train` process at chosen points of a save (the process kills itself
when it reaches the point, so the test is deterministic), resume it, and compare the ledger and buffers with
an uninterrupted run's, row for row.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import TINY_RUN_ARGS, interrupt_training
from flywheel.envs.buffer import TaskStore
from flywheel.train.guards import ranked_checkpoint
from flywheel.train.run import main
from flywheel.train.rundir import (
    RunDirectoryBusy,
    RunDirectoryLock,
    latest_checkpoint,
    publish_checkpoint,
    rotate_checkpoints,
    truncate_events,
)
from flywheel.train.selfplay import STATE_FILE, STORE_FILE, StoreCopyError, copy_database, restore_store
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from torch.utils.tensorboard import SummaryWriter

TINY = [
    *TINY_RUN_ARGS,
    "--families", "code_deduction",
    "--solver_batch_size", "1",
    "--max_proposer_completion_length", "16",
    "--warm_start_steps", "0",
    "--heldout_per_family", "2",
    "--text_log_every", "1",
    "--save_steps", "1",
    "--save_total_limit", "1",
    "--max_steps", "2",
]  # fmt: skip

KILLER = """
import os, signal, sqlite3, sys
from contextlib import closing

import transformers
from flywheel.train import selfplay

phase, target = sys.argv[1], sys.argv[2]


def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)


if phase == "after_model":
    save_optimizer = transformers.Trainer._save_optimizer_and_scheduler

    def patched(self, output_dir):
        if output_dir.endswith(target):
            die()
        save_optimizer(self, output_dir)

    transformers.Trainer._save_optimizer_and_scheduler = patched
elif phase == "after_trainer_state":
    save_to_json = transformers.TrainerState.save_to_json

    def patched(self, json_path):
        save_to_json(self, json_path)
        if target in json_path:
            die()

    transformers.TrainerState.save_to_json = patched
elif phase == "during_store_copy":
    copy_database = selfplay.copy_database

    def patched(source, destination):
        if target in str(destination):
            with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(destination)) as dst:
                src.backup(dst, pages=1, progress=die)
        copy_database(source, destination)

    selfplay.copy_database = patched
elif phase == "between_saves":
    record_answers = selfplay.SelfPlay.record_answers

    def patched(self, answers, role):
        record_answers(self, answers, role)
        if role == "solve" and f"checkpoint-{self.step}" == target:
            die()

    selfplay.SelfPlay.record_answers = patched

from flywheel.train.cli import main

sys.exit(main(["train", *sys.argv[3:]]))
"""


def store_rows(run: Path) -> tuple[list[tuple], list[tuple]]:
    """Ledger rows (without their wall-clock time) and buffer rows of a run's live store."""
    with sqlite3.connect(run / STORE_FILE) as db:
        ledger = db.execute("SELECT step, role, family, prompt, output, result FROM ledger ORDER BY seq").fetchall()
        tasks = db.execute("SELECT family, task_id, step, task FROM tasks ORDER BY seq").fetchall()
    return ledger, tasks


def event_steps(run: Path) -> Counter[tuple[str, int]]:
    """How many values each (tag, step) has across every event file of the run."""
    counts: Counter[tuple[str, int]] = Counter()
    for path in (run / "runs").rglob("events.out.tfevents.*"):
        for record in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(record)
            counts.update((value.tag, event.step) for value in event.summary.value)
    return counts


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main([*TINY, "--output_dir", str(run)]) == 0
    return run


def repeated_steps(run: Path) -> set[tuple[str, int]]:
    """(tag, step) pairs with more than one value (TRL logs `train/epoch` twice at the last step of any run)."""
    return {key for key, count in event_steps(run).items() if count > 1}


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["after_model", "after_trainer_state", "during_store_copy", "between_saves"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(phase: str, uninterrupted: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = [*TINY, "--output_dir", str(run)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, phase, "checkpoint-2", *argv], capture_output=True, env=os.environ.copy()
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode(errors="replace")[-3000:]
    assert [path.name for path in run.glob("checkpoint-*")] == ["checkpoint-1"], "no partial checkpoint-2"
    assert (run / ".staging" / "checkpoint-2").is_dir() == (phase != "between_saves"), "killed during the save"
    assert latest_checkpoint(run) == run / "checkpoint-1"
    ledger, _ = store_rows(run)
    assert {row[0] for row in ledger} == {1, 2}, "the live ledger keeps the rows written before the kill"

    assert main([*argv, "--resume"]) == 0
    assert store_rows(run) == store_rows(uninterrupted)
    assert [path.name for path in run.glob("checkpoint-*")] == ["checkpoint-2"]
    assert json.loads((run / "checkpoint-2" / STATE_FILE).read_text())["step"] == 2
    assert not (run / ".staging").exists(), "the resumed start cleared what the killed save left"
    assert repeated_steps(run) == repeated_steps(uninterrupted), "a resume must not give a tag two values per step"
    events = EventAccumulator(str(run / "runs" / "selfplay"), size_guidance={"scalars": 0})
    events.Reload()
    assert [event.step for event in events.Scalars("selfplay/step")] == [1, 2]


def write_store(path: Path, rows: int) -> None:
    with TaskStore(path) as store:
        for step in range(rows):
            store.record(step, "solve", "code_deduction", "prompt", "output", {"reward": 0.0})


def fake_checkpoint(run: Path, step: int, store_rows: int | None) -> Path:
    """A checkpoint directory with the files resume reads (no model: resume fails before loading one)."""
    checkpoint = run / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (checkpoint / STATE_FILE).write_text(json.dumps({"step": step, "rng": [3, [0] * 625, None]}))
    if store_rows is not None:
        write_store(checkpoint / STORE_FILE, store_rows)
    return checkpoint


def test_rotation_keeps_the_checkpoint_a_rollback_to_the_best_would_choose(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for step in (1, 2, 3, 4):
        fake_checkpoint(run, step, store_rows=1)
    history = [{"step": step, "metrics": {"eval/heldout/accuracy": score}} for step, score in [(2, 0.5), (4, 0.1)]]
    best = ranked_checkpoint(run, history, "eval/heldout/accuracy")
    assert best == run / "checkpoint-2"
    assert ranked_checkpoint(run, history, "eval/heldout/accuracy", before_step=2) == run / "checkpoint-1"
    assert ranked_checkpoint(run, history, None) == run / "checkpoint-4", "without a metric: the newest"
    rotate_checkpoints(run, 1, keep={run / "checkpoint-4", best})
    assert sorted(path.name for path in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_resume_skips_incomplete_checkpoints_and_never_touches_the_live_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_store(run / STORE_FILE, 96)
    before = (run / STORE_FILE).read_bytes()
    fake_checkpoint(run, 4, store_rows=None)  # the reproduction: the self-play files are missing
    (run / "checkpoint-4" / STATE_FILE).unlink()
    assert main([*TINY, "--output_dir", str(run), "--max_steps", "8", "--resume"]) == 2
    assert "no checkpoint-* directory with a complete checkpoint" in capsys.readouterr().err
    assert (run / STORE_FILE).read_bytes() == before

    damaged = fake_checkpoint(run, 6, store_rows=None)
    (damaged / STORE_FILE).write_bytes(b"not a database" * 100)
    assert main([*TINY, "--output_dir", str(run), "--max_steps", "8", "--resume"]) == 2
    assert "cannot resume from" in capsys.readouterr().err
    assert (run / STORE_FILE).read_bytes() == before, "a failed resume leaves the live store as it was"
    assert sorted(path.name for path in run.iterdir()) == [".lock", "checkpoint-4", "checkpoint-6", STORE_FILE]
    assert main([*TINY, "--output_dir", str(run), "--resume_from_checkpoint", str(run / "checkpoint-4")]) == 2
    assert "incomplete" in capsys.readouterr().err

    (damaged / STORE_FILE).unlink()
    write_store(damaged / STORE_FILE, 3)
    missing = str(tmp_path / "missing.jsonl")
    assert main([*TINY, "--output_dir", str(run), "--max_steps", "8", "--resume", "--eval_files", missing]) == 2
    err = capsys.readouterr().err
    assert "skipping incomplete checkpoints (checkpoint-4); resuming checkpoint-6" in err and "missing.jsonl" in err
    assert (run / STORE_FILE).read_bytes() == before, "inputs are read before the run directory changes"


def test_store_copies_are_verified_and_never_invent_an_empty_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TaskStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(StoreCopyError, match="does not exist"):
        copy_database(tmp_path / "missing.sqlite", tmp_path / "copy.sqlite")
    assert not (tmp_path / "copy.sqlite").exists() and not (tmp_path / "missing.sqlite").exists()

    write_store(tmp_path / "live.sqlite", 5)
    write_store(tmp_path / "saved.sqlite", 3)
    (tmp_path / "live.sqlite-journal").write_bytes(b"a journal of the old file")
    restore_store(tmp_path / "saved.sqlite", tmp_path / "live.sqlite")
    with TaskStore(tmp_path / "live.sqlite", create=False) as store:
        assert [row["step"] for row in store.ledger()] == [0, 1, 2]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["live.sqlite", "saved.sqlite"]

    (tmp_path / "broken.sqlite").write_bytes(b"\0" * 4096)
    with pytest.raises(StoreCopyError):
        restore_store(tmp_path / "broken.sqlite", tmp_path / "live.sqlite")
    with TaskStore(tmp_path / "live.sqlite", create=False) as store:
        assert len(store.ledger()) == 3
    assert not list(tmp_path.glob("*.restoring"))


def test_rotation_keeps_the_newest_complete_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for step in (1, 2, 3):
        fake_checkpoint(run, step, store_rows=1)
    (run / "checkpoint-9").mkdir()  # incomplete: skipped by resume, never counted by rotation
    assert latest_checkpoint(run) == run / "checkpoint-3"
    staged = fake_checkpoint(run / ".staging", 4, store_rows=1)
    new = publish_checkpoint(staged, run)
    assert new == run / "checkpoint-4" and not staged.exists()
    rotate_checkpoints(run, 2, keep={new})
    assert sorted(path.name for path in run.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4", "checkpoint-9"]
    # Re-saving a step that exists (a resume from an older checkpoint) replaces it as a whole.
    again = fake_checkpoint(run / ".staging", 3, store_rows=2)
    rotate_checkpoints(run, 1, keep={publish_checkpoint(again, run)})
    assert latest_checkpoint(run) == run / "checkpoint-3"
    assert sorted(path.name for path in run.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-9"]
    with TaskStore(run / "checkpoint-3" / STORE_FILE, create=False) as store:
        assert len(store.ledger()) == 2


def test_truncating_events_leaves_one_value_per_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for session in range(2):  # two sessions of one run directory, each writing steps 1..4
        writer = SummaryWriter(str(run / "runs" / "selfplay"), filename_suffix=f".{session}")
        for step in range(1, 5):
            writer.add_scalar("train/reward", float(session * 10 + step), step)
            writer.add_text("selfplay/samples", f"session {session}", step)
        writer.close()
    assert truncate_events(run, 2) == 2 * 2 * 2  # two sessions x two tags x steps 3 and 4
    assert {step for _, step in event_steps(run)} == {1, 2}
    assert truncate_events(run, 2) == 0
    assert truncate_events(run, 0) == 2 * 2 * 2
    assert not event_steps(run)


HOLDER = """
import sys, time
from flywheel.train.rundir import RunDirectoryLock

with RunDirectoryLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_one_run_per_directory_and_stale_locks_are_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(RunDirectoryBusy, match=f"pid {holder.pid}"):
            RunDirectoryLock(run).acquire()
        assert main([*TINY, "--output_dir", str(run)]) == 2
        assert f"in use by another flywheel train process (pid {holder.pid})" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: the kernel dropped its lock, and its pid is stale.
    assert (run / ".lock").read_text().strip() == str(holder.pid)
    with RunDirectoryLock(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())


def test_a_start_without_a_checkpoint_is_set_aside_not_blocking(tmp_path: Path) -> None:
    """A run killed in setup or the warm start (store, events and recipe, no checkpoint) does not hold the
    directory; the new start writes its own recipe."""
    from flywheel.train.run import parse_config, prepare_run_dir, resolve_checkpoint
    from flywheel.train.rundir import RECIPE_FILE

    run = tmp_path / "run"
    (run / "runs" / "selfplay").mkdir(parents=True)
    write_store(run / STORE_FILE, 4)
    (run / RECIPE_FILE).write_text("seed: 7\n")
    (run / ".staging" / "checkpoint-1").mkdir(parents=True)
    config = parse_config([*TINY, "--output_dir", str(run)])
    assert resolve_checkpoint(config) is None
    prepare_run_dir(config, None)
    (aside,) = run.glob("unfinished-*")
    assert sorted(path.name for path in aside.iterdir()) == [RECIPE_FILE, "runs", STORE_FILE]
    assert (aside / RECIPE_FILE).read_text() == "seed: 7\n"
    assert sorted(path.name for path in run.iterdir()) == [RECIPE_FILE, aside.name]
    assert yaml.safe_load((run / RECIPE_FILE).read_text())["seed"] == config.seed
    with TaskStore(aside / STORE_FILE, create=False) as store:
        assert len(store.ledger()) == 4


@pytest.mark.slow
def test_ctrl_c_during_the_warm_start_exits_cleanly_and_the_directory_restarts(tmp_path: Path) -> None:
    from flywheel.train.run import parse_config, prepare_run_dir, resolve_checkpoint

    run = tmp_path / "run"
    argv = [*TINY, "--warm_start_steps", "500", "--warm_start_examples", "8", "--output_dir", str(run)]
    status, text = interrupt_training(argv, rb"\| [1-9]\d*/500 ")  # the warm start's bar has moved
    assert status == 130, text[-2000:]
    assert "Traceback" not in text and "no checkpoint was written" in text, text[-2000:]

    config = parse_config(argv)
    assert resolve_checkpoint(config) is None, "a run interrupted before its first checkpoint does not hold the dir"
    prepare_run_dir(config, None)
    assert STORE_FILE in {path.name for path in run.glob("unfinished-*/*")} and not (run / STORE_FILE).exists()


@pytest.mark.slow
def test_the_run_writes_a_flywheel_model_card(uninterrupted: Path) -> None:
    card = (uninterrupted / "README.md").read_text()
    assert "[None]" not in card and "- **Base model:** `flywheel/tiny`" in card
    assert "- **Task families:** `code_deduction`" in card and "- **Self-play steps:** 2" in card
    assert "Accuracy on the held-out sets at step 0 (after the warm start) and step 2" in card
    assert re.search(r"heldout/code_deduction\s+\d\.\d{3}\s+\d\.\d{3}", card), card
    assert "## Recipe" in card and "proposer_batch_size: 1" in card
