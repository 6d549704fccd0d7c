"""`check_family`: the invariants every task family must keep, for Flywheel's tests and a plug-in's own.

    from flywheel.envs.testing import check_family

    def test_my_family():
        check_family("text_reverse")

It checks the family against itself (its seed tasks are the references, its `example_proposals` the
proposals), so it works for any domain: a failure raises `FamilyCheckError` saying which invariant broke.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import gymnasium
from flywheel.envs.base import Prompt, Rejection, Task, TaskFamily, Verdict
from flywheel.envs.buffer import TaskStore
from flywheel.envs.registry import get_family_class, make_family
from flywheel.envs.resources import SharedVerifiers
from gymnasium.utils.env_checker import check_env

MALFORMED_OUTPUTS = (
    "",
    "no answer block",
    "<answer></answer>",
    "<answer>```\nunbalanced</answer>",
    "<answer>1</answer><answer>2</answer>",
    "<think>" * 50,
    "<answer>\x00</answer>",
)
"""Model outputs no family may raise on: a `verify` gives format errors or wrong verdicts, `propose` rejections."""


class FamilyCheckError(AssertionError):
    """A family broke one of the contract's invariants; the message says which and on what."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise FamilyCheckError(message)


def check_family(
    family: TaskFamily | str,
    *,
    config: Mapping[str, Any] | None = None,
    verifiers: SharedVerifiers | None = None,
    environments: bool = True,
) -> None:
    """Check the global invariants of a family (given by registered name or as an instance):

    * its seed tasks are plain data: they round-trip through JSON, `make_task` and a `TaskStore` buffer;
    * prompts render: `solver_prompt` for every seed (deterministically), `proposer_prompt` with the seeds
      and with no references, with JSON-serialisable contexts; with `terse_prompts` each prompt only leaves
      lines out (every line it keeps is a line of the full prompt) and keeps the same context;
    * reference answers verify as correct and wrong answers as well-formed wrong ones;
    * malformed model output is a scored failure, never an exception, in `verify` and `propose`;
    * its `example_proposals` validate (a proposing family must declare some), and their tasks keep the
      reference/wrong-answer invariant;
    * with `environments`, its ``Solve`` and ``Propose`` Gymnasium ids pass Gymnasium's `check_env`, score a
      reference answer and an example proposal, and their vector entry points score a batch.

    `config` applies when the family is given by name; `verifiers` are used (and left open) when given, else
    created and closed here.
    """
    own_verifiers = verifiers is None
    shared = SharedVerifiers() if verifiers is None else verifiers
    try:
        if isinstance(family, str):
            family = make_family(family, config, shared)
        elif config is not None:
            raise ValueError("config applies only when the family is given by name")
        seeds = family.seed_tasks()
        _check_plain_data(family, seeds)
        _check_prompts(family, seeds)
        _check_answers(family, seeds, "seed tasks")
        _check_malformed(family, seeds)
        _check_examples(family)
        if environments:
            _check_environments(family, shared)
    finally:
        if own_verifiers:
            shared.close()


def _check_plain_data(family: TaskFamily, seeds: Sequence[Task]) -> None:
    _require(bool(seeds), f"{family.name}: seed_tasks() returned no tasks")
    for task in seeds:
        _require(isinstance(task, Task) and task.family == family.name, f"{family.name}: seed {task!r} is not its Task")
        _require(Task.from_json(task.to_json()) == task, f"{family.name}: seed {task.task_id} does not round-trip JSON")
        _require(
            family.make_task(task.payload).task_id == task.task_id,
            f"{family.name}: make_task(seed.payload) gives another task id than seed {task.task_id}",
        )
        _require(isinstance(family.dedup_key(task.payload), str), f"{family.name}: dedup_key must be a str")
        _require(isinstance(family.complexity(task), int), f"{family.name}: complexity must be an int")
    with TaskStore(":memory:") as store:
        buffer = store.buffer(family.name, capacity=len(seeds))
        added = buffer.add(seeds)
        distinct = {task.task_id for task in seeds}
        _require(added.added == len(distinct), f"{family.name}: the store kept {added.added} of {len(distinct)} seeds")
        stored = {task.task_id: task for task in buffer.all()}
        _require(
            all(stored.get(task.task_id) == task for task in seeds),
            f"{family.name}: seeds read back from the store differ from the seeds written",
        )


def _check_prompts(family: TaskFamily, seeds: Sequence[Task]) -> None:
    terse = type(family)(replace(family.config, terse_prompts=True), family.verifiers, family.rails)
    for task in seeds:
        prompt = family.solver_prompt(task)
        _require(_renders(prompt), f"{family.name}: solver_prompt({task.task_id}) is not a Prompt with text")
        _require(prompt == family.solver_prompt(task), f"{family.name}: solver_prompt({task.task_id}) varies")
        _check_terse(family.name, f"solver_prompt({task.task_id})", prompt, terse.solver_prompt(task))
    for references in (list(seeds), []):
        prompt = family.proposer_prompt(references, random.Random(0))
        shown = f"{len(references)} references"
        _require(_renders(prompt), f"{family.name}: proposer_prompt with {shown} is not a Prompt with text")
        _require(
            prompt == family.proposer_prompt(references, random.Random(0)),
            f"{family.name}: proposer_prompt with {shown} differs for the same rng seed",
        )
        terse_prompt = terse.proposer_prompt(references, random.Random(0))
        _check_terse(family.name, f"proposer_prompt with {shown}", prompt, terse_prompt)


