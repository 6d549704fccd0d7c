"""Scoring self-play rollouts: the one path the Gymnasium environments and the trainer share.

A proposal is parsed and validated by its family, a valid one is attempted `n` times by a solver to
estimate its solve rate, its reward follows `RewardConfig`, and valid tasks join a buffer; a solver answer
is verified by its task's family and rewarded. `flywheel.envs.gym_envs` and `flywheel.train.trainer` both
call these functions (each family once per batch), so the same text gets the same verdict, reward and buffer
effect in an environment and in training. Generation is not done here: callers pass a `Sampler`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from flywheel.envs.base import Prompt, Rejection, Task, TaskFamily, Verdict
from flywheel.envs.buffer import AddResult
from flywheel.envs.gate import Gate
from flywheel.envs.rewards import RewardConfig

NOT_TEXT = "output is not text"
"""The verdict or rejection detail for an output that is not a `str` (e.g. a non-text Gymnasium action)."""

Timer = Callable[[str], AbstractContextManager[Any]]
"""Times a named phase (``validate``, ``verify``); e.g. `flywheel.train.metrics.StepRecord.timed`."""
Sampler = Callable[[Sequence[Prompt], int], Sequence[str]]
"""Given solver prompts and n, n outputs per prompt, grouped by prompt (all of the first prompt's first)."""


def untimed(name: str) -> AbstractContextManager[Any]:
    """The default `Timer`: times nothing."""
    return nullcontext()


@dataclass
class Proposal:
    """One proposer output: what was asked, what came back, and how it scored."""

    family: str
    prompt: Prompt
    text: Any
    result: Task | Rejection
    solve_rate: float | None = None
    reward: float = 0.0
    complexity: int | None = None

    @property
    def task(self) -> Task | None:
        return self.result if isinstance(self.result, Task) else None

    @property
    def rejection(self) -> Rejection | None:
        return self.result if isinstance(self.result, Rejection) else None


@dataclass
class Answer:
    """One solver output, scored: a trained rollout, a solve-rate attempt or an environment action."""

    family: str
    task: Task
    prompt: Prompt
    text: Any
    verdict: Verdict
    reward: float


def _check_known(families: Mapping[str, TaskFamily], names: set[str]) -> None:
    unknown = names - set(families)
    if unknown:
        raise ValueError(f"no family given for {sorted(unknown)}; given: {sorted(families)}")


def score_answers(
    families: Mapping[str, TaskFamily],
    tasks: Sequence[Task],
    prompts: Sequence[Prompt],
    texts: Sequence[Any],
    rewards: RewardConfig,
    timer: Timer = untimed,
) -> list[Answer]:
    """Verify each text against its task (one batched `verify` call per family) and reward it, in input order.

    A text that is not a `str` is a format error and never reaches the family.
    """
    _check_known(families, {task.family for task in tasks})
    verdicts = [Verdict("format_error", NOT_TEXT)] * len(tasks)
    with timer("verify"):
        for name, family in families.items():
            rows = [i for i, task in enumerate(tasks) if task.family == name and isinstance(texts[i], str)]
            if rows:
                checked = family.verify([tasks[i] for i in rows], [texts[i] for i in rows])
                for i, verdict in zip(rows, checked, strict=True):
                    verdicts[i] = verdict
    return [
        Answer(task.family, task, prompt, text, verdict, rewards.solver_reward(verdict))
        for task, prompt, text, verdict in zip(tasks, prompts, texts, verdicts, strict=True)
    ]


def validate_proposals(
    families: Mapping[str, TaskFamily],
    asked: Sequence[tuple[str, Prompt]],
    texts: Sequence[Any],
    timer: Timer = untimed,
    gates: Mapping[str, Gate] | None = None,
) -> list[Proposal]:
    """Parse and validate each text with the family it was asked of (one `propose` call per family), in input
    order. `asked` holds the family name and proposer prompt of each text. A text that is not a `str` is a
    ``parse_error`` rejection. A family's `gates` entry then rejects duplicates of its buffer's tasks and
    structures over their quota (`flywheel.envs.gate`)."""
    _check_known(families, {name for name, _ in asked})
    results: list[Task | Rejection] = [Rejection("parse_error", NOT_TEXT)] * len(asked)
    with timer("validate"):
        for name, family in families.items():
            rows = [i for i, (owner, _) in enumerate(asked) if owner == name and isinstance(texts[i], str)]
            if rows:
                proposed = family.propose([texts[i] for i in rows], [asked[i][1] for i in rows])
                if gates is not None and name in gates:
                    proposed = gates[name].screen(proposed)
                for i, result in zip(rows, proposed, strict=True):
                    results[i] = result
    return [
        Proposal(name, prompt, text, result) for (name, prompt), text, result in zip(asked, texts, results, strict=True)
    ]


def estimate_prompts(families: Mapping[str, TaskFamily], proposals: Sequence[Proposal]) -> list[Prompt]:
    """The solver prompts `score_proposals` passes its `Sampler`: one per valid proposal, in proposal order."""
    return [families[p.family].solver_prompt(p.task) for p in proposals if p.task is not None]


def score_proposals(
    families: Mapping[str, TaskFamily],
    proposals: Sequence[Proposal],
    rewards: RewardConfig,
    sample: Sampler | None = None,
    n: int = 1,
    timer: Timer = untimed,
) -> list[Answer]:
    """Estimate the solve rate of every valid proposal and set every proposal's reward and complexity.

    With a `sample`r, each valid task is attempted `n` times (one `sample` call for all) and its solve rate is
    the share of correct attempts; the reward is `rewards.proposer_reward(solve rate)`. Without one, a valid
    proposal keeps the solve rate it has: with none, its reward is 0 (validity only). A rejection gets
    `proposer_invalid` (less a penalty for some reasons, see `RewardConfig.proposer_reward`). Returns the scored
    attempts, `n` per valid task in proposal order.
    """
    if n < 1:
        raise ValueError(f"n must be positive, not {n}")
    valid = [proposal for proposal in proposals if proposal.task is not None]
    attempts: list[Answer] = []
    if sample is not None and valid:
        prompts = estimate_prompts(families, proposals)
        texts = list(sample(prompts, n))
        if len(texts) != n * len(prompts):
            raise ValueError(f"the sampler gave {len(texts)} outputs for {len(prompts)} prompts x {n}")
        tasks = [p.task for p in valid for _ in range(n)]
        attempts = score_answers(families, tasks, [q for q in prompts for _ in range(n)], texts, rewards, timer)  # type: ignore[arg-type]
        for j, proposal in enumerate(valid):
            proposal.solve_rate = sum(a.verdict.correct for a in attempts[j * n : (j + 1) * n]) / n
    for proposal in proposals:
        if proposal.rejection is not None:
            proposal.reward = rewards.proposer_reward(None, proposal.rejection.reason)
            continue
        estimated = proposal.solve_rate is not None
        proposal.reward = rewards.proposer_reward(proposal.solve_rate) if estimated else 0.0
        proposal.complexity = families[proposal.family].complexity(proposal.task)
    return attempts


def add_valid(gate: Gate, proposals: Sequence[Proposal], step: int = 0) -> AddResult:
    """Add the valid proposals' tasks to the gate's buffer (duplicates are counted, not stored)."""
    return gate.admit([p.task for p in proposals if p.task is not None], step=step)
