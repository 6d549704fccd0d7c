"""The held-out set: valid, deterministic, and disjoint from what the warm-up and the seeds contain."""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator

import pytest
import sympy
from flywheel.agents import Agent, load_policy
from flywheel.envs import TaskFamily, make_family
from flywheel.envs.code_tasks import program_structure
from flywheel.envs.heldout import CODE_TEMPLATES, MATH_TEMPLATES, family_heldout_tasks, heldout_tasks, supports_heldout
from flywheel.envs.resources import SharedVerifiers
from flywheel.envs.synthetic import CODE_TEMPLATES as WARMUP_CODE_TEMPLATES
from flywheel.envs.synthetic import MATH_TEMPLATES as WARMUP_MATH_TEMPLATES
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
    """By `program_structure` (every literal a placeholder): no held-out program differs from a warm-up
    program only in its constants."""

    def shapes(templates: tuple) -> set[str]:
        return {program_structure(template.format(k=2)) for template, _ in templates}

    assert not shapes(CODE_TEMPLATES) & shapes(WARMUP_CODE_TEMPLATES)


def program_operations(program: str) -> set[str]:
    """What a program does, by syntax tree: operators, comparisons, called names and methods, slices,
    comprehensions and their filters (variable names and constants left out)."""
    operations: set[str] = set()
    for node in ast.walk(ast.parse(program)):
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            operations.add(type(node.op).__name__)
        elif isinstance(node, ast.Compare):
            operations.update(type(op).__name__ for op in node.ops)
        elif isinstance(node, ast.Call):
            func = node.func
            operations.add(func.id if isinstance(func, ast.Name) else f".{func.attr}")  # type: ignore[attr-defined]
        elif isinstance(node, (ast.Slice, ast.ListComp, ast.List, ast.keyword)):
            operations.add(type(node).__name__)
        elif isinstance(node, ast.comprehension) and node.ifs:
            operations.add("filter")
        elif isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
            operations.add("index")
    return operations


def test_heldout_programs_use_only_operations_the_warm_up_uses() -> None:
    def operations(templates: tuple) -> set[str]:
        return set().union(*(program_operations(template.format(k=2)) for template, _ in templates))

    assert program_operations("def f(s):\n    return s[0] + abs(len(s)) // 2") == {
        "Add",
        "abs",
        "len",
        "FloorDiv",
        "index",
    }
    warmup = operations(WARMUP_CODE_TEMPLATES)
    for template, _ in CODE_TEMPLATES:
        assert program_operations(template.format(k=2)) <= warmup, template


def test_heldout_expressions_use_only_functions_the_warm_up_uses() -> None:
    """Functions by SymPy head (``sin``, ``exp``, ``Pow``, ...) over many draws of every template."""

    def heads(templates: dict) -> set[str]:
        rng = random.Random(0)
        found: set[str] = set()
        for make in templates.values():
            for _ in range(50):
                expression = sympy.sympify(make(rng)[0])
                found |= {type(node).__name__ for node in sympy.preorder_traversal(expression) if node.args}
        return found

    assert heads({"one": lambda rng: ("cos(2*x) + 1", {})}) == {"Add", "Mul", "cos"}
    assert heads(MATH_TEMPLATES) <= heads(WARMUP_MATH_TEMPLATES)


def test_families_without_a_generator_are_skipped(families) -> None:
    methods = {name: lambda *args: [] for name in TaskFamily.__abstractmethods__}
    plug_in = type("PlugIn", (TaskFamily,), {"name": "plug_in", **methods})()
    assert not supports_heldout(plug_in)
    assert all(supports_heldout(family) for family in families.values())
    assert heldout_tasks({"plug_in": plug_in, "code_deduction": families["code_deduction"]}, 2, seed=0)
    with pytest.raises(ValueError, match="plug_in"):
        family_heldout_tasks(plug_in, 2, seed=0)
