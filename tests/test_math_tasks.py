"""The math families: proposal parsing and validation, gold computation, and verification per mode."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from flywheel.envs import Prompt, Rejection, Task, get_family_class, make_family
from flywheel.envs.math_tasks import (
    SEED_PROPOSALS,
    MathAbduction,
    MathDeduction,
    MathFamilyConfig,
    MathInduction,
)
from flywheel.envs.parsing import format_answer
from flywheel.envs.resources import SharedVerifiers
from flywheel.verifiers.math import OPERATIONS

GARBAGE = (
    "",
    "no tags at all",
    "<answer></answer>",
    "<answer>```answer\nx**2\n``` ```answer\nx\n```</answer>",
    "<answer>```answer\nx +\n```</answer>",
    "<answer>import os; os.system('echo hi')</answer>",
    "<answer>__import__('os').getcwd()</answer>",
    "<answer>" + "(" * 500 + "x" + ")" * 500 + "</answer>",
    "<answer>" + "9" * 5000 + "</answer>",
    "<answer>x\x00</answer>",
    "<answer>```answer\nunbalanced",
    "<answer>\\frac{1}{</answer>",
    "<answer>lambda: 1</answer>",
    "<answer>{1: 2}</answer>",
    "<answer>[x for x in range(10)]</answer>",
)


@pytest.fixture(scope="module")
def verifiers() -> Iterator[SharedVerifiers]:
    with SharedVerifiers(math_settings={"workers": 2, "timeout_s": 2.0}) as shared:
        yield shared


@pytest.fixture(scope="module")
def deduction(verifiers: SharedVerifiers) -> MathDeduction:
    return MathDeduction(verifiers=verifiers)


@pytest.fixture(scope="module")
def abduction(verifiers: SharedVerifiers) -> MathAbduction:
    return MathAbduction(verifiers=verifiers)


@pytest.fixture(scope="module")
def induction(verifiers: SharedVerifiers) -> MathInduction:
    return MathInduction(verifiers=verifiers)


def proposal(operation: str, expression: str, params: str = "") -> str:
    blocks = [("operation", operation), ("expression", expression)] + ([("params", params)] if params else [])
    return format_answer(*blocks, think="thinking")


def answer(text: str) -> str:
    return format_answer(("answer", text))


def task_of(family, text: str, prompt: Prompt | None = None) -> Task:
    (result,) = family.propose([text], [prompt or Prompt("")])
    assert isinstance(result, Task), result
    return result


def rejection_of(family, text: str, prompt: Prompt | None = None) -> Rejection:
    (result,) = family.propose([text], [prompt or Prompt("")])
    assert isinstance(result, Rejection), result
    return result


def statuses(family, task: Task, texts: list[str]) -> list[str]:
    return [verdict.status for verdict in family.verify([task] * len(texts), texts)]


# ------------------------------------------------------------------------------------------ registration


def test_families_are_registered() -> None:
    for name, cls, mode in (
        ("math_deduction", MathDeduction, "deduction"),
        ("math_abduction", MathAbduction, "abduction"),
        ("math_induction", MathInduction, "induction"),
    ):
        assert get_family_class(name) is cls
        assert cls.domain == "math" and cls.mode == mode and cls.config_class is MathFamilyConfig


def test_config_validation() -> None:
    config = MathFamilyConfig.from_dict({"operations": ["limit", "solve"], "max_answer_chars": 20})
    assert config.operations == ("limit", "solve")
    assert make_family("math_deduction").config.operations == OPERATIONS  # none given: all the rails allow
    for bad in ({"operations": ["integrate", "prove"]}, {"operations": []}, {"max_answer_chars": 0}, {"min_inputs": 1}):
        with pytest.raises(ValueError):
            MathFamilyConfig.from_dict(bad)
    with pytest.raises(ValueError, match="unknown settings"):
        MathFamilyConfig.from_dict({"max_nodez": 3})


def test_make_family_with_restricted_operations(verifiers: SharedVerifiers) -> None:
    family = make_family("math_deduction", {"operations": ["limit", "solve"]}, verifiers)
    assert [task.payload["operation"] for task in family.seed_tasks()] == ["limit", "solve"]
    assert "`integrate`" not in family.proposer_prompt([], random.Random(0)).text
    assert rejection_of(family, proposal("integrate", "2*x")).reason == "operation_not_allowed"


# ------------------------------------------------------------------------------------- seeds and invariants


@pytest.mark.parametrize("name", ["math_deduction", "math_abduction", "math_induction"])
def test_seeds_verify_reference_and_wrong_answers(name: str, verifiers: SharedVerifiers) -> None:
    family = make_family(name, verifiers=verifiers)
    seeds = family.seed_tasks()
    assert len(seeds) == (len(SEED_PROPOSALS) if name != "math_induction" else 2)
    assert len({task.task_id for task in seeds}) == len(seeds)
    assert [v.status for v in family.verify(seeds, [family.reference_answer(t) for t in seeds])] == ["correct"] * len(
        seeds
    )
    assert [v.status for v in family.verify(seeds, [family.wrong_answer(t) for t in seeds])] == ["wrong"] * len(seeds)
    for task in seeds:
        assert Task.from_json(task.to_json()) == task
        assert family.complexity(task) == task.payload["size"] > 0
        assert family.solver_prompt(task) == family.solver_prompt(task)


INVARIANT_PROPOSALS = [
    proposal("solve", "x**2 + 1", "domain: real"),
    proposal("solve", "x**3 - x"),
    proposal("limit", "1/x", "point: 0\ndir: +"),
    proposal("limit", "(x**2 + 1)/(2*x**2)", "point: oo"),
    proposal("integrate", "x*exp(x)"),
    proposal("integrate", "x", "lower: 0\nupper: 2"),
    proposal("differentiate", "sin(x)**2", "order: 2"),
    proposal("factor", "x**4 - 1"),
    proposal("series_coefficient", "1/(1 - x)", "order: 5"),
    proposal("sum", "2**k", "index: k\nlower: 0\nupper: n"),
]


@pytest.mark.parametrize("name", ["math_deduction", "math_abduction"])
def test_invariant_on_proposed_tasks(name: str, verifiers: SharedVerifiers) -> None:
    """Reference answers verify and wrong answers are well-formed and wrong, beyond the seeds."""
    family = make_family(name, verifiers=verifiers)
    tasks = family.propose(INVARIANT_PROPOSALS, [Prompt("")] * len(INVARIANT_PROPOSALS))
    assert all(isinstance(task, Task) for task in tasks), tasks
    assert [v.status for v in family.verify(tasks, [family.reference_answer(t) for t in tasks])] == ["correct"] * 10
    assert [v.status for v in family.verify(tasks, [family.wrong_answer(t) for t in tasks])] == ["wrong"] * 10


# ------------------------------------------------------------------------------------ proposal parsing


def test_parse_operation_proposal(deduction: MathDeduction) -> None:
    text = proposal("limit", "  sin(3*x)/x ", "point: 0\n\ndir = +")
    assert deduction.parse_proposal(text, Prompt("")) == {
        "operation": "limit",
        "expression": "sin(3*x)/x",
        "params": {"point": "0", "dir": "+"},
    }
    assert deduction.parse_proposal(proposal("expand", "(x+1)**3"), Prompt(""))["params"] == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no answer block", "parse_error"),
        ("<answer>```expression\nx**2\n```</answer>", "parse_error"),
        (proposal("expand", "x") + proposal("expand", "x"), "parse_error"),
        ("<answer>```operation\nexpand\n```\n```operation\nfactor\n```\n```expression\nx\n```</answer>", "parse_error"),
        (proposal("limit", "1/x", "point 0"), "bad_params"),
        (proposal("limit", "1/x", "point: 0\npoint: 1"), "bad_params"),
    ],
)
def test_parse_operation_proposal_errors(deduction: MathDeduction, text: str, reason: str) -> None:
    result = deduction.parse_proposal(text, Prompt(""))
    assert isinstance(result, Rejection) and result.reason == reason


def test_parse_induction_proposal(induction: MathInduction) -> None:
    prompt = induction.proposer_prompt(induction.seed_tasks(), random.Random(1))
    assert prompt.context["expression"] in ("2*x + 1", "x**2")
    text = format_answer(("input", "1"), ("input", " -3/6 "), ("message", "a hint"))
    assert induction.parse_proposal(text, prompt) == {
        "expression": prompt.context["expression"],
        "inputs": ["1", "-3/6"],
        "message": "a hint",
    }
    own = format_answer(("expression", "x**3"), ("input", "1"), ("message", "cubes"))
    assert induction.parse_proposal(own, prompt)["expression"] == "x**3"
    assert induction.parse_proposal(format_answer(("input", "1")), prompt).reason == "parse_error"  # no message
    no_function = induction.parse_proposal(format_answer(("input", "1"), ("message", "m")), Prompt(""))
    assert no_function.reason == "parse_error"
    long_message = format_answer(("input", "1"), ("message", "m" * (induction.config.max_message_chars + 1)))
    assert induction.parse_proposal(long_message, prompt).reason == "bad_message"


@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_proposals_are_rejections(
    text: str, deduction: MathDeduction, abduction: MathAbduction, induction: MathInduction
) -> None:
    for family in (deduction, abduction, induction):
        (result,) = family.propose([text], [Prompt("", {"expression": "x**2"})])
        assert isinstance(result, Rejection)


# --------------------------------------------------------------------------- validation and gold results


@pytest.mark.parametrize(
    ("operation", "expression", "params", "result"),
    [
        ("differentiate", "x**3*sin(x)", "", "x**3*cos(x) + 3*x**2*sin(x)"),
        ("differentiate", "x**4", "order: 2", "12*x**2"),
        ("limit", "(1 + 1/x)**x", "point: oo", "E"),
        ("limit", "1/x", "point: 0\ndir: +", "oo"),
        ("solve", "x**2 + 1", "", "{-I, I}"),
        ("solve", "x**2 + 1", "domain: real", "EmptySet"),
        ("series_coefficient", "cos(x)", "order: 4", "1/24"),
        ("sum", "k**2", "index: k\nlower: 1\nupper: n", "n**3/3 + n**2/2 + n/6"),
        ("integrate", "x", "lower: 0\nupper: 2", "2"),
        ("evaluate", "\\frac{x}{2} + 1", "x: 1/3", "7/6"),
    ],
)
def test_gold_results(deduction: MathDeduction, operation: str, expression: str, params: str, result: str) -> None:
    task = task_of(deduction, proposal(operation, expression, params))
    assert task.payload["result"] == result
    assert statuses(deduction, task, [deduction.reference_answer(task), deduction.wrong_answer(task)]) == [
        "correct",
        "wrong",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (proposal("prove", "x"), "operation_not_allowed"),
        (proposal("expand", "(x + 1)**2", "order: 2"), "bad_params"),
        (proposal("evaluate", "x + 123456789", "x: 1"), "number_too_large"),
        (proposal("evaluate", "x**2", "x: 123456789"), "number_too_large"),
        (proposal("evaluate", "x**8", "x: 99"), "number_too_large"),  # the result has 16 digits
        (proposal("expand", "(x + 1)**9"), "degree_too_high"),
        (proposal("expand", "(x + 1)**2*(x + 2)**4*(x + 3)**4"), "degree_too_high"),  # x**10 in the result
        (proposal("expand", "((x + 1)**3)**3"), "degree_too_high"),  # SymPy reads (x + 1)**9
        (proposal("differentiate", "+".join(f"sin({k}*x)" for k in range(1, 12))), "too_large"),
        (proposal("differentiate", "x +* 2"), "parse_error"),
        (proposal("limit", "sin(x)", "point: oo"), "not_computable"),  # AccumBounds(-1, 1)
        (proposal("limit", "1/x", "point: 0"), "not_computable"),  # zoo
        (proposal("limit", "1/x"), "not_computable"),  # the point is missing
        (proposal("solve", "sin(x)"), "not_computable"),  # infinitely many solutions
        (proposal("simplify", "x"), "trivial"),
        (proposal("expand", "x**2 + 1"), "trivial"),
        (proposal("differentiate", "exp(x)"), "trivial"),
        (proposal("simplify", "1/x + 1/y"), "trivial"),  # SymPy's (x + y)/(x*y) is not smaller
        (proposal("integrate", "exp(x)*sin(x)**5*cos(x)**3"), "timeout"),
    ],
)
def test_validation_rejections(deduction: MathDeduction, text: str, reason: str) -> None:
    rejection = rejection_of(deduction, text)
    assert rejection.reason == reason, rejection


def test_answer_length_bound(verifiers: SharedVerifiers) -> None:
    family = MathDeduction(MathFamilyConfig(max_answer_chars=10), verifiers)
    assert rejection_of(family, proposal("expand", "(x + 1)**3")).reason == "answer_too_long"


def test_unverifiable_tasks_are_rejected(verifiers: SharedVerifiers, monkeypatch: pytest.MonkeyPatch) -> None:
    family = MathDeduction(verifiers=verifiers)
    monkeypatch.setattr(family, "reference_answer", family.wrong_answer)
    assert rejection_of(family, proposal("differentiate", "x**3")).reason == "unverifiable"


def test_batch_keeps_order_and_dedups_on_normalised_text(deduction: MathDeduction) -> None:
    texts = [proposal("factor", "x**2-4"), "garbage", proposal("factor", "x**2 - 4"), proposal("factor", "x**3 - 8")]
    results = deduction.propose(texts, [Prompt("")] * 4)
    assert [type(r).__name__ for r in results] == ["Task", "Rejection", "Task", "Task"]
    assert results[0].task_id == results[2].task_id != results[3].task_id
    assert results[0].payload["result"] == "(x - 2)*(x + 2)"
    assert deduction.dedup_key(results[0].payload) == deduction.dedup_key(results[2].payload)


def test_proposer_prompt_shows_references(deduction: MathDeduction, abduction: MathAbduction) -> None:
    seeds = deduction.seed_tasks()
    for family in (deduction, abduction):
        prompt = family.proposer_prompt(seeds[:3], random.Random(0))
        assert "```expression\nx**2 + 1\n```" in prompt.text and "```params\nx: 3\n```" in prompt.text
        assert prompt.context["references"] == [task.task_id for task in seeds[:3]]
        assert "(none yet)" in family.proposer_prompt([], random.Random(0)).text


# ------------------------------------------------------------------------------------------- deduction


def test_deduction_accepts_any_equal_form(deduction: MathDeduction) -> None:
    task = task_of(deduction, proposal("series_coefficient", "exp(x)", "order: 3"))
    assert deduction.solver_prompt(task).text.count("exp(x)") == 2
    good = [
        answer("1/6"),
        "<answer>\\frac{1}{6}</answer>",
        "<answer>$\\boxed{\\dfrac{1}{6}}$</answer>",
        "<answer>1/6</answer>",
    ]
    assert statuses(deduction, task, good) == ["correct"] * 4
    assert statuses(deduction, task, [answer("1/7"), answer("0.1666")]) == ["wrong", "wrong"]


def test_deduction_solution_sets(deduction: MathDeduction) -> None:
    task = task_of(deduction, proposal("solve", "x**2 - x - 2"))
    texts = [
        answer("{2, -1}"),
        answer("x = -1 or x = 2"),
        "<answer>-1, 2</answer>",
        answer("{2}"),
        answer("{-1, 2, 3}"),
    ]
    assert statuses(deduction, task, texts) == ["correct", "correct", "correct", "wrong", "wrong"]


def test_deduction_antiderivative_up_to_a_constant(deduction: MathDeduction) -> None:
    task = task_of(deduction, proposal("integrate", "2*x*cos(x**2)"))
    assert task.payload["result"] == "sin(x**2)" and task.payload["derivative"] == "2*x*cos(x**2)"
    texts = [answer("sin(x**2)"), answer("sin(x^2) + 7"), answer("sin(x**2) + C"), answer("cos(x**2)")]
    assert statuses(deduction, task, texts) == ["correct", "correct", "correct", "wrong"]  # C is a constant


def test_deduction_form_operations_need_the_form(deduction: MathDeduction) -> None:
    expand = task_of(deduction, proposal("expand", "(x + 1)**3"))
    texts = [answer("x**3 + 3*x**2 + 3*x + 1"), "<answer>x^3+3x^2+3x+1</answer>", answer("(x + 1)**3")]
    assert statuses(deduction, expand, texts) == ["correct", "correct", "wrong"]
    factor = task_of(deduction, proposal("factor", "x**3 - x"))
    texts = [answer("x*(x - 1)*(x + 1)"), answer("(x+1)*x*(x-1)"), answer("x*(x**2 - 1)"), answer("x**3 - x")]
    assert statuses(deduction, factor, texts) == ["correct", "correct", "wrong", "wrong"]
    simplify = task_of(deduction, proposal("simplify", "sin(x)**2 + cos(x)**2 + x"))
    texts = [answer("x + 1"), answer("1 + x"), answer("sin(x)**2 + cos(x)**2 + x"), answer("x")]
    assert statuses(deduction, simplify, texts) == ["correct", "correct", "wrong", "wrong"]


def test_deduction_refuses_restating_the_problem(deduction: MathDeduction) -> None:
    """The checker's LaTeX reader would carry out these operators; an answer must be a closed form."""
    task = task_of(deduction, proposal("differentiate", "x**3*sin(x)"))
    texts = ["<answer>\\frac{d}{dx} x^3 \\sin(x)</answer>", "<answer>\\int 3x^2 dx</answer>"]
    verdicts = deduction.verify([task] * 2, texts)
    assert [v.status for v in verdicts] == ["format_error", "format_error"]
    assert "closed form" in verdicts[0].reason


