"""A held-out task set for measuring transfer, generated at run time without any download.

`heldout_tasks(families, per_family, seed)` builds, for every built-in family it is given, `per_family`
tasks that test *near transfer*: the operations the warm-up and self-play exercise (``+ - * %`` on
integers and in list comprehensions, ``sum``, ``sorted``, ``len``, ``upper``, reversing slices;
substituting, expanding, factoring, differentiating ... over sums, products, powers, ``sin`` and ``exp``)
in program and expression shapes that neither the warm-up generators (`flywheel.envs.synthetic`) nor the
families' zero-data seeds contain, on inputs drawn as the warm-up draws them. Only the shape is new, so
held-out accuracy measures whether a model learnt the operations rather than the warm-up's programs.
How it is built:

* **Templates.** The tables below are separate from `synthetic.CODE_TEMPLATES` and
  `synthetic.MATH_TEMPLATES`: every program and expression shape here is absent there (``x - k`` and
  ``sorted(x)[::-1]`` here, ``x + k``, ``sorted(x)`` and ``x[::-1]`` there; ``(x - a)**2`` here,
  ``(x + a)**2`` there), and every operation here is used there. `tests/test_heldout.py` checks both
  (the operations by syntax tree), and that no generated held-out task equals a warm-up or seed task by
  the family's own duplicate key.
* **Inputs.** Code inputs come from the warm-up's makers (`synthetic.int_input`, ...) and induction takes
  the warm-up's number of inputs (``min_inputs``) and, for math, its integer points.
* **Seeds.** Each family draws from its own generator, ``random.Random("flywheel-heldout/{seed}/{family}")``:
  a string seed, so the stream shares nothing with the integer-seeded generators of training, and
  the same `seed` gives the same tasks whatever other families are played.
* **Validation.** Each candidate is written as a proposal in the family's answer format and goes
  through ``family.propose``, the path every self-play proposal takes: the sandbox runs the programs
  (twice, for determinism), SymPy computes every result, and math tasks must verify their own reference
  answer. Rejected candidates and duplicates are dropped and more are drawn.

Families other than the six built-in ones (plug-ins) have no held-out generator: `supports_heldout`
says which do, and `heldout_tasks` skips the others (give those real files to evaluate instead).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from flywheel.envs.base import Prompt, Task, TaskFamily
from flywheel.envs.code_tasks import CodeAbduction, CodeDeduction, CodeInduction
from flywheel.envs.math_tasks import MathAbduction, MathDeduction, MathInduction, operation_proposal_blocks
from flywheel.envs.parsing import format_answer
from flywheel.envs.synthetic import InputMaker, int_input, int_list_input, rational_inputs, two_ints_input, word_input

SOURCE = "heldout"
"""The source name held-out results are reported under (``eval/heldout/...``)."""
MAX_ATTEMPTS_PER_TASK = 8
"""Candidates drawn per wanted task before a family is given up on."""
CANDIDATE_BATCH = 16
"""Candidates validated per ``family.propose`` call."""

MathMaker = Callable[[random.Random], tuple[str, dict[str, str]]]


CODE_TEMPLATES: tuple[tuple[str, InputMaker], ...] = (
    ("def f(x):\n    return x - {k}", int_input),
    ("def f(x):\n    return (x - {k}) * 2", int_input),
    ("def f(x):\n    return (x + {k}) % 10", int_input),
    ("def f(x, y):\n    return x + y * {k}", two_ints_input),
    ("def f(x):\n    return [v + {k} for v in x]", int_list_input),
    ("def f(x):\n    return [v - {k} for v in x]", int_list_input),
    ("def f(x):\n    return [v % {k} for v in x]", int_list_input),
    ("def f(x):\n    return sum(x) * {k}", int_list_input),
    ("def f(x):\n    return sum([v * {k} for v in x])", int_list_input),
    ("def f(x):\n    return sorted(x)[::-1]", int_list_input),
    ("def f(x):\n    return sum(x) % {k}", int_list_input),
    ("def f(s):\n    return s.upper()[::-1]", word_input),
    ("def f(s):\n    return len(s) * {k}", word_input),
    ("def f(s):\n    return len(s) - {k}", word_input),
)
"""Program templates (``{k}`` a small positive integer), each with the warm-up's maker of inputs it accepts:
new shapes and compositions of the operations `synthetic.CODE_TEMPLATES` uses (``+ - * %``, comprehensions,
``sum``, ``sorted``, ``len``, ``upper``, reversing slices), none of them a warm-up shape."""

HINTS: tuple[str, ...] = ("What does f do to its argument?", "Work out the rule from the pairs.")
"""Induction messages: generic, as the generator's programs come from a template, not from reasoning."""


