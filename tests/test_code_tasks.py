"""The three code families: proposal parsing and validation, verification, dedup keys, AZR seeds."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from flywheel.envs import Rejection, Task, make_family
from flywheel.envs.buffer import load_azr_seeds
from flywheel.envs.code_tasks import IDENTITY_PROGRAM, CodeFamilyConfig, CodeInduction, normalised_program
from flywheel.envs.parsing import format_answer
from flywheel.envs.resources import SharedVerifiers
from flywheel.verifiers.sandbox import SandboxConfig

ROTATE = "def f(xs, k):\n    # rotate left by k\n    return xs[k:] + xs[:k]"


@pytest.fixture(scope="module")
def verifiers() -> Iterator[SharedVerifiers]:
    with SharedVerifiers(SandboxConfig(workers=2, timeout_s=1.0)) as shared:
        yield shared


@pytest.fixture(scope="module")
def deduction(verifiers):
    return make_family("code_deduction", verifiers=verifiers)


@pytest.fixture(scope="module")
def abduction(verifiers):
    return make_family("code_abduction", verifiers=verifiers)


@pytest.fixture(scope="module")
def induction(verifiers):
    return make_family("code_induction", verifiers=verifiers)


def proposal(program: str, *inputs: str, message: str | None = None) -> str:
    blocks = [("python", program)] if message is None else []
    blocks += [("input", text) for text in inputs]
    if message is not None:
        blocks.append(("message", message))
    return format_answer(*blocks, think="let me design something")


def propose_one(family, text: str, references: list[Task] | None = None):
    prompt = family.proposer_prompt(references or family.seed_tasks(), random.Random(0))
    return family.propose([text], [prompt])[0]


# ------------------------------------------------------------------------------------------ proposals


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no answer at all", "parse_error"),
        ("<answer>```python\ndef f(a):\n    return a\n```</answer>", "parse_error"),  # no input block
        (proposal("def f(a):\n    return a", "1") + "<answer>again</answer>", "parse_error"),
        (
            format_answer(("python", "def f(a): return a"), ("python", "def f(a): return 2"), ("input", "1")),
            "parse_error",
        ),
    ],
)
def test_unreadable_proposals_are_parse_errors(deduction, text, reason):
    result = deduction.parse_proposal(text, deduction.proposer_prompt([], random.Random(0)))
    assert isinstance(result, Rejection) and result.reason == reason


def test_every_rejection_reason_in_one_batch(deduction):
    cases = {
        "syntax_error": ("def f(a) return a", "1"),
        "no_entry": ("def g(a):\n    return a", "1"),
        "no_arguments": ("def f():\n    return 1", "1"),
        "bad_input": ("def f(a):\n    return a", "len([1])"),
        "static_check": ("import os\ndef f(a):\n    return os.getcwd()", "1"),
        "runtime_error": ("def f(a):\n    return a / 0", "1"),
        "timeout": ("def f(a):\n    while True:\n        a += 1", "1"),
        "nondeterministic": ("import random\ndef f(a):\n    return random.random() + a", "1"),
        "output_too_long": ("def f(a):\n    return 'x' * a", "5000"),
        "none_output": ("def f(a):\n    a.append(1)", "[]"),
        "program_too_long": ("def f(a):\n    return a" + " " * 5000, "1"),
    }
    prompts = [deduction.proposer_prompt([], random.Random(0))] * len(cases)
    results = deduction.propose([proposal(*case) for case in cases.values()], prompts)
    assert [getattr(result, "reason", "valid") for result in results] == list(cases)


def test_empty_argument_list_is_rejected(deduction):
    assert propose_one(deduction, proposal("def f(*a):\n    return 1", "")).reason == "no_arguments"


def test_valid_proposal_becomes_a_task_with_canonical_input(deduction):
    task = propose_one(deduction, proposal(ROTATE, "[1,2,3,  4],k = 1"))
    assert isinstance(task, Task)
    assert task.payload == {"program": ROTATE, "input": "[1, 2, 3, 4], k=1", "output": "[2, 3, 4, 1]"}
    assert task.task_id == deduction.make_task(task.payload).task_id
    assert deduction.complexity(task) > 10


def test_none_output_allowed_by_config(verifiers):
    family = make_family("code_deduction", {"allow_none_output": True}, verifiers)
    assert isinstance(propose_one(family, proposal("def f(a):\n    a.append(1)", "[]")), Task)


def test_seed_tasks_survive_revalidation(deduction, induction):
    for family in (deduction, induction):
        for seed in family.seed_tasks():
            fields = {
                key: seed.payload[key] for key in ("program", "input", "inputs", "message") if key in seed.payload
            }
            (again,) = family.validate_proposals([fields])
            assert again == seed


# ---------------------------------------------------------------------------------------- dedup and config


def test_dedup_key_ignores_names_comments_docstrings_and_layout(deduction):
    other = 'def f(values, n):\n    """Rotate."""\n    return values[n:]  +  values[:n]'
    payload = {"program": ROTATE, "input": "[1, 2], 1"}
    assert deduction.dedup_key(payload) == deduction.dedup_key({**payload, "program": other})
    assert deduction.dedup_key(payload) != deduction.dedup_key({**payload, "input": "[1, 2], 0"})
    assert deduction.dedup_key(payload) != deduction.dedup_key({**payload, "program": ROTATE.replace("k:", "k + 1:")})
    assert normalised_program("def f(a):\n    return len(a)") != normalised_program("def f(a):\n    return sorted(a)")


@pytest.mark.parametrize(
    "settings", [{"n_inputs": 0}, {"min_inputs": 1}, {"min_inputs": 11}, {"rel_tol": -1.0}, {"max_output_chars": 0}]
)
def test_config_rejects_unworkable_settings(settings):
    with pytest.raises(ValueError):
        CodeFamilyConfig.from_dict(settings)
    with pytest.raises(ValueError, match="unknown settings"):
        CodeFamilyConfig.from_dict({"no_such_setting": 1})


# ------------------------------------------------------------------------------------- deduction solving


@pytest.fixture(scope="module")
def rotate_task(deduction):
    return propose_one(deduction, proposal(ROTATE, "[1, 2, 3, 4], 1"))


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ("<think>x</think><answer>\n```output\n[2, 3, 4, 1]\n```\n</answer>", "correct"),
        ("<answer>  [2,3,4,1]  </answer>", "correct"),  # bare answer, other spacing
        ("<ANSWER>```\n[2, 3, 4, 1]\n```</ANSWER>", "correct"),  # untagged fence, tag case
        ("<answer>[2, 3, 4, 1.0]</answer>", "correct"),  # Python == semantics by default
        ("<answer>(2, 3, 4, 1)</answer>", "wrong"),
        ("<answer>[1, 2, 3, 4]</answer>", "wrong"),
        ("<answer>[2, 3, 4, 1</answer>", "format_error"),
        ("<answer>```output\n[2]\n``` ```output\n[3]\n```</answer>", "format_error"),
        ("[2, 3, 4, 1]", "format_error"),
    ],
)
def test_deduction_verdicts(deduction, rotate_task, answer, status):
    assert deduction.verify([rotate_task], [answer])[0].status == status


def test_deduction_strict_types(verifiers, rotate_task):
    strict = make_family("code_deduction", {"strict_types": True}, verifiers)
    assert strict.verify([rotate_task], ["<answer>[2, 3, 4, 1.0]</answer>"])[0].status == "wrong"


# ------------------------------------------------------------------------------------- abduction solving


def test_abduction_accepts_any_input_with_the_output(abduction):
    task = propose_one(abduction, proposal("def f(a, b):\n    return (a * b) % 7", "3, 4"))
    assert task.payload["output"] == "5"
    answers = [
        "<answer>```input\n3, 4\n```</answer>",
        "<answer>5, 1</answer>",
        "<answer>1, 1</answer>",
        "<answer>5</answer>",
    ]
    answers.append("<answer>```input\nimport os\n```</answer>")
    assert [v.status for v in abduction.verify([task] * 5, answers)] == [
        "correct",
        "correct",
        "wrong",
        "wrong",  # f(5) raises TypeError
        "format_error",
    ]


def test_abduction_evaluates_expression_answers_in_the_sandbox(abduction):
    """A solver may answer with an expression, as benchmark rows do; it runs in the sandbox, never in the parent."""
    task = propose_one(abduction, proposal("def f(xs):\n    return sum(xs)", "[1, 2, 3, 4]"))
    assert task.payload["output"] == "10"
    answers = [
        "<answer>```input\n[1] * 10\n```</answer>",
        "<answer>```input\nlist(range(5))\n```</answer>",
        "<answer>```input\n[2] * 10\n```</answer>",
        "<answer>```input\n(x := [10])\n```</answer>",
        "<answer>```input\n1; 2\n```</answer>",
    ]
    verdicts = abduction.verify([task] * 5, answers)
    assert [(v.status, v.reason) for v in verdicts[:4]] == [
        ("correct", ""),
        ("correct", ""),
        ("wrong", "output_mismatch"),
        ("wrong", "static_check"),  # refused before anything runs
    ]
    assert verdicts[4].status == "format_error"  # not an argument list


# ------------------------------------------------------------------------------------- induction


def induction_prompt(family, program: str):
    program_task = Task(family="code_deduction", payload={"program": program}, task_id="x")
    return family.proposer_prompt([program_task], random.Random(0))


def test_induction_prompt_takes_the_program_from_references(induction):
    prompt = induction_prompt(induction, ROTATE)
    assert prompt.context["program"] == ROTATE and ROTATE in prompt.text
    assert induction.proposer_prompt([], random.Random(0)).context["program"] == IDENTITY_PROGRAM


def test_induction_task_split_and_verification(induction):
    inputs = [f"[{i}, {i + 1}, {i + 2}], {i % 3}" for i in range(10)]
    text = proposal("", *inputs, message="Rotate the list.")
    prompt = induction_prompt(induction, ROTATE)
    task = induction.propose([text], [prompt])[0]
    assert isinstance(task, Task), task
    assert len(task.payload["outputs"]) == 10 and len(task.payload["visible"]) == 5
    assert induction.make_task({k: v for k, v in task.payload.items() if k != "visible"}) == task
    solver_text = induction.solver_prompt(task).text
    visible = task.payload["visible"]
    hidden = [i for i in range(10) if i not in visible]
    assert all(task.payload["inputs"][i] in solver_text for i in visible)
    assert not any(f"```input\n{task.payload['inputs'][i]}\n```" in solver_text for i in hidden)
    # A lookup table of the visible pairs passes what the solver sees but not the hidden pairs.
    table = {task.payload["inputs"][i]: task.payload["outputs"][i] for i in visible}
    entries = ", ".join(f"{key!r}: {value}" for key, value in table.items())
    lookup = f"def f(xs, k):\n    table = {{{entries}}}\n    return table[repr(xs) + ', ' + repr(k)]"
    answers = [
        induction.reference_answer(task),
        format_answer(("python", "def f(items, n):\n    n = n % len(items)\n    return items[n:] + items[:n]")),
        format_answer(("python", lookup)),
        format_answer(("python", "def f(xs, k)\n    return xs")),
        induction.wrong_answer(task),
    ]
    verdicts = induction.verify([task] * len(answers), answers)
    assert [v.status for v in verdicts] == ["correct", "correct", "wrong", "format_error", "wrong"]
    assert verdicts[2].reason == "runtime_error"  # KeyError on the first hidden input


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ([f"{i}" for i in range(11)], "too_many_inputs"),
        (["1", "2", "3"], "too_few_inputs"),
        (["1", "1", " 1", "2", "3"], "too_few_inputs"),  # duplicates collapse after canonicalisation
        (["1", "2", "3", "x +"], "bad_input"),
    ],
)
def test_induction_input_bounds(induction, inputs, reason):
    prompt = induction_prompt(induction, "def f(a):\n    return a * 2")
    result = induction.propose([proposal("", *inputs, message="double")], [prompt])[0]
    assert isinstance(result, Rejection) and result.reason == reason


def test_induction_needs_a_message(induction):
    prompt = induction_prompt(induction, "def f(a):\n    return a * 2")
    text = format_answer(*[("input", str(i)) for i in range(6)])
    assert induction.propose([text], [prompt])[0].reason == "parse_error"


def test_induction_is_one_family_class():
    assert CodeInduction.mode == "induction" and CodeInduction.env_name == "CodeInduction"


# ------------------------------------------------------------------------------------------ AZR seeds


@pytest.mark.parametrize(
    ("family_name", "file_name"),
    [
        ("code_deduction", "azr_7b_coder_seed_io.jsonl"),
        ("code_abduction", "azr_7b_coder_seed_io.jsonl"),
        ("code_induction", "azr_7b_coder_code_f_seed_io.jsonl"),
    ],
)
def test_azr_seeds_are_validated_through_the_sandbox(verifiers, shared_data, family_name, file_name):
    family = make_family(family_name, verifiers=verifiers)
    tasks = load_azr_seeds(shared_data / file_name, family, limit=24)
    assert 12 <= len(tasks) <= 24
    assert all(task.family == family_name for task in tasks)
    assert all(v.correct for v in family.verify(tasks, [family.reference_answer(t) for t in tasks]))
    assert not any(v.correct for v in family.verify(tasks, [family.wrong_answer(t) for t in tasks]))


def test_azr_rows_of_the_other_format_are_skipped(verifiers, shared_data):
    family = make_family("code_induction", verifiers=verifiers)
    assert load_azr_seeds(shared_data / "azr_7b_coder_seed_io.jsonl", family, limit=5) == []