# ------------------------------------------------------------------------------------------- abduction


@pytest.mark.parametrize(
    ("text", "valid", "invalid"),
    [
        (proposal("differentiate", "x**3"), ["x**3", "x**3 + 5", "\\frac{x^{3}}{1} - 2"], ["3*x**2", "x**3 + x"]),
        (proposal("integrate", "2*x"), ["2*x", "x + x + 0*sin(x)", "(x + 1)**2 - x**2 - 1"], ["x**2", "2*x + 1"]),
        (proposal("solve", "x**2 - x - 2"), ["x**2 - x - 2", "(x + 1)*(2*x - 4)", "x**2 = x + 2"], ["x - 2"]),
        (proposal("expand", "(x + 1)**2"), ["(x + 1)**2", "x*(x + 2) + 1"], ["x**2 + 2*x + 1", "x**2 + 1"]),
        (proposal("limit", "sin(x)/x", "point: 0"), ["sin(x)/x", "cos(x)", "1 + x"], ["1", "x"]),
        (proposal("evaluate", "x**2 + 1", "x: 3"), ["x**2 + 1", "3*x + 1", "x + 7"], ["10", "x"]),
        (proposal("sum", "k", "index: k\nlower: 1\nupper: n"), ["k", "2*k - k"], ["k + 1"]),
    ],
)
def test_abduction_any_valid_input_counts(abduction: MathAbduction, text: str, valid: list, invalid: list) -> None:
    task = task_of(abduction, text)
    assert task.payload["result"] in abduction.solver_prompt(task).text
    assert statuses(abduction, task, [answer(t) for t in valid]) == ["correct"] * len(valid)
    assert statuses(abduction, task, [answer(t) for t in invalid]) == ["wrong"] * len(invalid)