def _check_terse(name: str, what: str, full: Prompt, terse: Prompt) -> None:
    _require(_renders(terse), f"{name}: {what} with terse_prompts is not a Prompt with text")
    _require(terse.context == full.context, f"{name}: {what} has another context with terse_prompts")
    kept = set(full.text.splitlines())
    extra = [line for line in terse.text.splitlines() if line not in kept]
    _require(not extra, f"{name}: {what} with terse_prompts adds lines the full prompt lacks: {extra[:3]}")


def _renders(prompt: Any) -> bool:
    if not isinstance(prompt, Prompt) or not isinstance(prompt.text, str) or not prompt.text.strip():
        return False
    try:
        json.dumps(dict(prompt.context))
    except (TypeError, ValueError):
        return False
    return True


def _check_answers(family: TaskFamily, tasks: Sequence[Task], what: str) -> None:
    right = family.verify(tasks, [family.reference_answer(task) for task in tasks])
    wrong = family.verify(tasks, [family.wrong_answer(task) for task in tasks])
    for task, verdict in zip(tasks, right, strict=True):
        _require(verdict.correct, f"{family.name}: the reference answer of {what} {task.task_id} is {verdict}")
    for task, verdict in zip(tasks, wrong, strict=True):
        _require(
            verdict.status == "wrong",
            f"{family.name}: the wrong answer of {what} {task.task_id} must be a well-formed wrong one, is {verdict}",
        )


def _check_malformed(family: TaskFamily, seeds: Sequence[Task]) -> None:
    tasks = [seeds[i % len(seeds)] for i in range(len(MALFORMED_OUTPUTS))]
    verdicts = family.verify(tasks, list(MALFORMED_OUTPUTS))
    _require(
        all(isinstance(v, Verdict) and not v.correct for v in verdicts),
        f"{family.name}: malformed answers must be scored as failures, got {verdicts}",
    )
    prompt = family.proposer_prompt(seeds, random.Random(0))
    results = family.propose(list(MALFORMED_OUTPUTS), [prompt] * len(MALFORMED_OUTPUTS))
    _require(
        all(isinstance(result, Rejection) for result in results),
        f"{family.name}: malformed proposals must be rejected, got {results}",
    )


def _check_examples(family: TaskFamily) -> None:
    examples = family.example_proposals()
    if "propose" not in family.roles:
        _require(not examples, f"{family.name}: a solve-only family (roles {family.roles}) has no valid proposals")
        return
    _require(bool(examples), f"{family.name}: declare example_proposals() (valid proposer outputs with their prompts)")
    results = family.propose([text for _, text in examples], [prompt for prompt, _ in examples])
    for (_, text), result in zip(examples, results, strict=True):
        _require(isinstance(result, Task), f"{family.name}: example proposal {text[:200]!r} was rejected: {result}")
    _check_answers(family, results, "example proposal")  # type: ignore[arg-type]


def _check_environments(family: TaskFamily, verifiers: SharedVerifiers) -> None:
    from flywheel.envs.gym_envs import env_ids

    registered = get_family_class(family.name)
    _require(registered is type(family), f"{family.name}: registered as {registered.__name__}, not this class")
    solve_id, propose_id = env_ids(registered)
    settings = {"family": family, "verifiers": verifiers}  # this instance: its config and rails
    for env_id in (solve_id, propose_id):
        env = gymnasium.make(env_id, **settings)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the checker reports problems as warnings
                check_env(env.unwrapped, skip_render_check=True)
            env.reset(seed=0)
            unwrapped: Any = env.unwrapped
            if env_id == solve_id:
                _, reward, *_ = env.step(family.reference_answer(unwrapped.task))
                _require(
                    reward == unwrapped.reward_config.solver_correct, f"{env_id}: a reference answer scored {reward}"
                )
            elif "propose" in family.roles:
                unwrapped.prompt, text = family.example_proposals()[0]  # the example's own prompt, as if drawn
                _, _, _, _, info = env.step(text)
                _require(info["valid"], f"{env_id}: the first example proposal was rejected: {info['reason']}")
        finally:
            env.close()
        vector = gymnasium.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", **settings)
        try:
            vector.reset(seed=0)
            _, rewards, terminated, truncated, _ = vector.step(["<answer>?</answer>", 7])
            _require(rewards.shape == (2,) and terminated.all() and not truncated.any(), f"{env_id}: vector step")
        finally:
            vector.close()
