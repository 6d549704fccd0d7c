"""A learning test that can fail: on a deliberately easy solve-only family the tiny model's mean solver
reward must rise over a short seeded run.

The family asks for a digit and counts an answer correct when it contains one. A randomly initialised
tiny model does that in a few percent of its 8-token answers, so there is signal from the first step,
and a working policy-gradient update has to raise it. Threshold: the mean solver reward of the last
WINDOW steps must exceed that of the first WINDOW steps by MARGIN (see the constant for the measured
noise that justifies it). A broken advantage sign, a loss that ignores the advantages or a
batch whose rewards do not match its completions all leave the reward flat or falling.
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
from flywheel.envs import Prompt, Rejection, Task, TaskFamily, Verdict, register_family
from flywheel.train.run import main

STEPS = 24
WINDOW = 6
MARGIN = 0.3
# Measured (24 steps, seeds 0/1/2): last-minus-first window gain 1.70 / 1.42 / 1.28 with learning; with
# learning_rate 0 (same seeds) the difference is +0.04 / -0.01 / -0.06. 0.3 is 5x that noise and well
# below the smallest real gain.


@register_family
class SayDigit(TaskFamily):
    """Solve-only: 'Write the digit d.'; any digit in the answer counts as correct."""

    name = "test_say_digit"
    env_name = "TestSayDigit"
    domain = "test"
    mode = "deduction"

    def seed_tasks(self) -> list[Task]:
        return [self.make_task({"digit": d}) for d in range(10)]

    def proposer_prompt(self, references: Sequence[Task], rng: random.Random) -> Prompt:
        return Prompt("This family is solve-only.")

    def parse_proposal(self, text: str, prompt: Prompt) -> Mapping[str, Any] | Rejection:
        return Rejection("solve_only")

    def validate_proposals(self, proposals: Sequence[Mapping[str, Any]]) -> list[Task | Rejection]:
        return [Rejection("solve_only") for _ in proposals]

    def solver_prompt(self, task: Task) -> Prompt:
        return Prompt(f"Write the digit {task.payload['digit']}.")

    def verify(self, tasks: Sequence[Task], answers: Sequence[str]) -> list[Verdict]:
        return [Verdict("correct") if re.search(r"\d", a) else Verdict("format_error") for a in answers]

    def reference_answer(self, task: Task) -> str:
        return str(task.payload["digit"])

    def wrong_answer(self, task: Task) -> str:
        return "no digit"

    def dedup_key(self, payload: Mapping[str, Any]) -> str:
        return str(payload["digit"])

    def complexity(self, task: Task) -> int:
        return 1


def solver_rewards_by_step(run: Path) -> list[float]:
    with sqlite3.connect(run / "tasks.sqlite") as db:
        rows = db.execute("SELECT step, json_extract(result, '$.reward') FROM ledger WHERE role = 'solve'").fetchall()
    by_step: dict[int, list[float]] = {}
    for step, reward in rows:
        by_step.setdefault(step, []).append(reward)
    return [fmean(by_step[step]) for step in sorted(by_step)]


def train_easy_family(run: Path, seed: int) -> list[float]:
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "laptop.yaml"
    status = main(
        [
            "--config",
            str(recipe),
            "--output_dir",
            str(run),
            "--families",
            "test_say_digit",
            "--roles",
            "solve",
            "--solver_batch_size",
            "4",
            "--num_generations",
            "8",
            "--max_solver_completion_length",
            "8",
            "--advantage_estimator",
            "grpo",
            "--warm_start_steps",
            "0",
            "--learning_rate",
            "0.005",
            "--max_steps",
            str(STEPS),
            "--save_steps",
            "1000",
            "--report_to",
            "none",
            "--seed",
            str(seed),
        ]
    )
    # fmt: on
    assert status == 0
    return solver_rewards_by_step(run)


@pytest.mark.slow
def test_solver_reward_rises_on_an_easy_family(tmp_path: Path) -> None:
    rewards = train_easy_family(tmp_path / "run", seed=0)
    assert len(rewards) == STEPS
    first, last = fmean(rewards[:WINDOW]), fmean(rewards[-WINDOW:])
    assert last > first + MARGIN, f"solver reward did not rise: first {first:.3f}, last {last:.3f}, curve {rewards}"