def test_abduction_antiderivative_is_checked_through_the_derivative(abduction: MathAbduction) -> None:
    """Given F = log(x**2 + 1), the honest inverse check differentiates F; the integrand need not
    integrate back to F's exact text."""
    task = task_of(abduction, proposal("integrate", "2*x/(x**2 + 1)"))
    assert task.payload["result"] == "log(x**2 + 1)"
    texts = [answer("2*x/(x**2 + 1)"), answer("(2*x + 2 - 2)/(1 + x^2)"), answer("2/x")]
    assert statuses(abduction, task, texts) == ["correct", "correct", "wrong"]


# ------------------------------------------------------------------------------------------- induction


def induction_task(induction: MathInduction, expression: str, inputs: list[str], message: str = "hint") -> Task:
    blocks = [("expression", expression), *(("input", x) for x in inputs), ("message", message)]
    return task_of(induction, format_answer(*blocks))


def test_induction_task_and_split(induction: MathInduction) -> None:
    task = induction_task(induction, "x**2 - 1/x", ["1", "2", "-1", "1/2", "3", "4"])
    assert task.payload["outputs"] == ["0", "7/2", "2", "-7/4", "26/3", "63/4"]
    visible = task.payload["visible"]
    assert len(visible) == 3 and visible == sorted(visible)
    again = induction_task(induction, "x**2 - 1/x", ["1", "2", "-1", "1/2", "3", "4"], message="other hint")
    assert again.payload["visible"] == visible  # the split follows the task id, not the message
    text = induction.solver_prompt(task).text
    shown = [f"f({task.payload['inputs'][i]}) = {task.payload['outputs'][i]}" for i in range(6)]
    assert all((line in text) == (i in visible) for i, line in enumerate(shown))
    assert "x**2 - 1/x" not in text


