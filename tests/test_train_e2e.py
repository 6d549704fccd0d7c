"""End to end: a 2-step format warm-up, 3 self-play steps of the tiny model over code and math families on
CPU, checkpoints, TensorBoard tags as documented, then a resume (no second warm-up) that continues from
step 3 in the same run dir."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import TINY_RUN_ARGS, interrupt_training
from flywheel.train.run import main
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
SMALL = [
    *TINY_RUN_ARGS,
    "--families", "code_deduction", "math_deduction",
    "--solver_batch_size", "1",
    "--max_proposer_completion_length", "16",
    "--save_steps", "3",
    "--text_log_every", "2",
    "--warm_start_steps", "2",
    "--warm_start_examples", "8",
    "--warm_start_batch_size", "2",
]  # fmt: skip


def documented_tags() -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """(pattern, always written) for scalar and histogram/text rows of the README's tag tables."""
    scalars, others = [], []
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|\s*(scalar|histogram|text|layout)\s*\|\s*(always|sometimes)\s*\|", line)
        if match:
            tag, kind, when = match.groups()
            pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[A-Za-z0-9_.-]+", re.escape(tag)) + "$"
            (scalars if kind == "scalar" else others).append((pattern, when == "always"))
    return scalars, others


def check_documented(written: set[str], documented: list[tuple[str, bool]]) -> None:
    undocumented = sorted(tag for tag in written if not any(re.match(p, tag) for p, _ in documented))
    assert not undocumented, f"tags written but not documented in README.md: {undocumented}"
    missing = [p for p, always in documented if always and not any(re.match(p, tag) for tag in written)]
    assert not missing, f"documented 'always' tags not written: {missing}"


@pytest.mark.slow
def test_three_steps_checkpoint_tensorboard_and_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main([*SMALL, "--max_steps", "3", "--output_dir", str(run)]) == 0
    checkpoint = run / "checkpoint-3"
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json", "selfplay_state.json", "tasks.sqlite"):
        assert (checkpoint / name).is_file(), name
    assert json.loads((checkpoint / "selfplay_state.json").read_text())["step"] == 3
    with sqlite3.connect(run / "tasks.sqlite") as db:
        roles = {row[0] for row in db.execute("SELECT DISTINCT role FROM ledger")}
        steps = {row[0] for row in db.execute("SELECT DISTINCT step FROM ledger")}
    assert {"propose", "solve"} <= roles and steps == {1, 2, 3}

    # A fresh run refuses an existing run dir; --resume continues it.
    assert main([*SMALL, "--max_steps", "5", "--output_dir", str(run)]) == 2
    assert main([*SMALL, "--max_steps", "5", "--output_dir", str(run), "--resume"]) == 0
    state = json.loads((run / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    assert json.loads((run / "checkpoint-5" / "selfplay_state.json").read_text())["step"] == 5

    runs = list((run / "runs").iterdir())
    assert [p.name for p in runs] == ["selfplay"], "a resumed run must write to the same TensorBoard run dir"
    events = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    step_curve = [(e.step, e.value) for e in events.Scalars("selfplay/step")]
    assert step_curve == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]
    warm_start_steps = [e.step for e in events.Scalars("warm_start/loss")]
    assert warm_start_steps == [-1, 0], "the warm-up runs once, before step 1, and not again on --resume"
    scalar_docs, other_docs = documented_tags()
    check_documented(set(tags["scalars"]), scalar_docs)
    text_tags = {tag.removesuffix("/text_summary") for tag in tags["tensors"]}
    check_documented(set(tags["histograms"]) | text_tags, other_docs)


def test_bad_recipes_fail_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--output_dir", str(tmp_path / "x")]
    assert main([*SMALL, *out, "--families", "code_deduction", "no_such_family"]) == 2
    assert "unknown families ['no_such_family']" in capsys.readouterr().err
    assert main([*SMALL, *out, "--no_such_key", "1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("families: [code_deduction]\nlearning_rat: 0.1\n")
    assert main(["--config", str(recipe), *out]) == 2
    assert "learning_rat" in capsys.readouterr().err
    assert main([*SMALL, *out, "--advantage_estimator", "ppo"]) == 2
    assert "advantage_estimator" in capsys.readouterr().err
    assert main([*SMALL, *out, "--resume"]) == 2
    assert "no checkpoint-*" in capsys.readouterr().err
    missing = str(tmp_path / "missing.jsonl")
    assert main([*SMALL, "--output_dir", str(tmp_path / "e"), "--eval_files", missing]) == 2
    assert "No such file" in capsys.readouterr().err
    assert main([*SMALL, "--output_dir", str(tmp_path / "s"), "--seed_files", f"code_deduction={missing}"]) == 2
    assert "No such file" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"family": "code_deduction"}\n')
    assert main([*SMALL, "--output_dir", str(tmp_path / "b"), "--eval_files", str(broken)]) == 2
    assert "broken.jsonl line 1" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes(tmp_path: Path) -> None:
    """SIGINT to a real `flywheel train` process after its first step: it finishes the step, saves, exits 130,
    and `--resume` continues from the saved step."""
    run = tmp_path / "run"
    argv = [*SMALL, "--warm_start_steps", "0", "--max_steps", "500", "--save_steps", "500", "--output_dir", str(run)]
    status, stderr = interrupt_training(argv, rb"self-play:.*\| [1-9]\d*/500")
    assert status == 130, stderr[-2000:]
    assert "checkpoint saved" in stderr
    saved = sorted(int(path.name.split("-")[1]) for path in run.glob("checkpoint-*"))
    assert saved and saved[-1] >= 1
    step = saved[-1]
    assert json.loads((run / f"checkpoint-{step}" / "selfplay_state.json").read_text())["step"] == step

    resumed = [*argv[:-4], "--max_steps", str(step + 1), "--output_dir", str(run), "--resume"]
    assert main(resumed) == 0
    assert json.loads((run / f"checkpoint-{step + 1}" / "trainer_state.json").read_text())["global_step"] == step + 1
