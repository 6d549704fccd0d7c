"""Reward shaping for both roles, as in AZR (Zhao et al. 2025, eq. 4–5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flywheel.envs.base import Verdict


@dataclass
class RewardConfig:
    solver_correct: float = field(default=1.0, metadata={"help": "Solver reward for a verified correct answer."})
    solver_wrong: float = field(default=-0.5, metadata={"help": "Solver reward for a well-formed wrong answer."})
    solver_format_error: float = field(default=-1.0, metadata={"help": "Solver reward when the answer cannot be read."})
    proposer_invalid: float = field(default=-1.0, metadata={"help": "Proposer reward for an invalid proposal."})
    learnability: Literal["azr", "peaked"] = field(
        default="azr",
        metadata={
            "help": "Proposer learnability shape from the solve rate p: 'azr' = 1-p (0 when p is 0 or 1); "
            "'peaked' = 4p(1-p), largest at p=0.5."
        },
    )

    def validate(self) -> None:
        if self.learnability not in ("azr", "peaked"):
            raise ValueError(f"learnability must be 'azr' or 'peaked', not {self.learnability!r}")
        if not self.solver_correct > self.solver_wrong:
            raise ValueError("solver_correct must exceed solver_wrong")

    def solver_reward(self, verdict: Verdict) -> float:
        if verdict.status == "correct":
            return self.solver_correct
        if verdict.status == "wrong":
            return self.solver_wrong
        return self.solver_format_error

    def proposer_reward(self, solve_rate: float | None) -> float:
        """`solve_rate` is the share of n solver attempts that were correct; None = invalid proposal."""
        if solve_rate is None:
            return self.proposer_invalid
        if not 0.0 <= solve_rate <= 1.0:
            raise ValueError(f"solve rate {solve_rate} outside [0, 1]")
        if self.learnability == "peaked":
            return 4.0 * solve_rate * (1.0 - solve_rate)
        return 0.0 if solve_rate in (0.0, 1.0) else 1.0 - solve_rate
