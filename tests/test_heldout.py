"""The held-out set: valid, deterministic, and disjoint from what the warm-up and the seeds contain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flywheel.agents import Agent, load_policy
from flywheel.envs import TaskFamily, make_family
from flywheel.envs.code_tasks import normalised_program
from flywheel.envs.heldout import CODE_TEMPLATES, family_heldout_tasks, heldout_tasks, supports_heldout
from flywheel.envs.resources import SharedVerifiers
from flywheel.envs.synthetic import CODE_TEMPLATES as WARMUP_CODE_TEMPLATES
from flywheel.train.warmup import build_examples

FAMILIES = ("code_deduction", "code_abduction", "code_induction", "math_deduction", "math_abduction", "math_induction")
PER_FAMILY = 12


@pytest.fixture(scope="module")
def families() -> Iterator[dict[str, TaskFamily]]:
    verifiers = SharedVerifiers()
    yield {name: make_family(name, None, verifiers) for name in FAMILIES}
    verifiers.close()


@pytest.fixture(scope="module")
def heldout(families: dict[str, TaskFamily]) -> list:
    return heldout_tasks(families, PER_FAMILY, seed=0)


def test_every_family_gets_its_tasks_and_every_task_verifies(families, heldout) -> None:
    for name, family in families.items():
        mine = [task for task in heldout if task.family == name]
        assert len(mine) == PER_FAMILY, name
        assert len({task.task_id for task in mine}) == PER_FAMILY, f"{name}: duplicates"
        assert all(v.correct for v in family.verify(mine, [family.reference_answer(t) for t in mine])), name
        assert not any(v.correct for v in family.verify(mine, [family.wrong_answer(t) for t in mine])), name


def test_the_same_seed_gives_the_same_tasks_and_another_seed_others(families, heldout) -> None:
    again = heldout_tasks(families, PER_FAMILY, seed=0)
    assert [task.to_json() for task in again] == [task.to_json() for task in heldout]
    alone = heldout_tasks({"math_deduction": families["math_deduction"]}, PER_FAMILY, seed=0)
    assert alone == [task for task in heldout if task.family == "math_deduction"], "independent of other families"
    other = {task.task_id for task in heldout_tasks(families, PER_FAMILY, seed=1)}
    assert len(other & {task.task_id for task in heldout}) < len(heldout) // 4


def test_no_heldout_task_is_a_seed_or_a_warm_up_task(families, heldout) -> None:
    model, tokenizer = load_policy("flywheel/tiny", device="cpu")
    warmup = build_examples(families, Agent(model, tokenizer, template="r1"), 480, k_references=2, seed=0)
    for name, family in families.items():
        seen = {family.dedup_key(task.payload) for task in family.seed_tasks()}
        seen |= {family.dedup_key(e.task.payload) for e in warmup if e.family == name}
        mine = [family.dedup_key(task.payload) for task in heldout if task.family == name]
        assert not seen & set(mine), name


def test_no_heldout_program_shape_is_a_warm_up_program_shape() -> None:
    """Exhaustive over the templates' constant (`{k}` in 2..9), so it covers every program the warm-up writes."""

    def shapes(templates: tuple) -> set[str]:
        return {normalised_program(template.format(k=k)) for template, _ in templates for k in range(2, 10)}

    assert not shapes(CODE_TEMPLATES) & shapes(WARMUP_CODE_TEMPLATES)


def test_families_without_a_generator_are_skipped(families) -> None:
    methods = {name: lambda *args: [] for name in TaskFamily.__abstractmethods__}
    plug_in = type("PlugIn", (TaskFamily,), {"name": "plug_in", **methods})()
    assert not supports_heldout(plug_in)
    assert all(supports_heldout(family) for family in families.values())
    assert heldout_tasks({"plug_in": plug_in, "code_deduction": families["code_deduction"]}, 2, seed=0)
    with pytest.raises(ValueError, match="plug_in"):
        family_heldout_tasks(plug_in, 2, seed=0)
