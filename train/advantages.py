"""Advantage estimators for the self-play batch.

Both estimators are critic-free: a rollout's advantage is its reward minus a baseline computed from
other rollouts in the same batch, optionally divided by their spread.

* ``grpo`` — GRPO group normalisation (Shao et al. 2024): the baseline is the mean reward of the
  ``num_generations`` rollouts sampled from the *same prompt*; ``scale="group"`` divides by that
  group's standard deviation, ``"batch"`` by the whole batch's, ``"none"`` does not divide (Dr. GRPO).
* ``trr++`` — AZR's task-relative REINFORCE++ (Zhao et al. 2025, arXiv 2505.03335, eq. 8): rewards are
  whitened separately for each (family × mode × role) over the batch, i.e. ``(r - mean_key) / std_key``
  where ``key`` is e.g. ``code_deduction/propose``. Prompt groups play no part.

Standard deviations use Bessel's correction (as TRL's ``nanstd``); ``eps`` keeps the division finite when
every reward in a group is equal, in which case the advantage is exactly 0 (no learning signal).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

Estimator = Literal["grpo", "trr++"]
ESTIMATORS: tuple[str, ...] = ("grpo", "trr++")


def _normalise_within(rewards: torch.Tensor, keys: Sequence[Hashable], scale: bool, eps: float) -> torch.Tensor:
    """Subtract each key's mean (and divide by its std when `scale`); singleton keys get advantage 0."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        members[key].append(index)
    advantages = torch.zeros_like(rewards)
    for index_list in members.values():
        index = torch.tensor(index_list, device=rewards.device)
        group = rewards[index]
        centred = group - group.mean()
        if scale and len(index_list) > 1:
            centred = centred / (group.std(unbiased=True) + eps)
        advantages[index] = centred
    return advantages


def grpo_advantages(
    rewards: torch.Tensor,
    group_ids: Sequence[Hashable],
    scale: Literal["group", "batch", "none"] = "group",
    eps: float = 1e-4,
) -> torch.Tensor:
    """GRPO: ``A_i = (r_i - mean(group)) / (std(group) + eps)``, groups being rollouts of one prompt."""
    if len(group_ids) != rewards.numel():
        raise ValueError(f"{len(group_ids)} group ids for {rewards.numel()} rewards")
    advantages = _normalise_within(rewards, group_ids, scale=scale == "group", eps=eps)
    if scale == "batch" and rewards.numel() > 1:
        advantages = advantages / (rewards.std(unbiased=True) + eps)
    return advantages


def trr_advantages(rewards: torch.Tensor, task_keys: Sequence[Hashable], eps: float = 1e-4) -> torch.Tensor:
    """TRR++ (AZR eq. 8): ``A = (r - mean_key) / (std_key + eps)`` with key = family × mode × role."""
    if len(task_keys) != rewards.numel():
        raise ValueError(f"{len(task_keys)} task keys for {rewards.numel()} rewards")
    return _normalise_within(rewards, task_keys, scale=True, eps=eps)


def compute_advantages(
    estimator: Estimator,
    rewards: torch.Tensor,
    group_ids: Sequence[Hashable],
    task_keys: Sequence[Hashable],
    scale: Literal["group", "batch", "none"] = "group",
) -> torch.Tensor:
    """Dispatch on the recipe's ``advantage_estimator``."""
    if estimator == "grpo":
        return grpo_advantages(rewards, group_ids, scale=scale)
    if estimator == "trr++":
        return trr_advantages(rewards, task_keys)
    raise ValueError(f"advantage_estimator must be one of {ESTIMATORS}, not {estimator!r}")


Gather = Callable[[list[Any]], list[Any]]
"""Every process's list in process order, on every process (`accelerate.utils.gather_object`; for one process,
the list itself)."""


@dataclass
class GlobalAdvantages:
    """Advantages over the rollouts of all processes, in process order, and where this process's rows are."""

    rewards: list[float]
    groups: list[Hashable]
    """Each rollout's prompt group, told apart by process: ``(process index, group)``."""
    keys: list[str]
    advantages: torch.Tensor
    rows: slice
    """This process's rows of the global batch."""

    def local(self) -> torch.Tensor:
        """This process's advantages."""
        return self.advantages[self.rows]


def global_advantages(
    estimator: Estimator,
    rewards: Sequence[float],
    group_ids: Sequence[Hashable],
    task_keys: Sequence[Hashable],
    *,
    scale: Literal["group", "batch", "none"] = "group",
    process_index: int = 0,
    gather: Gather = lambda rows: rows,
) -> GlobalAdvantages:
    """`compute_advantages` over the global batch: this process's rollouts (`rewards`, its prompt `group_ids`,
    `task_keys`) gathered with every other process's, so group and key statistics cover all processes' rollouts.
    Every process calls it (it is a collective operation when `gather` is)."""
    local = [
        (float(reward), (process_index, group), key)
        for reward, group, key in zip(rewards, group_ids, task_keys, strict=True)
    ]
    per_process = gather([local])
    start = sum(len(rows) for rows in per_process[:process_index])
    everything = [row for rows in per_process for row in rows]
    groups = [row[1] for row in everything]
    keys = [row[2] for row in everything]
    all_rewards = [row[0] for row in everything]
    advantages = compute_advantages(
        estimator, torch.tensor(all_rewards, dtype=torch.float32), groups, keys, scale=scale
    )
    return GlobalAdvantages(all_rewards, groups, keys, advantages, slice(start, start + len(local)))


def no_signal_share(rewards: torch.Tensor, group_ids: Sequence[Hashable]) -> float:
    """Share of groups whose rewards are all equal (zero advantage for every member under GRPO)."""
    members: dict[Hashable, list[float]] = defaultdict(list)
    for key, reward in zip(group_ids, rewards.tolist(), strict=True):
        members[key].append(reward)
    if not members:
        return 0.0
    flat = sum(1 for values in members.values() if max(values) - min(values) < 1e-9)
    return flat / len(members)
