"""HumanEval through the sandbox: every canonical solution passes its tests; broken variants fail."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flywheel.verifiers.sandbox import DEFAULT_ALLOWED_IMPORTS, Job, Sandbox, SandboxConfig, Status
from flywheel.verifiers.static_check import check_program

# HumanEval's prompts and tests import a few modules beyond the self-play default.
HUMANEVAL_IMPORTS = DEFAULT_ALLOWED_IMPORTS | {"hashlib", "sys"}


@pytest.fixture(scope="module")
def problems(shared_data: Path) -> list[dict]:
    with gzip.open(shared_data / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """Static check off: HumanEval/160's canonical solution calls eval (see test_static_check_on_humaneval)."""
    with Sandbox(SandboxConfig(timeout_s=5.0, allowed_imports=HUMANEVAL_IMPORTS, static_check=False)) as sb:
        yield sb


def test_static_check_on_humaneval(problems: list[dict]) -> None:
    rejected = {
        p["task_id"] for p in problems if check_program(harness(p, p["canonical_solution"]).program, HUMANEVAL_IMPORTS)
    }
    assert rejected == {"HumanEval/160"}  # `return eval(expression)`


# HumanEval/106 defines its own `f`, so the harness entry gets a name no task uses.
ENTRY = "flywheel_check"

# Wraps the canonical solution and nudges its answer: numbers off by one, containers/strings extended.
NUDGE = """
_flywheel_orig = {name}
def {name}(*args, **kwargs):
    r = _flywheel_orig(*args, **kwargs)
    if type(r) is bool:
        return not r
    if type(r) in (int, float):
        return r + 1
    if type(r) in (list, tuple, str):
        return r + r[:1] if r else r + type(r)("x" if type(r) is str else [0])
    return None
"""


def harness(problem: dict, solution: str) -> Job:
    test = problem["test"] + f"\ndef {ENTRY}():\n    check({problem['entry_point']})\n"
    return Job(problem["prompt"] + solution + "\n\n" + test, ("",), entry=ENTRY)


def test_canonical_solutions_pass(problems: list[dict], sandbox: Sandbox) -> None:
    assert len(problems) == 164
    results = sandbox.run_many([harness(p, p["canonical_solution"]) for p in problems])
    failures = {p["task_id"]: r[0] for p, r in zip(problems, results, strict=True) if r[0].status != Status.OK}
    assert failures == {}
    assert all(r[0].value == "None" for r in results)


@pytest.mark.parametrize("breakage", ["return_none", "off_by_one"])
def test_broken_variants_fail(problems: list[dict], sandbox: Sandbox, breakage: str) -> None:
    def broken(p: dict) -> str:
        if breakage == "return_none":
            return "    return None\n"
        return p["canonical_solution"] + NUDGE.format(name=p["entry_point"])

    results = sandbox.run_many([harness(p, broken(p)) for p in problems])
    passed = [p["task_id"] for p, r in zip(problems, results, strict=True) if r[0].status == Status.OK]
    assert passed == []
