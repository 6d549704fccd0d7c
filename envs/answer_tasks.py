"""``math_answer``: a problem in words with a known final answer (MATH, GSM8K), checked by the math checker.

Unlike the self-play families, the gold answer comes from the task's source (a benchmark file read by
`flywheel.envs.task_files`), not from a computation, so nothing a model proposes could be verified:
the family is **solve-only**. Every proposal is rejected with the reason ``solve_only``; play it with
``roles: [solve]``, or use its tasks for evaluation and as real data in the loop (docs/evaluation.md).

The solver answers in the same format as ``math_deduction``: one ```answer block inside <answer>, plain
SymPy syntax or LaTeX (a ``\\boxed{...}`` inside it is read too). The checker compares it with the gold answer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.envs.base import Prompt, Rejection, Task
from flywheel.envs.math_tasks import (
    ANSWER_RULES,
    FORMAT_RULES,
    MathFamily,
    MathFamilyConfig,
    _absent_integer,
    normalise,
)
from flywheel.envs.parsing import format_answer
from flywheel.envs.registry import register_family
from flywheel.verifiers.math import ComputeRequest, ComputeResult

SEED_PROBLEMS: tuple[dict[str, str], ...] = (
    {"problem": "What is 7 times 8?", "answer": "56"},
    {"problem": "Solve for x: 2x + 3 = 11.", "answer": "4"},
    {"problem": "What is 1/2 + 1/3? Give a fraction in lowest terms.", "answer": "\\frac{5}{6}"},
)
"""Zero-data seeds: the family's tasks otherwise come from task files."""

ANSWER_ONLY = "Give only the final answer: a number or an expression, without units or thousands separators."


@dataclass
class MathAnswerConfig(MathFamilyConfig):
    """The math families' settings (`max_answer_chars` bounds the gold answer) plus the problem's length."""

    max_problem_chars: int = field(default=8000, metadata={"help": "Longest accepted problem text."})

    def validate(self) -> None:
        super().validate()
        if self.max_problem_chars < 1:
            raise ValueError(f"max_problem_chars must be positive, not {self.max_problem_chars}")


@register_family
class MathAnswer(MathFamily):
    """Given a problem, give its final answer; correct when the math checker finds it equal to the gold one."""

    name = "math_answer"
    env_name = "MathAnswer"
    mode = "deduction"
    roles = ("solve",)
    config_class = MathAnswerConfig
    config: MathAnswerConfig  # type: ignore[assignment]

    def _seed_proposals(self) -> Sequence[Mapping[str, Any]]:
        return SEED_PROBLEMS

    # --- proposer side: solve-only ---------------------------------------------------------------------
    def proposer_prompt(self, references: Sequence[Task], rng: random.Random) -> Prompt:
        text = (
            "## Task: none to propose\n\nmath_answer tasks come from task files with known answers "
            "(MATH, GSM8K); proposals are not accepted."
        )
        return Prompt(text=text, context={"references": [task.task_id for task in references]})

    def parse_proposal(self, text: str, prompt: Prompt) -> Mapping[str, Any] | Rejection:
        return Rejection("solve_only", "math_answer tasks come from task files, not proposals")

    def validate_proposals(self, proposals: Sequence[Mapping[str, Any]]) -> list[Task | Rejection]:
        """Tasks from ``{"problem", "answer"}`` rows: bounds, then the self-check that the gold answer,
        given as an answer, verifies (so an answer the checker cannot read never becomes a task)."""
        built: list[Task | Rejection] = []
        for proposal in proposals:
            problem, answer = proposal.get("problem"), proposal.get("answer")
            if not isinstance(problem, str) or not problem.strip() or not isinstance(answer, str) or not answer.strip():
                built.append(Rejection("parse_error", "a problem and an answer text are needed"))
            elif len(problem) > self.config.max_problem_chars:
                built.append(Rejection("problem_too_long", f"{len(problem)} > {self.config.max_problem_chars} chars"))
            elif len(answer) > self.config.max_answer_chars:
                built.append(Rejection("answer_too_long", f"{len(answer)} > {self.config.max_answer_chars} chars"))
            else:
                built.append(self.make_task({"problem": problem.strip(), "answer": answer.strip()}))
        return self._self_checked(built)

    # --- solver side ------------------------------------------------------------------------------------
    def solver_prompt(self, task: Task) -> Prompt:
        example = format_answer(("answer", "..."), think="...")
        text = (
            f"## Task: solve the problem\n\n{task.payload['problem']}\n\n"
            + self.instructions(f"{ANSWER_ONLY} {ANSWER_RULES}")
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text)

    def _answer_requests(self, task: Task, answer: str) -> list[ComputeRequest]:
        return []

    def _answer_pairs(self, task: Task, answer: str, results: Sequence[ComputeResult]) -> list[tuple[str, str]]:
        return [(task.payload["answer"], answer)]

    def reference_answer(self, task: Task) -> str:
        return format_answer(("answer", task.payload["answer"]))

    def wrong_answer(self, task: Task) -> str:
        """An integer with more digits than any number in the gold answer."""
        return format_answer(("answer", _absent_integer(task.payload["answer"])))

    # --- bookkeeping -------------------------------------------------------------------------------------
    def dedup_key(self, payload: Mapping[str, Any]) -> str:
        return json.dumps([normalise(payload["problem"]), normalise(payload["answer"])])

    def complexity(self, task: Task) -> int:
        """Words in the problem."""
        return len(task.payload["problem"].split())
