"""GLOBAL checks over every registered family and every ``flywheel/`` Gymnasium id.

New families (math, plug-ins imported by `flywheel.envs`) are picked up automatically.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator

import flywheel.envs
import gymnasium
import numpy as np
import pytest
from flywheel.envs import Prompt, Task, family_names, make_family
from flywheel.envs.code_tasks import CodeDeduction
from flywheel.envs.gym_envs import ProposeEnv, SolveEnv
from flywheel.envs.resources import SharedVerifiers
from flywheel.envs.testing import FamilyCheckError, check_family
from flywheel.verifiers.sandbox import SandboxConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

assert flywheel.envs  # imported for its registrations
ENV_IDS = sorted(env_id for env_id in gymnasium.registry if env_id.startswith("flywheel/"))
FAMILIES = family_names()


@pytest.fixture(scope="module")
def verifiers() -> Iterator[SharedVerifiers]:
    with SharedVerifiers(SandboxConfig(workers=2)) as shared:
        yield shared


def test_every_family_has_both_ids():
    assert {"code_deduction", "code_abduction", "code_induction"} <= set(FAMILIES)
    for name in FAMILIES:
        stem = flywheel.envs.get_family_class(name).env_name
        assert {f"flywheel/{stem}-Solve-v0", f"flywheel/{stem}-Propose-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("name", FAMILIES)
def test_check_family(name, verifiers):
    """The public family check (seeds, prompts, answers, example proposals, store, check_env) on every family."""
    check_family(name, verifiers=verifiers)


def test_check_family_names_the_broken_invariant(verifiers):
    family = make_family("math_deduction", verifiers=verifiers)
    family.wrong_answer = family.reference_answer  # a "wrong" answer that verifies
    with pytest.raises(FamilyCheckError, match="wrong answer of seed tasks"):
        check_family(family, verifiers=verifiers, environments=False)


def test_check_family_refuses_a_terse_prompt_that_adds_text(verifiers):
    class AddsText(CodeDeduction):
        def solver_prompt(self, task: Task) -> Prompt:
            prompt = super().solver_prompt(task)
            return Prompt(prompt.text + "\nOnly here.") if self.config.terse_prompts else prompt

    with pytest.raises(
        FamilyCheckError, match=re.escape("terse_prompts adds lines the full prompt lacks: ['Only here.']")
    ):
        check_family(AddsText(verifiers=verifiers), verifiers=verifiers, environments=False)
    check_family(CodeDeduction(verifiers=verifiers), verifiers=verifiers, environments=False)


@pytest.mark.parametrize("name", FAMILIES)
def test_terse_prompts_are_shorter(name, verifiers):
    full = make_family(name, verifiers=verifiers)
    terse = make_family(name, {"terse_prompts": True}, verifiers)
    seeds = full.seed_tasks()
    assert len(terse.solver_prompt(seeds[0]).text) < len(full.solver_prompt(seeds[0]).text)
    if "propose" in full.roles:
        rng = random.Random(0)
        assert len(terse.proposer_prompt(seeds, rng).text) < len(full.proposer_prompt(seeds, random.Random(0)).text)


def scripted_action(env) -> str:
    """A reference answer for solve envs; for propose envs, the family's first example proposal (valid or not
    for the drawn prompt)."""
    unwrapped = env.unwrapped
    if isinstance(unwrapped, SolveEnv):
        return unwrapped.family.reference_answer(unwrapped.task)
    examples = unwrapped.family.example_proposals()
    return examples[0][1] if examples else "<answer>not a proposal</answer>"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_rollout(env_id, verifiers):
    def rollout() -> list:
        env = gymnasium.make(env_id, verifiers=verifiers)
        trace = []
        for episode in range(3):
            obs, info = env.reset(seed=episode)
            obs2, reward, terminated, truncated, step_info = env.step(scripted_action(env))
            trace.append((obs, info, obs2, reward, terminated, truncated, step_info))
        env.close()
        return trace

    first, second = rollout(), rollout()
    assert first == second
    assert all(step[4] and not step[5] for step in first)
    if "-Solve-" in env_id:
        assert all(step[3] == 1.0 and step[6]["verdict"] == "correct" for step in first)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_batches_through_one_call(env_id, verifiers):
    vec = gymnasium.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", verifiers=verifiers)
    family = vec.unwrapped.family
    method = "verify" if "-Solve-" in env_id else "propose"
    original = getattr(family, method)
    calls: list[int] = []

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    setattr(family, method, counting)
    try:
        obs, infos = vec.reset(seed=11)
        assert isinstance(obs, tuple) and len(obs) == 3 and all(isinstance(o, str) for o in obs)
        assert vec.observation_space.contains(obs)
        for _ in range(2):  # the second step runs on autoreset prompts
            actions = [scripted_action(env) for env in vec.unwrapped.envs]
            actions[1] = b"\x00\xff junk"
            next_obs, rewards, terminated, truncated, infos = vec.step(actions)
            assert rewards.shape == (3,) and rewards.dtype == np.float64
            assert terminated.all() and not truncated.any()
            assert len(next_obs) == 3 and infos["_final_info"].all()
            assert list(infos["final_obs"]) == list(obs)
            obs = next_obs
        assert calls == [2, 2]  # one batched call per step; the non-text action never reaches the family
        if method == "verify":
            assert list(infos["final_info"]["verdict"]) == ["correct", "format_error", "correct"]
    finally:
        setattr(family, method, original)
        vec.close()


def test_vector_env_same_seed_same_prompts(verifiers):
    def prompts() -> tuple:
        vec = gymnasium.make_vec("flywheel/CodeDeduction-Propose-v0", num_envs=2, verifiers=verifiers)
        obs, _ = vec.reset(seed=[3, 4])
        vec.close()
        return obs

    assert prompts() == prompts()


MALFORMED = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=100),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
    st.sampled_from(
        [
            "",
            "x" * 1_000_000,
            "<answer>",
            "</answer><answer>",
            "<answer>```python\ndef f(a):\n    return a\n</answer>",
            "<answer>```input\n1\n``` ```input\n2\n```</answer>",
            "<answer><answer>1</answer></answer>",
            "<think>" * 1000,
            "<answer>\x00</answer>",
            "<answer>```python\nimport os\nos.system('echo hi')\n```\n```input\n1\n```</answer>",
        ]
    ),
    st.builds(
        lambda a, b: f"<answer>{a}```{b}\n{a}\n```</answer>",
        st.text(max_size=80),
        st.sampled_from(["python", "input", "output", "message", ""]),
    ),
)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_malformed_actions_are_scored_never_raised(env_id, verifiers):
    env = gymnasium.make(env_id, verifiers=verifiers, disable_env_checker=True)
    config = env.unwrapped.reward_config
    low = min(config.solver_format_error, config.solver_wrong, config.proposer_invalid)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(MALFORMED)
    def check(action):
        env.reset(seed=0)
        _, reward, terminated, truncated, info = env.step(action)
        assert isinstance(reward, float) and low <= reward <= 1.0
        assert terminated and not truncated
        assert isinstance(info["reason"], str)

    try:
        check()
    finally:
        env.close()


def example_text(name: str) -> str:
    return make_family(name).example_proposals()[0][1]


def test_propose_env_learnability_reward_with_a_solver(verifiers):
    seen: list[int] = []

    def half_right_solver(prompts: list[str]) -> list[str]:
        seen.append(len(prompts))
        return ["<answer>[3, 1, 2]</answer>" if i % 4 else "<answer>0</answer>" for i in range(len(prompts))]

    env = ProposeEnv("code_deduction", solver=half_right_solver, n_solver_samples=8, verifiers=verifiers)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(example_text("code_deduction"))
    assert info["valid"] and seen == [8]
    assert info["solve_rate"] == 0.75 and reward == pytest.approx(0.25)  # AZR: 1 - p
    assert len(env.buffer) == len(env.family.seed_tasks()) + 1
    env.reset(seed=0)
    _, reward, _, _, info = env.step("<answer>nothing</answer>")
    assert reward == -1.0 and info["reason"] == "parse_error" and not info["valid"]
    env.close()


def test_propose_env_without_solver_scores_validity(verifiers):
    env = ProposeEnv("code_abduction", verifiers=verifiers)
    env.reset(seed=1)
    _, reward, _, _, info = env.step(example_text("code_abduction"))
    assert reward == 0.0 and info["valid"] and "solve_rate" not in info
    assert Task.from_json(info["task"]).task_id == info["task_id"]
    env.close()


def test_solve_env_reads_a_task_file(tmp_path, verifiers):
    family = make_family("code_induction", verifiers=verifiers)
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(task.to_json() for task in family.seed_tasks()) + "\n")
    env = SolveEnv("code_induction", task_file=path, verifiers=verifiers)
    _, info = env.reset(seed=0)
    assert info["task_id"] == family.seed_tasks()[0].task_id
    assert env.step(family.reference_answer(env.task))[1] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again")
    env.close()
    with pytest.raises(ValueError, match="other families"):
        SolveEnv("code_deduction", task_file=path, verifiers=verifiers)


def test_solve_env_reads_benchmark_rows_with_the_eval_reader(tmp_path, verifiers):
    path = tmp_path / "cruxeval.jsonl"
    path.write_text(json.dumps({"code": "def f(x):\n    return x * 3", "input": "4", "output": "12"}) + "\n{oops\n")
    with pytest.raises(ValueError, match="line 2"):
        SolveEnv("code_deduction", task_file=path, verifiers=verifiers)
    path.write_text(path.read_text().splitlines()[0] + "\n")
    env = SolveEnv("code_deduction", task_file=path, verifiers=verifiers)
    env.reset(seed=0)
    assert env.task.payload["output"] == "12"
    assert env.step(env.family.reference_answer(env.task))[1] == 1.0
    env.close()


def test_env_closes_only_verifiers_it_created(verifiers):
    env = SolveEnv("code_abduction")
    env.reset(seed=0)
    env.step(env.family.reference_answer(env.task))
    sandbox = env.verifiers._sandbox
    assert sandbox is not None
    env.close()
    assert env.verifiers._sandbox is None
    shared = SolveEnv("code_abduction", verifiers=verifiers)
    shared.close()
    assert verifiers.sandbox is not None


def test_step_before_reset_raises_the_protocol_error(verifiers):
    for env_class in (SolveEnv, ProposeEnv):
        env = env_class("code_deduction", verifiers=verifiers)
        with pytest.raises(RuntimeError, match="reset"):
            env.step("<answer>1</answer>")
        env.close()


def test_second_propose_step_raises_before_touching_the_buffer(verifiers):
    env = ProposeEnv("code_deduction", verifiers=verifiers)
    env.reset(seed=0)
    text = example_text("code_deduction")
    env.step(text)
    size = len(env.buffer)
    other = text.replace("xs[k:] + xs[:k]", "xs[:k] + xs[k:] + xs")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(other)
    assert len(env.buffer) == size
    vec = gymnasium.make_vec("flywheel/CodeDeduction-Propose-v0", num_envs=2, verifiers=verifiers)
    with pytest.raises(RuntimeError, match="reset"):  # a vector env stepped before its reset
        vec.step([other, other])
    assert len(vec.unwrapped.envs[0].buffer) == len(env.family.seed_tasks())
    vec.close()
    env.close()
