"""The run directory: one run per directory, atomic checkpoints, resume points and resumed TensorBoard events.

    OUTPUT_DIR/
        .lock                    the run's lock (fcntl) and the holder's pid
        .staging/checkpoint-N/   a checkpoint being written; renamed into place once every file is in it
        checkpoint-N/            complete checkpoints only: TRL's files, selfplay_state.json, tasks.sqlite
        tasks.sqlite             the live task store and ledger
        recipe.yaml              the recipe of the latest start (`flywheel eval` renders prompts as it says)
        runs/                    TensorBoard event files
        unfinished-STAMP/        what a start that never reached a checkpoint left behind (set aside, kept)

A directory holds a run once it has a complete checkpoint. Whatever a killed save or a killed start left
(`.staging`, a store without a checkpoint) is cleared or set aside by the next start, under the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from flywheel.train.selfplay import STATE_FILE, STORE_FILE
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

LOCK_FILE = ".lock"
STAGING_DIR = ".staging"
EVENTS_DIR = "runs"
RECIPE_FILE = "recipe.yaml"
TRAINER_STATE_FILE = "trainer_state.json"
CHECKPOINT_FILES = (TRAINER_STATE_FILE, STATE_FILE, STORE_FILE)
"""Files every complete checkpoint has (besides the model), written last by TRL and by Flywheel."""
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class RunDirectoryBusy(RuntimeError):
    """Another live process holds the run directory's lock."""


class RunDirectoryLock:
    """An exclusive `flock` on ``OUTPUT_DIR/.lock`` for the life of the process, with the holder's pid in it.

    The kernel drops the lock when its holder dies, so a lock left by a killed run is simply taken over.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryBusy(
                f"{self.path.parent} is in use by another flywheel train process (pid {holder}); "
                "wait for it to finish or choose another --output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- checkpoints -----------------------------------------------------------------------------------------
def checkpoint_step(checkpoint: str | Path) -> int | None:
    """N of a ``checkpoint-N`` directory name, None for other names."""
    match = _CHECKPOINT_NAME.match(Path(checkpoint).name)
    return int(match.group(1)) if match else None


def is_complete(checkpoint: str | Path) -> bool:
    """Whether `checkpoint` holds TRL's trainer state and the self-play state and store (checkpoints from
    before atomic saves, or damaged by hand, may lack them)."""
    return all((Path(checkpoint) / name).is_file() for name in CHECKPOINT_FILES)


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete ``checkpoint-N`` directories of `run_dir`, by step (oldest first)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [path for path in run_dir.iterdir() if path.is_dir() and checkpoint_step(path) is not None]
    return sorted((path for path in found if is_complete(path)), key=lambda path: checkpoint_step(path) or 0)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step; incomplete ``checkpoint-N`` directories are skipped."""
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def resumed_step(checkpoint: str | Path) -> int:
    """TRL's global step saved in `checkpoint`."""
    return int(json.loads((Path(checkpoint) / TRAINER_STATE_FILE).read_text())["global_step"])


def staging_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / STAGING_DIR


def publish_checkpoint(staged: Path, run_dir: str | Path) -> Path:
    """Make the fully written `staged` checkpoint durable and rename it into `run_dir` in one step.

    A checkpoint of the same step from an earlier session (a resume from an older checkpoint) is replaced.
    """
    target = Path(run_dir) / staged.name
    for path in staged.rglob("*"):
        if path.is_file():
            _fsync(path)
    _fsync(staged)
    replaced = None
    if target.exists():
        replaced = staged.parent / f"replaced-{staged.name}"
        shutil.rmtree(replaced, ignore_errors=True)
        target.rename(replaced)
    staged.rename(target)
    _fsync(target.parent)
    if replaced is not None:
        shutil.rmtree(replaced)
    return target


def rotate_checkpoints(run_dir: str | Path, save_total_limit: int | None, keep: Collection[Path]) -> None:
    """Delete the oldest complete checkpoints beyond `save_total_limit`, never those in `keep` (the one just
    saved, and the one a rollback to the best would choose): as in transformers, kept ones may exceed the limit.

    Each is renamed out of the run directory before it is deleted, so a ``checkpoint-N`` is never half gone.
    """
    if not save_total_limit or save_total_limit <= 0:
        return
    found = complete_checkpoints(run_dir)
    surplus = [path for path in found if path not in keep][: max(0, len(found) - save_total_limit)]
    trash = staging_dir(run_dir)
    trash.mkdir(exist_ok=True)
    for path in surplus:
        doomed = trash / f"deleted-{path.name}"
        shutil.rmtree(doomed, ignore_errors=True)
        path.rename(doomed)
        shutil.rmtree(doomed)


def clear_leftovers(run_dir: str | Path) -> None:
    """Remove what killed saves and restores left: the staging directory and partial store copies."""
    shutil.rmtree(staging_dir(run_dir), ignore_errors=True)
    for partial in Path(run_dir).glob(f"{STORE_FILE}.restoring*"):
        partial.unlink()


def set_aside_unfinished(run_dir: str | Path, patterns: Sequence[str]) -> Path | None:
    """Move the files matching `patterns` (glob patterns of run files: task store, events, ...) that no
    checkpoint covers (a start that failed or was killed before its first save) into ``unfinished-STAMP/``,
    so a fresh start begins clean and nothing is deleted."""
    run_dir = Path(run_dir)
    leftovers = sorted({path for pattern in patterns for path in run_dir.glob(pattern)})
    if not leftovers:
        return None
    aside = Path(tempfile.mkdtemp(prefix=time.strftime("unfinished-%Y%m%d-%H%M%S-"), dir=run_dir))
    for path in leftovers:
        path.rename(aside / path.name)
    return aside


# --- TensorBoard ------------------------------------------------------------------------------------------
def truncate_events(run_dir: str | Path, last_step: int) -> int:
    """Rewrite every event file under ``run_dir/runs`` without the events of steps after `last_step`.

    A resumed run writes those steps again; dropping the old ones (rather than relying on TensorBoard's
    purge marker, which not every loader honours) leaves one value per tag and step. Returns the number
    of events dropped.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    dropped = 0
    for path in sorted(Path(run_dir, EVENTS_DIR).rglob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [record for record in records if Event.FromString(record).step <= last_step]
        if len(kept) == len(records):
            continue
        dropped += len(records) - len(kept)
        partial = path.with_name(f".truncating-{path.name}")
        with open(partial, "wb") as stream:
            writer = RecordWriter(stream)
            for record in kept:
                writer.write(record)
            writer.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    return dropped


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
