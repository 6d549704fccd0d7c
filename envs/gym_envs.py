"""Gymnasium environments over any registered family: one Solve and one Propose env per family.

Every family registered with `@register_family` gets ``flywheel/{env_name}-Solve-v0`` and
``flywheel/{env_name}-Propose-v0``, each with a vector entry point whose sub-environments share one family,
one verifier pool and one buffer, and whose step sends all actions through ONE batched family call.
Episodes are single-step: the observation is a prompt, the action is the model's full text output.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
from flywheel.envs.base import FamilyConfig, Prompt, Task, TaskFamily
from flywheel.envs.buffer import TaskBuffer, TaskStore
from flywheel.envs.gate import Gate
from flywheel.envs.parsing import MAX_TEXT_CHARS
from flywheel.envs.registry import make_family
from flywheel.envs.resources import SharedVerifiers
from flywheel.envs.rewards import RewardConfig
from flywheel.envs.scoring import Proposal, add_valid, score_answers, score_proposals, validate_proposals
from flywheel.envs.task_files import read_task_file
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

EnvResult = tuple[str, float, bool, bool, dict[str, Any]]


@cache
def _text_prototype() -> spaces.Text:
    """Tab, newline, carriage return and every printable character of the Basic Multilingual Plane
    (no other control characters, no surrogates or private use). Built once: the 57k-character set
    takes ~0.2 s to index."""
    chars = ["\t", "\n", "\r"] + [chr(c) for c in range(0x20, 0x7F)]
    chars += [chr(c) for c in range(0xA0, 0xD800)] + [chr(c) for c in range(0xF900, 0xFFFE)]
    return spaces.Text(MAX_TEXT_CHARS, min_length=0, charset=frozenset(chars))


def text_space() -> spaces.Text:
    """A Text space admitting real programs and prompts, up to `parsing.MAX_TEXT_CHARS` characters."""
    space = copy.copy(_text_prototype())  # shares the immutable charset tables
    space.seed()
    return space


def _load_task_file(path: str | Path, family: str, verifiers: SharedVerifiers) -> list[Task]:
    """`family`'s tasks from a task file in any format `flywheel.envs.task_files` reads."""
    tasks = read_task_file(path, verifiers=verifiers)
    if not tasks:
        raise ValueError(f"task file {path} holds no tasks")
    strangers = {task.family for task in tasks} - {family}
    if strangers:
        raise ValueError(f"task file {path} holds tasks of other families: {sorted(strangers)}")
    return tasks


class _SingleStepEnv(gymnasium.Env[str, str]):
    """What both roles share: the family, verifier, task-source and space plumbing, seeding, and the
    single-step protocol. Subclasses draw a prompt (`_draw`) and score a batch of actions
    (`score_batch`, used by `step` for one env and by the vector env for many)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        family: str | TaskFamily,
        *,
        family_config: FamilyConfig | Mapping[str, Any] | None = None,
        task_file: str | Path | None = None,
        buffer: TaskBuffer | None = None,
        buffer_capacity: int = 4096,
        reward_config: RewardConfig | None = None,
        verifiers: SharedVerifiers | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError("flywheel environments do not render; observations are text")
        if task_file is not None and buffer is not None:
            raise ValueError("give a task_file or a buffer, not both")
        self._owned_verifiers = verifiers is None
        self.verifiers = verifiers if verifiers is not None else SharedVerifiers()
        if isinstance(family, TaskFamily):
            if family_config is not None:
                raise ValueError("family_config applies only when the family is given by name")
            self.family = family
        else:
            self.family = make_family(family, family_config, self.verifiers)
        self.reward_config = reward_config if reward_config is not None else RewardConfig()
        self.reward_config.validate()
        self._store: TaskStore | None = None
        self.tasks: list[Task] | None = None
        self.buffer: TaskBuffer | None = buffer
        if task_file is not None:
            self.tasks = _load_task_file(task_file, self.family.name, self.verifiers)
        elif buffer is None:
            self._store = TaskStore(":memory:")
            self.buffer = self._store.buffer(self.family.name, buffer_capacity)
            self.buffer.add(self.family.seed_tasks())
        self.observation_space = text_space()
        self.action_space = text_space()
        self.prompt: Prompt | None = None
        self._stepped = True

    # --- task source ---------------------------------------------------------------------------------
    def _sample_tasks(self, k: int, rng: random.Random) -> list[Task]:
        if self.tasks is not None:
            return rng.sample(self.tasks, min(k, len(self.tasks)))
        assert self.buffer is not None
        return self.buffer.sample(k, rng)

    # --- protocol ------------------------------------------------------------------------------------
    def _draw(self, rng: random.Random) -> tuple[Prompt, dict[str, Any]]:
        """The next prompt and the reset info."""
        raise NotImplementedError

    @classmethod
    def score_batch(cls, envs: Sequence[_SingleStepEnv], actions: Sequence[Any]) -> list[tuple[float, dict[str, Any]]]:
        """Reward and info for each env's pending prompt, through one batched family call. `envs` share a family."""
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        rng = random.Random(int(self.np_random.integers(2**63)))
        self.prompt, info = self._draw(rng)
        self._stepped = False
        return self.prompt.text, info

    def step(self, action: str) -> EnvResult:
        self.check_pending()
        reward, info = type(self).score_batch([self], [action])[0]
        return self._finish(reward, info)

    def check_pending(self) -> None:
        """Raise unless a prompt awaits its action; called before any scoring, so nothing changes on error."""
        if self.prompt is None or self._stepped:
            raise RuntimeError("episodes are single-step: call reset() before step()")

    def _finish(self, reward: float, info: dict[str, Any]) -> EnvResult:
        assert self.prompt is not None
        self._stepped = True
        return self.prompt.text, float(reward), True, False, info

    def close(self) -> None:
        if self._owned_verifiers:
            self.verifiers.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        super().close()


