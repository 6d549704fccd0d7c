"""Advantage estimators, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from flywheel.train.advantages import compute_advantages, grpo_advantages, no_signal_share, trr_advantages

EPS = 1e-4


def test_grpo_normalises_within_each_prompt_group() -> None:
    # Group a: rewards 1, -1 -> mean 0, unbiased std sqrt(2) -> +-1/sqrt(2).
    # Group b: rewards 1, 1, -0.5, -0.5 -> mean 0.25, deviations +-0.75, unbiased std sqrt(4*0.5625/3) = sqrt(0.75).
    rewards = torch.tensor([1.0, -1.0, 1.0, 1.0, -0.5, -0.5])
    groups = ["a", "a", "b", "b", "b", "b"]
    got = grpo_advantages(rewards, groups, eps=EPS)
    a = 1 / (math.sqrt(2) + EPS)
    b = 0.75 / (math.sqrt(0.75) + EPS)
    assert got.tolist() == pytest.approx([a, -a, b, b, -b, -b])


def test_grpo_equal_rewards_give_zero_and_none_scaling_only_centres() -> None:
    rewards = torch.tensor([-1.0, -1.0, 0.5, -0.5])
    groups = [0, 0, 1, 1]
    assert grpo_advantages(rewards, groups).tolist() == pytest.approx(
        [0.0, 0.0, 0.5 / (math.sqrt(0.5) + EPS), -0.5 / (math.sqrt(0.5) + EPS)]
    )
    assert grpo_advantages(rewards, groups, scale="none").tolist() == pytest.approx([0.0, 0.0, 0.5, -0.5])
    # Batch scaling: centred per group, divided by the std of all four rewards.
    batch_std = torch.tensor([-1.0, -1.0, 0.5, -0.5]).std().item()
    assert grpo_advantages(rewards, groups, scale="batch").tolist() == pytest.approx(
        [0.0, 0.0, 0.5 / (batch_std + EPS), -0.5 / (batch_std + EPS)]
    )


def test_trr_whitens_per_family_mode_role_ignoring_prompt_groups() -> None:
    # code_deduction/propose: 0, 1, -1 -> mean 0, unbiased std 1 -> 0, 1, -1.
    # code_deduction/solve: 1, -0.5 -> mean 0.25, std sqrt(2*0.5625) = 1.0607 -> +-0.75/1.0607.
    # math_induction/solve: a single reward -> 0.
    rewards = torch.tensor([0.0, 1.0, -1.0, 1.0, -0.5, 1.0])
    keys = ["code_deduction/propose"] * 3 + ["code_deduction/solve"] * 2 + ["math_induction/solve"]
    got = trr_advantages(rewards, keys, eps=EPS)
    s = 0.75 / (math.sqrt(1.125) + EPS)
    assert got.tolist() == pytest.approx([0.0, 1 / (1 + EPS), -1 / (1 + EPS), s, -s, 0.0])


def test_dispatch_and_errors() -> None:
    rewards = torch.tensor([1.0, 0.0])
    assert compute_advantages("grpo", rewards, [0, 0], ["x", "y"]).tolist() == pytest.approx(
        [0.7071, -0.7071], abs=1e-3
    )
    # Same rewards under TRR++ with different keys: each key is a singleton -> 0.
    assert compute_advantages("trr++", rewards, [0, 0], ["x", "y"]).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="advantage_estimator"):
        compute_advantages("ppo", rewards, [0, 0], ["x", "x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group ids"):
        grpo_advantages(rewards, [0])


def test_no_signal_share_counts_flat_groups() -> None:
    assert no_signal_share(torch.tensor([1.0, 1.0, 0.0, 1.0, -1.0, -1.0]), [0, 0, 1, 1, 2, 2]) == pytest.approx(2 / 3)
