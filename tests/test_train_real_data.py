"""Held-out evaluation and real data in a real (tiny) training run: eval/ scalars at step 0, an intermediate
step and the end, the warm-start and final models (both loadable by `flywheel eval`), the printed
comparison, and real tasks mixed into the solver batches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import TINY_RUN_ARGS
from flywheel.train.evaluate import main as eval_main
from flywheel.train.run import main
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_train_e2e import documented_tags

CODE_ROWS = [
    {"code": "def f(x):\n    return x * 3", "input": "4", "output": "12"},
    {"code": "def f(s):\n    return s.upper()", "input": "'ab'", "output": "'AB'"},
]
TINY_RUN = [
    *TINY_RUN_ARGS,
    "--families", "code_deduction", "math_deduction",
    "--solver_batch_size", "2",
    "--max_proposer_completion_length", "8",
    "--save_steps", "3",
    "--warm_start_steps", "1",
    "--warm_start_examples", "4",
    "--warm_start_batch_size", "2",
    "--max_steps", "3",
    "--heldout_per_family", "2",
    "--eval_every", "2",
]  # fmt: skip


@pytest.mark.slow
def test_held_out_evaluation_and_real_tasks_in_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "cruxeval_like.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in CODE_ROWS))
    run = tmp_path / "run"
    argv = [*TINY_RUN, "--eval_files", str(rows), "--real_task_files", str(rows), "--real_task_share", "0.5"]
    assert main([*argv, "--output_dir", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "heldout/code_deduction" in printed and "cruxeval_like" in printed and "step 3" in printed

    events = EventAccumulator(str(run / "runs" / "selfplay"), size_guidance={"scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("eval/heldout/accuracy", "eval/heldout/math_deduction/accuracy", "eval/cruxeval_like/accuracy"):
        assert [event.step for event in events.Scalars(tag)] == [0, 2, 3], tag
        assert all(0.0 <= event.value <= 1.0 for event in events.Scalars(tag))
    real_share = [event.value for event in events.Scalars("selfplay/code_deduction/solve/real_share")]
    assert len(real_share) == 3 and all(0.0 <= share <= 1.0 for share in real_share) and sum(real_share) > 0
    assert "selfplay/math_deduction/solve/real_share" not in scalars  # no real math tasks

    documented = [pattern for pattern, _ in documented_tags()[0]]
    new_tags = [tag for tag in scalars if tag.startswith("eval/") or "/real_" in tag]
    assert [tag for tag in new_tags if not any(re.match(pattern, tag) for pattern in documented)] == []

    history = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in history] == [0, 2, 3]
    assert set(history[0]["metrics"]) >= {"eval/heldout/accuracy", "eval/cruxeval_like/code_deduction/accuracy"}

    for model in (run / "warm-start", run):
        output = tmp_path / f"{model.name}.jsonl"
        assert (
            eval_main(["--model", str(model), "--tasks", str(rows), "--max_new_tokens", "8", "--output", str(output)])
            == 0
        )
        assert json.loads(output.read_text().splitlines()[-1])["tasks"] == len(CODE_ROWS)
    # The final model's greedy answers are those its last evaluation scored.
    final = json.loads((tmp_path / "run.jsonl").read_text().splitlines()[-1])
    assert final["accuracy"] == history[-1]["metrics"]["eval/cruxeval_like/accuracy"]

    # A resumed run keeps the history up to its checkpoint, so the end table still starts at the warm start.
    assert main([*argv, "--output_dir", str(run), "--resume", "--max_steps", "4"]) == 0
    assert "step 0" in capsys.readouterr().out
    history = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in history] == [0, 2, 3, 4]


def test_real_tasks_must_belong_to_played_families(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    problems = tmp_path / "gsm.jsonl"
    problems.write_text(json.dumps({"question": "1 + 1?", "answer": "#### 2"}) + "\n")
    argv = [
        *TINY_RUN,
        "--heldout_per_family",
        "0",
        "--output_dir",
        str(tmp_path / "x"),
        "--real_task_files",
        str(problems),
    ]
    assert main([*argv, "--real_task_share", "0.5"]) == 2
    assert "not played: ['math_answer']" in capsys.readouterr().err
    assert main([*TINY_RUN, "--output_dir", str(tmp_path / "y"), "--real_task_share", "0.5"]) == 2
    assert "real_task_share > 0 needs real_task_files" in capsys.readouterr().err
    assert main([*argv, "--families", "code_deduction", "math_answer"]) == 2
    assert "['math_answer'] are solve-only" in capsys.readouterr().err


@pytest.mark.slow
def test_word_problems_in_the_loop_with_a_solve_only_family(tmp_path: Path) -> None:
    problems = tmp_path / "gsm.jsonl"
    problems.write_text(
        "".join(json.dumps({"question": f"{n} + 1?", "answer": f"#### {n + 1}"}) + "\n" for n in range(3))
    )
    run = tmp_path / "run"
    argv = [*TINY_RUN, "--families", "math_answer", "--roles", "solve", "--heldout_per_family", "0", "--max_steps", "1"]
    argv += ["--real_task_files", str(problems), "--real_task_share", "1.0", "--output_dir", str(run)]
    assert main(argv) == 0
    events = EventAccumulator(str(run / "runs" / "selfplay"), size_guidance={"scalars": 0})
    events.Reload()
    (real_tag,) = [tag for tag in events.Tags()["scalars"] if tag.endswith("selfplay/math_answer/solve/real_share")]
    assert [event.value for event in events.Scalars(real_tag)] == [1.0]