class SolveEnv(_SingleStepEnv):
    """Solve self-proposed tasks of one family.

    ## Description
    Each episode poses one task of the family (e.g. code deduction: predict what a Python function returns)
    and scores the model's answer with the family's verifier (the sandbox or the math checker). Tasks come
    from a buffer (by default seeded with the family's zero-data seed tasks; pass `buffer` to share the one
    a proposer fills) or from a fixed JSONL file of `Task.to_json()` lines.

    ## Action Space
    `Text(200000)` over tab, newline and the printable BMP characters: the model's full output, in the
    format `<think>…</think><answer>…</answer>` with the family's fenced block. Anything else, including
    non-string actions, is scored as a format error, never raised.

    ## Observation Space
    `Text(200000)`, same charset: the solver prompt.

    ## Rewards
    `RewardConfig.solver_reward`: `solver_correct` (1.0) for a verified answer, `solver_wrong` (-0.5) for a
    readable wrong one, `solver_format_error` (-1.0) when the answer cannot be read.

    ## Episode End
    Single-step: every `step` terminates (`terminated=True`, `truncated=False`). The info holds `task_id`,
    `verdict` (correct/wrong/format_error), `reason` and `correct`; `reset` info holds `task_id` and `family`.
    `step` before `reset`, or a second `step` without `reset`, raises RuntimeError.

    ## Arguments
    * `family`: registered family name or a `TaskFamily` instance.
    * `family_config`: settings for the family (a mapping or its `FamilyConfig`), when given by name.
    * `task_file`: JSONL of tasks to draw from instead of a buffer. `buffer` / `buffer_capacity`: the buffer.
    * `reward_config`: a `RewardConfig`. `verifiers`: a `SharedVerifiers` to use (closed by the env only
      when the env created it).
    """

    def _draw(self, rng: random.Random) -> tuple[Prompt, dict[str, Any]]:
        self.task = self._sample_tasks(1, rng)[0]
        return self.family.solver_prompt(self.task), {"task_id": self.task.task_id, "family": self.family.name}

    @classmethod
    def score_batch(cls, envs: Sequence[_SingleStepEnv], actions: Sequence[Any]) -> list[tuple[float, dict[str, Any]]]:
        first = envs[0]
        tasks = [env.task for env in envs]  # type: ignore[attr-defined]
        prompts = [env.prompt for env in envs]
        answers = score_answers({first.family.name: first.family}, tasks, prompts, actions, first.reward_config)  # type: ignore[arg-type]
        return [
            (
                answer.reward,
                {
                    "task_id": answer.task.task_id,
                    "verdict": answer.verdict.status,
                    "reason": answer.verdict.reason,
                    "correct": answer.verdict.correct,
                },
            )
            for answer in answers
        ]


