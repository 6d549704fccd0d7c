"""Shared test setup: offline hub, shared data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SHARED_DATA = Path(
    os.environ.get("FLYWHEEL_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the checkout; tests that need it skip where a clone has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set FLYWHEEL_SHARED_DATA)")
    return SHARED_DATA


REPO = Path(__file__).resolve().parents[1]
TINY_RUN_ARGS = [
    "--config", str(REPO / "recipes" / "laptop.yaml"),
    "--proposer_batch_size", "1",
    "--num_generations", "2",
    "--k_references", "1",
    "--n_solver_samples", "2",
    "--max_solver_completion_length", "8",
]  # fmt: skip
"""The laptop recipe shrunk to seconds per step; each test adds its families, lengths and run settings."""


def interrupt_training(argv: list[str], progress: bytes, timeout: float = 180) -> tuple[int, str]:
    """Start a real `flywheel train` process, send it SIGINT once its stderr matches the regex `progress`
    (a progress bar has moved), and return its exit status and stderr."""
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    command = [sys.executable, "-m", "flywheel.train.cli", "train", *argv]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=os.environ.copy())
    stderr = bytearray()

    def read_stderr() -> None:
        for chunk in iter(lambda: process.stderr.read1(4096), b""):
            stderr.extend(chunk)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    deadline = time.monotonic() + timeout
    while not re.search(progress, stderr) and process.poll() is None:
        assert time.monotonic() < deadline, stderr.decode(errors="replace")[-2000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    status = process.wait(timeout=120)
    reader.join()
    return status, stderr.decode(errors="replace")