def _evaluate(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 5), rng.randint(1, 9)
    expression = rng.choice((f"{a}*x**2 - {b}*x", f"x**2 + {a}*x - {b}", f"{b} - {a}*x"))
    return expression, {"x": str(rng.randint(-5, 5))}


def _expand(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 6), rng.randint(1, 6)
    return rng.choice((f"(x - {a})**2", f"(x + {a})*(x + {b})", f"x*(x - {a})")), {}


def _factor(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 6), rng.randint(1, 6)
    return rng.choice((f"x**2 - {a + b}*x + {a * b}", f"x**2 - {a * a}", f"x**2 + {a}*x")), {}


def _simplify(rng: random.Random) -> tuple[str, dict[str, str]]:
    a = rng.randint(1, 6)
    return rng.choice((f"(x**2 + {a}*x)/x", f"(x**2 + {2 * a}*x + {a * a})/(x + {a})")), {}


def _differentiate(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b, n = rng.randint(1, 5), rng.randint(1, 9), rng.randint(2, 4)
    return rng.choice((f"{a}*x**{n} - {b}*x", f"{b}*sin({a}*x)", f"x**{n} + {b}")), {}


def _integrate(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 5), rng.randint(1, 9)
    if rng.random() < 0.5:
        return f"{a}*x + {b}", {}
    return f"{a}*x + {b}", {"lower": "0", "upper": str(rng.randint(1, 3))}


def _limit(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 5), rng.randint(1, 5)
    expression, point = rng.choice(((f"(x**2 + {a}*x)/x", "0"), (f"sin({a}*x)/({b}*x)", "0")))
    return expression, {"point": point}


def _solve(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 6), rng.randint(-9, 9)
    return rng.choice((f"x**2 - {a * a}", f"{a}*x - ({b})")), {}


def _series_coefficient(rng: random.Random) -> tuple[str, dict[str, str]]:
    n = rng.randint(2, 4)
    if rng.random() < 0.5:
        return f"(1 + x)**{n}", {"point": "0", "order": str(rng.randint(1, n))}
    return f"exp(-{n}*x)", {"point": "0", "order": str(rng.randint(1, 3))}


def _sum(rng: random.Random) -> tuple[str, dict[str, str]]:
    a = rng.randint(1, 5)
    return rng.choice((f"{a}*k**2", f"k - {a}", "k**3")), {"index": "k", "lower": "1", "upper": "n"}


MATH_TEMPLATES: dict[str, MathMaker] = {
    "evaluate": _evaluate,
    "simplify": _simplify,
    "expand": _expand,
    "factor": _factor,
    "differentiate": _differentiate,
    "integrate": _integrate,
    "limit": _limit,
    "solve": _solve,
    "series_coefficient": _series_coefficient,
    "sum": _sum,
}
"""Per operation, a maker of (expression, params); none of these shapes is among `synthetic.MATH_TEMPLATES`."""


def _functions(rng: random.Random) -> str:
    a, b = rng.randint(1, 5), rng.randint(1, 5)
    return rng.choice((f"{b} - {a}*x", f"x**2 - {a}*x", f"{a}*x**3 - {b}"))


def _code_io(family: TaskFamily, rng: random.Random) -> tuple[str, Prompt]:
    template, make_input = rng.choice(CODE_TEMPLATES)
    program = template.format(k=rng.randint(2, 9))
    return format_answer(("python", program), ("input", make_input(rng))), Prompt(text="")


def _code_induction(family: TaskFamily, rng: random.Random) -> tuple[str, Prompt]:
    template, make_input = rng.choice(CODE_TEMPLATES)
    program = template.format(k=rng.randint(2, 9))
    inputs = [("input", make_input(rng)) for _ in range(family.config.min_inputs)]
    return format_answer(*inputs, ("message", rng.choice(HINTS))), Prompt(text="", context={"program": program})


def _math_operation(family: TaskFamily, rng: random.Random) -> tuple[str, Prompt]:
    operation = rng.choice(family.config.operations)
    expression, params = MATH_TEMPLATES[operation](rng)
    payload = {"operation": operation, "expression": expression, "params": params}
    return format_answer(*operation_proposal_blocks(payload)), Prompt(text="")


def _math_induction(family: TaskFamily, rng: random.Random) -> tuple[str, Prompt]:
    inputs = [("input", x) for x in rational_inputs(rng, family.config.min_inputs)]
    blocks = [*inputs, ("message", rng.choice(HINTS)), ("expression", _functions(rng))]
    return format_answer(*blocks), Prompt(text="")


_CANDIDATES: tuple[tuple[type[TaskFamily], Callable[[Any, random.Random], tuple[str, Prompt]]], ...] = (
    (CodeDeduction, _code_io),
    (CodeAbduction, _code_io),
    (CodeInduction, _code_induction),
    (MathDeduction, _math_operation),
    (MathAbduction, _math_operation),
    (MathInduction, _math_induction),
)
"""For each built-in family class (and its subclasses), a maker of one proposal text and its prompt."""


def _candidate_maker(family: TaskFamily) -> Callable[[Any, random.Random], tuple[str, Prompt]] | None:
    return next((maker for cls, maker in _CANDIDATES if isinstance(family, cls)), None)


def supports_heldout(family: TaskFamily) -> bool:
    """Whether `heldout_tasks` can generate tasks of `family` (the built-in families and their subclasses)."""
    return _candidate_maker(family) is not None


def family_heldout_tasks(family: TaskFamily, per_family: int, seed: int) -> list[Task]:
    """`per_family` distinct valid held-out tasks of one family (fewer only if its validation keeps
    rejecting candidates), none equal to its seed tasks. Deterministic given `seed`."""
    maker = _candidate_maker(family)
    if maker is None:
        raise ValueError(f"no held-out generator for family {family.name!r}")
    rng = random.Random(f"flywheel-heldout/{seed}/{family.name}")
    known = {task.task_id for task in family.seed_tasks()}
    tasks: list[Task] = []
    attempts = 0
    while len(tasks) < per_family and attempts < MAX_ATTEMPTS_PER_TASK * per_family:
        candidates = [maker(family, rng) for _ in range(CANDIDATE_BATCH)]
        attempts += len(candidates)
        texts, prompts = zip(*candidates, strict=True)
        for result in family.propose(texts, prompts):
            if isinstance(result, Task) and result.task_id not in known and len(tasks) < per_family:
                known.add(result.task_id)
                tasks.append(result)
    return tasks


def heldout_tasks(families: Mapping[str, TaskFamily], per_family: int, seed: int) -> list[Task]:
    """The held-out set: `per_family` tasks of every family that `supports_heldout`, in family order."""
    if per_family < 0:
        raise ValueError(f"per_family must be at least 0, not {per_family}")
    return [
        task
        for family in families.values()
        if supports_heldout(family)
        for task in family_heldout_tasks(family, per_family, seed)
    ]
