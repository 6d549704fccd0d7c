"""`flywheel train` as `python -m flywheel.train.cli train ARGS` runs it, with three test probes on every
process, for tests/test_multiprocess.py (run it under `accelerate launch`):

- after every optimizer step, a checksum of the process's model parameters in ``$PROBES/weights-RANK.jsonl``;
- `sqlite3.connect` refuses the task store on every process but the main one;
- every process's code_deduction proposals are one fixed valid program, so the main process must find
  them duplicates of each other across processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from flywheel.envs.parsing import format_answer
from flywheel.train.run import main
from flywheel.train.selfplay import STORE_FILE
from flywheel.train.trainer import FlywheelTrainer
from transformers import TrainerCallback

SCRIPTED = {
    "code_deduction": format_answer(("python", "def f(xs, k):\n    return xs[k:] + xs[:k]"), ("input", "[1, 2, 3], 2"))
}
"""Per family, the proposal every process makes (the same on all of them)."""


class WeightChecksums(TrainerCallback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"global_step": state.global_step, "sha256": digest.hexdigest()}) + "\n")


def refuse_store(connect: Any, rank: int) -> Any:
    def guarded(database: Any, *args: Any, **kwargs: Any) -> Any:
        if STORE_FILE in str(database):
            raise AssertionError(f"process {rank} opened the task store {database}")
        return connect(database, *args, **kwargs)

    return guarded


def scripted(propose: Any) -> Any:
    def scripted_propose(self: FlywheelTrainer, record: Any) -> Any:
        proposed, asked = propose(self, record)
        proposed.texts = [SCRIPTED.get(name, text) for (name, _), text in zip(asked, proposed.texts, strict=True)]
        return proposed, asked

    return scripted_propose


if __name__ == "__main__":
    rank = int(os.environ.get("RANK", "0"))
    if rank > 0:
        sqlite3.connect = refuse_store(sqlite3.connect, rank)
    FlywheelTrainer._propose = scripted(FlywheelTrainer._propose)
    probes = Path(os.environ["FLYWHEEL_TEST_PROBES"])
    sys.exit(main(sys.argv[1:], callbacks=[WeightChecksums(probes / f"weights-{rank}.jsonl")]))
