"""Benchmark scripts run as a user would: benchmarks/warm_start_solver.py on a run directory holding the tiny model
as its warm start, benchmarks/solver_sft.py for a few seconds, benchmarks/learning.py on one seed of a shrunk
recipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from flywheel.agents import build_tiny_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "warm_start_solver.py"


def test_prints_greedy_and_sampled_accuracy_per_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(build_tiny_model(), run / "warm-start")
    recipe = {"template": "plain", "family_configs": {"code_deduction": {"terse_prompts": True}}}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    argv = [sys.executable, str(SCRIPT), str(run), "--tasks", "4"]
    done = subprocess.run([*argv, "--samples", "2"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    prompts, header, row = done.stdout.splitlines()[-3:]
    assert prompts.startswith("prompts: template plain, code_deduction settings") and "'terse_prompts': True" in prompts
    assert header.split() == ["run", "greedy", "sampled", "pass@2", "format", "errors"]
    name, *figures = row.split()
    assert name == str(run) and len(figures) == 4 and all(0.0 <= float(value) <= 1.0 for value in figures)
    # An untrained model writes no answer format: every sampled answer is a format error.
    assert float(figures[3]) == 1.0
    heldout = subprocess.run([*argv, "--heldout"], capture_output=True, text=True, timeout=300, check=False)
    assert heldout.returncode == 0, heldout.stderr
    assert heldout.stdout.splitlines()[-1].split()[1:] == ["0.000", "0.000", "0.000", "1.000"]


def test_refuses_an_unknown_template_and_a_single_sample(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "--template", "bare"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "invalid choice: 'bare'" in done.stderr
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "--samples", "1"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "--samples must be at least 2" in done.stderr


def test_solver_sft_prints_accuracy_after_each_round() -> None:
    argv = [sys.executable, str(BENCHMARKS / "solver_sft.py"), "--prompts", "terse", "--minutes", "0.01"]
    done = subprocess.run(
        [*argv, "--rounds", "2", "--examples", "16"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    head, *rounds = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert head["prompts"] == "terse" and head["examples"] == 16 and head["prompt_tokens"] < 120
    assert len(rounds) == 2 and rounds[0]["steps"] >= 1 and rounds[1]["steps"] > rounds[0]["steps"]
    assert all(0.0 <= entry[source] <= 1.0 for entry in rounds for source in ("unseen", "heldout"))


def test_learning_runs_the_three_arms_and_reports_both_sets(tmp_path: Path) -> None:
    """benchmarks/learning.py on one seed of the laptop recipe shrunk to seconds (see `TINY_RUN_ARGS`)."""
    from conftest import TINY_RUN_ARGS

    shrunk = [
        *TINY_RUN_ARGS[2:],
        "--warm_start_steps", "2",
        "--warm_start_examples", "8",
        "--max_steps", "1",
        "--max_proposer_completion_length", "8",
    ]  # fmt: skip
    argv = [sys.executable, str(BENCHMARKS / "learning.py"), "--seeds", "0", "--parallel", "1", "--per_family", "2"]
    done = subprocess.run(
        [*argv, "--logs", str(tmp_path), "--", *shrunk], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr + (tmp_path / "seed0.log").read_text()
    result = json.loads((tmp_path / "seed0.json").read_text())
    assert result["tasks"] == {"heldout": 4, "in_distribution": 4}
    for arm in ("warm_start", "self_play", "more_warm_start"):
        for name in ("heldout", "in_distribution"):
            figures = result[arm][name]
            assert set(figures) == {"all", "code_deduction", "math_deduction"}, (arm, name)
            assert all(0.0 <= value <= 1.0 for value in figures.values())
    assert "in_distribution: arm (code_deduction, math_deduction)" in done.stdout
    assert "self-play gain over warm start" in done.stdout
