"""Guards act: a forced collapse (the policy's head scaled up once, so its token entropy falls to almost 0)
fires an entropy guard, the rollback restores the saved checkpoint exactly (weights, optimizer, store, counters)
and training goes on and recovers; without the guard the collapse stays; a resume after a rollback continues."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_RUN_ARGS
from flywheel.train.guards import GuardsConfig
from flywheel.train.run import _train, main, parse_config
from flywheel.train.selfplay import STATE_FILE, STORE_FILE
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import TrainerCallback

COLLAPSE_STEP = 4
ENTROPY_GUARD = {
    # Fires one step after the collapse (the mean of two values), passing over the checkpoint saved in between.
    "triggers": [{"metric": "train/entropy", "drop": 5.0, "window": 2, "action": "rollback"}],
    "rollback_to": "last",
    "max_rollbacks": 1,
}
TINY = [
    *TINY_RUN_ARGS,
    "--families", "code_deduction",
    "--solver_batch_size", "1",
    "--max_proposer_completion_length", "8",
    "--warm_start_steps", "0",
    "--heldout_per_family", "0",
    "--save_steps", "1",
    "--save_total_limit", "10",
    "--max_steps", "6",
]  # fmt: skip


class Collapse(TrainerCallback):
    """Before self-play step `COLLAPSE_STEP`, once in the run: scale the LM head by 50, so sampling becomes
    almost deterministic (a collapsed policy) and the change persists in the weights."""

    def __init__(self) -> None:
        self.done = False

    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self.done and state.global_step == COLLAPSE_STEP - 1:
            with torch.no_grad():
                model.get_output_embeddings().weight.mul_(50.0)
            self.done = True


class Snapshot(TrainerCallback):
    """At the first step of every session after the first: the live weights, optimizer, counters and store."""

    def __init__(self) -> None:
        self.sessions = 0
        self.first = False
        self.taken: list[dict[str, Any]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sessions += 1
        self.first = True

    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self.first or self.sessions < 2:
            return
        self.first = False
        self.taken.append(
            {
                "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "optimizer": copy.deepcopy(kwargs["optimizer"].state_dict()),
                "global_step": state.global_step,
                "store": store_rows(Path(args.output_dir) / STORE_FILE),
            }
        )


def store_rows(path: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(path) as db:
        tasks = db.execute("SELECT * FROM tasks ORDER BY seq").fetchall()
        ledger = db.execute("SELECT * FROM ledger WHERE role != 'guard' ORDER BY seq").fetchall()
    return tasks, ledger


def events(run: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run / "runs" / "selfplay"), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def entropy_curve(run: Path) -> dict[int, float]:
    return {e.step: e.value for e in events(run).Scalars("train/entropy")}


def guard_rows(run: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(run / STORE_FILE) as db:
        return [json.loads(r[0]) for r in db.execute("SELECT result FROM ledger WHERE role = 'guard' ORDER BY seq")]


def assert_same_tensors(live: Any, saved: Any) -> None:
    if isinstance(live, torch.Tensor):
        assert torch.equal(live, saved)
    elif isinstance(live, dict):
        assert live.keys() == saved.keys()
        for key in live:
            assert_same_tensors(live[key], saved[key])
    elif isinstance(live, list | tuple):
        assert len(live) == len(saved)
        for a, b in zip(live, saved, strict=True):
            assert_same_tensors(a, b)
    else:
        assert live == saved


@pytest.mark.slow
def test_a_collapse_rolls_back_to_the_exact_checkpoint_and_recovers_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "guarded"
    snapshot = Snapshot()
    config = parse_config([*TINY, "--output_dir", str(run), "--guards", json.dumps(ENTROPY_GUARD)])
    assert _train(config, callbacks=[snapshot, Collapse()]) == 0

    # The guard fired at the collapse and rolled back to the last checkpoint before it.
    (row,) = guard_rows(run)
    assert row["action"] == "rollback" and row["checkpoint"] == f"checkpoint-{COLLAPSE_STEP - 1}"
    assert row["step"] == COLLAPSE_STEP + 1 and row["since"] == COLLAPSE_STEP and row["seed"] != config.seed
    (aside,) = run.glob("rolled-back-*")
    assert [p.name for p in aside.iterdir()] == [f"checkpoint-{COLLAPSE_STEP}"]  # the collapsed one, kept aside
    tags = events(run).Tags()
    assert {"guard/trigger/entropy", "guard/rollback", "guard/rollbacks"} <= set(tags["scalars"])
    assert "guard/events/text_summary" in tags["tensors"]
    assert [e.step for e in events(run).Scalars("guard/rollback")] == [COLLAPSE_STEP]  # first step after it

    # The restored state is the checkpoint's, byte for byte.
    (taken,) = snapshot.taken
    checkpoint = run / f"checkpoint-{COLLAPSE_STEP - 1}"
    assert taken["global_step"] == COLLAPSE_STEP - 1
    saved_weights = load_file(str(checkpoint / "model.safetensors"))
    assert_same_tensors({k: taken["weights"][k] for k in saved_weights}, saved_weights)
    assert_same_tensors(taken["optimizer"], torch.load(checkpoint / "optimizer.pt", weights_only=True))
    assert taken["store"] == store_rows(checkpoint / STORE_FILE)

    # Training went on to the last step and the entropy is back where it was before the collapse.
    assert json.loads((run / "checkpoint-6" / STATE_FILE).read_text())["step"] == 6
    guarded = entropy_curve(run)
    assert sorted(guarded) == [1, 2, 3, 4, 5, 6]
    before = min(guarded[s] for s in range(1, COLLAPSE_STEP))
    assert all(guarded[s] > before - 1.0 for s in range(COLLAPSE_STEP, 7))
    assert row["value"] < before - 1.0

    # The same setup without the guard: the entropy stays collapsed to the end.
    unguarded = tmp_path / "unguarded"
    config = parse_config([*TINY, "--output_dir", str(unguarded), "--guards", json.dumps({"triggers": []})])
    assert _train(config, callbacks=[Collapse()]) == 0
    collapsed = entropy_curve(unguarded)
    assert all(collapsed[s] < before - 1.0 for s in range(COLLAPSE_STEP, 7))
    assert guard_rows(unguarded) == []

    # A resume after the rollback continues from step 6 with the guard's history (no second rollback allowed).
    assert (
        main([*TINY, "--max_steps", "7", "--output_dir", str(run), "--resume", "--guards", json.dumps(ENTROPY_GUARD)])
        == 0
    )
    assert json.loads((run / "checkpoint-7" / STATE_FILE).read_text())["step"] == 7
    assert [r["action"] for r in guard_rows(run)] == ["rollback"]
    assert sorted(entropy_curve(run)) == [1, 2, 3, 4, 5, 6, 7]


def test_adjust_raises_temperature_and_penalty_within_bounds_and_stop_saves_and_ends(tmp_path: Path) -> None:
    run = tmp_path / "run"
    guards = {
        "triggers": [
            {"metric": "eval/heldout/accuracy", "below": 0.5, "window": 2, "action": "warn"},
            {"metric": "selfplay/step", "above": 1, "action": "adjust", "name": "late"},
            {"metric": "selfplay/{family}/solve/accuracy", "below": 2, "window": 3, "action": "stop"},
        ],
        "temperature_step": 0.25,
        "temperature_max": 1.3,
        "duplicate_penalty_step": 0.5,
        "duplicate_penalty_max": 0.8,
    }
    evaluated = ["--heldout_per_family", "2", "--eval_every", "1", "--temperature", "1.0"]
    assert main([*TINY, *evaluated, "--output_dir", str(run), "--guards", json.dumps(guards)]) == 0
    rows = guard_rows(run)
    actions = [(r["step"], r["action"]) for r in rows]
    assert actions == [(1, "warn"), (2, "adjust"), (3, "warn"), (3, "adjust"), (3, "stop")]
    assert [(r["step"], r["since"]) for r in rows if r["action"] == "warn"] == [(1, 0), (3, 2)]  # eval at step 0
    adjusted = [(r["temperature"], r["duplicate_penalty"]) for r in rows if r["action"] == "adjust"]
    assert adjusted == [(1.25, 0.5), (1.3, 0.8)]
    assert rows[-1]["trigger"] == "accuracy.code_deduction" and rows[-1]["family"] == "code_deduction"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert [e.value for e in events(run).Scalars("guard/temperature")] == pytest.approx([1.25, 1.3])


def test_guard_settings_are_checked() -> None:
    config = GuardsConfig.from_dict(ENTROPY_GUARD)
    assert config.triggers[0].label("") == "entropy" and config.triggers[0].window == 2
    (default,) = GuardsConfig.from_dict(None).triggers
    assert (default.action, default.above, default.label("math_deduction")) == (
        "warn",
        0.9,
        "duplicate_rate.math_deduction",
    )
    with pytest.raises(ValueError, match="exactly one of above, below, drop"):
        GuardsConfig.from_dict({"triggers": [{"metric": "train/entropy", "above": 1, "below": 0}]})
    with pytest.raises(ValueError, match="unknown settings"):
        GuardsConfig.from_dict({"max_rolbacks": 2})
    with pytest.raises(ValueError, match="window must be an integer"):
        GuardsConfig.from_dict({"triggers": [{"metric": "x", "below": 1, "window": 0}]})