class ProposeEnv(_SingleStepEnv):
    """Propose new tasks of one family, rewarded by validity and (with a solver) learnability.

    ## Description
    Each episode shows the proposer prompt with `n_references` tasks from the buffer as examples (for code
    induction: a program to write inputs for). The action is a proposal; the family parses and validates it
    (for code: static check, sandbox run within time and memory, determinism, output size). A valid task is
    added to the buffer (unless tasks come from a fixed file), so later prompts reference it.

    ## Action Space
    `Text(200000)` over tab, newline and the printable BMP characters: the proposer's full output. Malformed
    or non-string actions are invalid proposals, never errors.

    ## Observation Space
    `Text(200000)`, same charset: the proposer prompt.

    ## Rewards
    Invalid proposal: `RewardConfig.proposer_invalid` (-1.0). Valid, without a solver: 0.0. Valid, with a
    solver: `RewardConfig.proposer_reward(p)` where p is the share of `n_solver_samples` solver attempts
    that were correct (AZR: 1 - p, and 0 when p is 0 or 1).

    ## Episode End
    Single-step: every `step` terminates. The info holds `valid`, `reason` and `detail` (the rejection, empty
    when valid), `task_id` and `task` (the validated task as `Task.to_json()`, empty when invalid) and, with
    a solver, `solve_rate`. `reset` info holds the `references` (task ids) and `family`. `step` before `reset`,
    or a second `step` without `reset`, raises RuntimeError before scoring or adding anything to the buffer.

    ## Arguments
    * `family`, `family_config`, `task_file`, `buffer`, `buffer_capacity`, `reward_config`, `verifiers`: as
      for `SolveEnv`.
    * `solver`: `Callable[[list[str]], list[str]]` mapping solver prompts to outputs, or None.
    * `n_solver_samples`: solver attempts per valid proposal (default 8).
    * `n_references`: reference tasks shown in the prompt (default 3).
    """

    def __init__(
        self,
        family: str | TaskFamily,
        *,
        solver: Callable[[list[str]], list[str]] | None = None,
        n_solver_samples: int = 8,
        n_references: int = 3,
        **kwargs: Any,
    ) -> None:
        if n_solver_samples < 1 or n_references < 0:
            raise ValueError("n_solver_samples must be positive and n_references non-negative")
        super().__init__(family, **kwargs)
        self.solver = solver
        self.n_solver_samples = n_solver_samples
        self.n_references = n_references

    def _draw(self, rng: random.Random) -> tuple[Prompt, dict[str, Any]]:
        references = self._sample_tasks(self.n_references, rng)
        prompt = self.family.proposer_prompt(references, rng)
        return prompt, {"references": [task.task_id for task in references], "family": self.family.name}

    @classmethod
    def score_batch(cls, envs: Sequence[_SingleStepEnv], actions: Sequence[Any]) -> list[tuple[float, dict[str, Any]]]:
        first: ProposeEnv = envs[0]  # type: ignore[assignment]
        families = {first.family.name: first.family}
        gates = {first.family.name: Gate(first.family, first.buffer)} if first.buffer is not None else {}
        asked = [(first.family.name, env.prompt) for env in envs]
        proposals = validate_proposals(families, asked, actions, gates=gates)  # type: ignore[arg-type]
        sample = first._sample if first.solver is not None else None
        score_proposals(families, proposals, first.reward_config, sample, first.n_solver_samples)
        for gate in gates.values():
            add_valid(gate, proposals)
        return [(proposal.reward, _proposal_info(proposal)) for proposal in proposals]

    def _sample(self, prompts: Sequence[Prompt], n: int) -> list[str]:
        """The `solver` as a `Sampler`: n outputs per prompt, grouped by prompt."""
        assert self.solver is not None
        return self.solver([prompt.text for prompt in prompts for _ in range(n)])


