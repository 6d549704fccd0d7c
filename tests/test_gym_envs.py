"""GLOBAL checks over every registered family and every ``flywheel/`` Gymnasium id.

New families (math, plug-ins imported by `flywheel.envs`) are picked up automatically.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator

import flywheel.envs
import gymnasium
import numpy as np
import pytest
from flywheel.envs import Task, family_names, make_family
from flywheel.envs.gym_envs import ProposeEnv, SolveEnv
from flywheel.envs.parsing import format_answer
from flywheel.envs.resources import SharedVerifiers
from flywheel.verifiers.sandbox import SandboxConfig
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

assert flywheel.envs  # imported for its registrations
ENV_IDS = sorted(env_id for env_id in gymnasium.registry if env_id.startswith("flywheel/"))
FAMILIES = family_names()

# Valid proposals per family, for the invariant on proposed tasks. A family with none listed is checked on
# its seed tasks only; add yours here.
PROPOSALS: dict[str, list[str]] = {
    "code_deduction": [
        format_answer(("python", "def f(xs, k):\n    return xs[k:] + xs[:k]"), ("input", "[1, 2, 3], 2")),
        format_answer(("python", "def f(s):\n    return {c: s.count(c) for c in s}"), ("input", "'banana'")),
    ],
    "code_abduction": [
        format_answer(("python", "def f(n):\n    return sum(range(n)) % 10"), ("input", "12")),
        format_answer(("python", "def f(a, b):\n    return sorted(a)[b]"), ("input", "[5, 1, 4], 1")),
    ],
    "code_induction": [
        format_answer(*[("input", f"[{i}, {2 * i}], {i}") for i in range(8)], ("message", "rotate")),
    ],
    "math_deduction": [
        format_answer(("operation", "differentiate"), ("expression", "x**3*sin(x)")),
        format_answer(("operation", "factor"), ("expression", "x**2 - 5*x + 6")),
    ],
    "math_abduction": [
        format_answer(("operation", "solve"), ("expression", "x**2 - 5*x + 6")),
        format_answer(("operation", "integrate"), ("expression", "3*x**2 + cos(x)")),
    ],
    "math_induction": [
        format_answer(*[("input", str(i)) for i in range(-2, 6)], ("message", "a polynomial")),
    ],
}
INDUCTION_PROGRAM = "def f(xs, k):\n    return xs[k % len(xs):] + xs[:k % len(xs)]"


@pytest.fixture(scope="module")
def verifiers() -> Iterator[SharedVerifiers]:
    with SharedVerifiers(SandboxConfig(workers=2)) as shared:
        yield shared


def test_every_family_has_both_ids():
    assert {"code_deduction", "code_abduction", "code_induction"} <= set(FAMILIES)
    for name in FAMILIES:
        stem = flywheel.envs.get_family_class(name).env_name
        assert {f"flywheel/{stem}-Solve-v0", f"flywheel/{stem}-Propose-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env(env_id):
    # Own verifiers: the checker re-makes the env from its spec, deep-copying the kwargs.
    env = gymnasium.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


def scripted_action(env) -> str:
    """A reference answer for solve envs; for propose envs, a proposal copied from a reference (valid or not)."""
    unwrapped = env.unwrapped
    if isinstance(unwrapped, SolveEnv):
        return unwrapped.family.reference_answer(unwrapped.task)
    examples = PROPOSALS.get(unwrapped.family.name)
    return examples[0] if examples else "<answer>not a proposal</answer>"


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


# ------------------------------------------------------------------------------ the reasoning-gym invariant


def check_invariant(family, tasks: list[Task]) -> None:
    assert tasks
    right = family.verify(tasks, [family.reference_answer(task) for task in tasks])
    wrong = family.verify(tasks, [family.wrong_answer(task) for task in tasks])
    assert all(v.correct for v in right), right
    assert not any(v.correct for v in wrong), wrong
    assert all(v.status == "wrong" for v in wrong), "wrong answers must be well-formed"


@pytest.mark.parametrize("name", FAMILIES)
def test_reference_answers_verify_and_wrong_answers_do_not(name, verifiers):
    family = make_family(name, verifiers=verifiers)
    seeds = family.seed_tasks()
    check_invariant(family, seeds)
    for task in seeds:  # tasks are plain data and rebuild from their payload
        assert Task.from_json(task.to_json()) == task
        assert json.loads(task.to_json())["payload"] == dict(task.payload)
        assert family.make_task(task.payload).task_id == task.task_id
        assert family.solver_prompt(task) == family.solver_prompt(task)
    texts = PROPOSALS.get(name)
    if not texts:
        pytest.skip(f"no example proposals listed for {name} (seed tasks checked)")
    references = [Task(family=name, payload={"program": INDUCTION_PROGRAM}, task_id="ref"), *seeds]
    prompts = [family.proposer_prompt(references, random.Random(0)) for _ in texts]
    if name == "code_induction":
        prompts = [family.proposer_prompt(references[:1], random.Random(0)) for _ in texts]
    proposed = family.propose(texts, prompts)
    assert all(isinstance(task, Task) for task in proposed), proposed
    check_invariant(family, proposed)


def test_propose_env_learnability_reward_with_a_solver(verifiers):
    seen: list[int] = []

    def half_right_solver(prompts: list[str]) -> list[str]:
        seen.append(len(prompts))
        return ["<answer>[3, 1, 2]</answer>" if i % 4 else "<answer>0</answer>" for i in range(len(prompts))]

    env = ProposeEnv("code_deduction", solver=half_right_solver, n_solver_samples=8, verifiers=verifiers)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(PROPOSALS["code_deduction"][0])
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
    _, reward, _, _, info = env.step(PROPOSALS["code_abduction"][0])
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
