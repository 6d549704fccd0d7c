"""Reward shaping for both roles, as in AZR (Zhao et al. 2025, eq. 4–5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flywheel.envs.base import Verdict
from flywheel.envs.gate import DUPLICATE


@dataclass
class RewardConfig:
    solver_correct: float = field(default=1.0, metadata={"help": "Solver reward for a verified correct answer."})
    solver_wrong: float = field(default=-0.5, metadata={"help": "Solver reward for a well-formed wrong answer."})
    solver_format_error: float = field(default=-1.0, metadata={"help": "Solver reward when the answer cannot be read."})
    proposer_invalid: float = field(default=-1.0, metadata={"help": "Proposer reward for an invalid proposal."})
    duplicate_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Subtracted from proposer_invalid for a proposal the data gate rejects as a duplicate of a "
            "buffer task (after normalisation); at least 0, so a duplicate never beats an invalid or a new task."
        },
    )
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
        if self.duplicate_penalty < 0:
            raise ValueError(f"duplicate_penalty must be at least 0, not {self.duplicate_penalty}")
        if self.proposer_invalid > 0.0:
            raise ValueError(
                f"proposer_invalid must be at most 0, a valid task's lowest reward, not {self.proposer_invalid}"
            )

    def solver_reward(self, verdict: Verdict) -> float:
        if verdict.status == "correct":
            return self.solver_correct
        if verdict.status == "wrong":
            return self.solver_wrong
        return self.solver_format_error

    def proposer_reward(self, solve_rate: float | None, reason: str = "") -> float:
        """`solve_rate` is the share of n solver attempts that were correct; None = a rejected proposal, whose
        rejection `reason` `DUPLICATE` (the data gate's) costs `duplicate_penalty` more."""
        if solve_rate is None:
            return self.proposer_invalid - (self.duplicate_penalty if reason == DUPLICATE else 0.0)
        if not 0.0 <= solve_rate <= 1.0:
            raise ValueError(f"solve rate {solve_rate} outside [0, 1]")
        if self.learnability == "peaked":
            return 4.0 * solve_rate * (1.0 - solve_rate)
        return 0.0 if solve_rate in (0.0, 1.0) else 1.0 - solve_rate