def _proposal_info(proposal: Proposal) -> dict[str, Any]:
    """A Propose env's step info: validity, the rejection or the task, and the solve rate when estimated."""
    if proposal.rejection is not None:
        rejection = proposal.rejection
        return {"valid": False, "reason": rejection.reason, "detail": rejection.detail, "task_id": "", "task": ""}
    task = proposal.result
    info: dict[str, Any] = {"valid": True, "reason": "", "detail": "", "task_id": task.task_id, "task": task.to_json()}
    if proposal.solve_rate is not None:
        info["solve_rate"] = proposal.solve_rate
    return info


class _BatchedVectorEnv(VectorEnv):
    """`num_envs` sub-environments sharing one family, verifier pool and task source; `step` scores all
    actions with one `score_batch` call (one family.verify / propose, so one sandbox batch). Autoreset is
    same-step, which is what single-step episodes need: every step returns the next prompts, with the
    scored step's info under ``final_info`` and its prompts under ``final_obs``."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    env_class: ClassVar[type[_SingleStepEnv]]

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive, not {num_envs}")
        first = self.env_class(**kwargs)
        shared = {"family": first.family, "verifiers": first.verifiers, "family_config": None}
        if first.buffer is not None and kwargs.get("task_file") is None:
            shared["buffer"] = first.buffer
        self.envs = [first] + [self.env_class(**{**kwargs, **shared}) for _ in range(num_envs - 1)]
        self.family = first.family
        self.num_envs = num_envs
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = spaces.Tuple(tuple(text_space() for _ in range(num_envs)))
        self.action_space = spaces.Tuple(tuple(text_space() for _ in range(num_envs)))
        self._observations: list[str] = [""] * num_envs

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        if seed is None or isinstance(seed, int | np.integer):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} environments")
        infos: dict[str, Any] = {}
        for i, (env, env_seed) in enumerate(zip(self.envs, seeds, strict=True)):
            self._observations[i], info = env.reset(seed=env_seed, options=options)
            infos = self._add_info(infos, info, i)
        return tuple(self._observations), infos

    def step(
        self, actions: Sequence[Any]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = list(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"{len(actions)} actions for {self.num_envs} environments")
        for env in self.envs:
            env.check_pending()
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        infos: dict[str, Any] = {}
        for i, (env, (reward, info)) in enumerate(
            zip(self.envs, self.env_class.score_batch(self.envs, actions), strict=True)
        ):
            final_obs, rewards[i], *_ = env._finish(reward, info)
            infos = self._add_info(infos, {"final_obs": final_obs, "final_info": info}, i)
            self._observations[i], reset_info = env.reset()
            infos = self._add_info(infos, reset_info, i)
        terminated = np.ones(self.num_envs, dtype=np.bool_)
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        return tuple(self._observations), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        for env in reversed(self.envs):  # the first env owns the shared verifiers and store
            env.close()


class SolveVectorEnv(_BatchedVectorEnv):
    """`SolveEnv` batched: one family.verify call per step for all sub-environments."""

    env_class = SolveEnv


class ProposeVectorEnv(_BatchedVectorEnv):
    """`ProposeEnv` batched: one family.propose call (and at most one solver and one verify call) per step."""

    env_class = ProposeEnv


def env_ids(family_class: type[TaskFamily]) -> tuple[str, str]:
    """The Solve and Propose ids of a family class."""
    return f"flywheel/{family_class.env_name}-Solve-v0", f"flywheel/{family_class.env_name}-Propose-v0"


def register_family_envs(family_class: type[TaskFamily]) -> None:
    """Register the Solve and Propose ids (with vector entry points) of a family; idempotent."""
    entries = ((SolveEnv, SolveVectorEnv), (ProposeEnv, ProposeVectorEnv))
    for env_id, (env_class, vector_class) in zip(env_ids(family_class), entries, strict=True):
        existing = gymnasium.registry.get(env_id)
        if existing is not None:
            if existing.kwargs.get("family") == family_class.name:
                continue
            raise ValueError(f"{env_id} is already registered for family {existing.kwargs.get('family')!r}")
        gymnasium.register(
            id=env_id,
            entry_point=f"{__name__}:{env_class.__name__}",
            vector_entry_point=f"{__name__}:{vector_class.__name__}",
            kwargs={"family": family_class.name},
        )