def test_induction_checks_hidden_pairs_exactly(induction: MathInduction) -> None:
    inputs = ["0", "1", "2", "3", "-1", "-2"]
    task = induction_task(induction, "x**3 - x", inputs)
    visible = [task.payload["inputs"][i] for i in task.payload["visible"]]
    fits_visible_only = "x**3 - x + " + "*".join(f"(x - ({x}))" for x in visible)
    texts = [
        answer("x**3 - x"),
        answer("x*(x - 1)*(x + 1)"),
        "<answer>x^3 - x</answer>",
        answer(fits_visible_only),
        answer("x**3 - x + 10**(-30)"),  # a tolerance would accept this
        answer("x**3 - y"),
    ]
    assert statuses(induction, task, texts) == ["correct", "correct", "correct", "wrong", "wrong", "wrong"]


@pytest.mark.parametrize(
    ("expression", "inputs", "reason"),
    [
        ("x**2", ["1", "2", "3"], "too_few_inputs"),
        ("x**2", ["1", "2", "2/1", "4/2", "-0"], "too_few_inputs"),  # duplicates count once
        ("x**2", [str(k) for k in range(MathFamilyConfig().n_inputs + 1)], "too_many_inputs"),
        ("x**2", ["1", "2", "3", "x"], "bad_input"),
        ("x**2", ["1", "2", "3", "1/0"], "bad_input"),
        ("x**2", ["1", "2", "3", "123456789"], "number_too_large"),
        ("x**9", ["1", "2", "3", "4"], "degree_too_high"),
        ("1/x", ["0", "1", "2", "3"], "not_computable"),
        ("x +", ["0", "1", "2", "3"], "parse_error"),
        ("7", ["0", "1", "2", "3"], "trivial"),
    ],
)
def test_induction_rejections(induction: MathInduction, expression: str, inputs: list[str], reason: str) -> None:
    blocks = [("expression", expression), *(("input", x) for x in inputs), ("message", "hint")]
    assert rejection_of(induction, format_answer(*blocks)).reason == reason


# ------------------------------------------------------------------------------------- malformed answers


def test_malformed_answers_are_format_errors(
    deduction: MathDeduction, abduction: MathAbduction, induction: MathInduction
) -> None:
    for family in (deduction, abduction, induction):
        tasks = family.seed_tasks()
        batch = [(task, text) for task in tasks for text in GARBAGE]
        verdicts = family.verify([task for task, _ in batch], [text for _, text in batch])
        assert {(text, verdict.status) for (_, text), verdict in zip(batch, verdicts, strict=True)} == {
            (text, "format_error") for text in GARBAGE
        }, family.name
