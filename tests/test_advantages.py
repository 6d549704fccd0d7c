"""Advantage estimators, checked against numbers worked out by hand, and over several processes."""

from __future__ import annotations

import math
import os
import random
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing
from flywheel.train.advantages import (
    compute_advantages,
    global_advantages,
    grpo_advantages,
    no_signal_share,
    trr_advantages,
)

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


SETTINGS = (("grpo", "group"), ("grpo", "batch"), ("grpo", "none"), ("trr++", "group"))
"""(advantage_estimator, scale_rewards) pairs checked across processes."""
GENERATIONS = 4
FAMILIES = ("code_deduction", "math_deduction")
ROLES = ("propose", "solve")


def role_rollouts(process: int, role: str) -> list[tuple[float, str]]:
    """(reward, family) of one process's rollouts of `role`: per family one prompt, `GENERATIONS` rollouts."""
    rng = random.Random(f"{process}/{role}")
    return [(rng.choice((-1.0, 0.0, 0.5, 1.0)), family) for family in FAMILIES for _ in range(GENERATIONS)]


def as_batch(parts: list[tuple[str, list[tuple[float, str]]]]) -> tuple[list[float], list, list[str]]:
    """Rewards, prompt groups and family x role keys of a batch, as `Rollouts.score` labels them."""
    rewards, groups, keys = [], [], []
    for role, rows in parts:
        for i, (reward, family) in enumerate(rows):
            rewards.append(reward)
            groups.append((role, i // GENERATIONS))
            keys.append(f"{family}/{role}")
    return rewards, groups, keys


def advantages_in_process(rank: int, port: int, out: Path) -> None:
    """One of 2 processes (gloo, accelerate's own gather): its rollouts' advantages under every setting."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
    )
    from accelerate import PartialState
    from accelerate.utils import gather_object

    PartialState(cpu=True)
    rewards, groups, keys = as_batch([(role, role_rollouts(rank, role)) for role in ROLES])
    results = {}
    for estimator, scale in SETTINGS:
        batch = global_advantages(
            estimator, rewards, groups, keys, scale=scale, process_index=rank, gather=gather_object
        )
        results[(estimator, scale)] = (batch.local(), batch.rewards)
    torch.save(results, out / f"{rank}.pt")


def test_two_processes_give_the_advantages_of_one(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(advantages_in_process, args=(port, tmp_path), nprocs=2)
    per_process = [torch.load(tmp_path / f"{rank}.pt") for rank in (0, 1)]
    # One process with both processes' prompts: all propose rollouts, then all solve rollouts.
    rewards, groups, keys = as_batch([(role, role_rollouts(0, role) + role_rollouts(1, role)) for role in ROLES])
    n = len(FAMILIES) * GENERATIONS
    for estimator, scale in SETTINGS:
        one = global_advantages(estimator, rewards, groups, keys, scale=scale).local()
        for rank in (0, 1):
            local, everyone = per_process[rank][(estimator, scale)]
            expected = torch.cat([one[rank * n : (rank + 1) * n], one[2 * n + rank * n : 2 * n + (rank + 1) * n]])
            if scale == "batch":  # the batch's spread sums the rewards in another order
                torch.testing.assert_close(local, expected, rtol=0, atol=1e-6)
            else:
                assert torch.equal(local, expected), (estimator, scale, rank)
            assert sorted(everyone) == sorted(rewards)  # every process saw the whole batch
        assert one.abs().sum() > 0  # the rollouts carry a learning signal under every setting
