"""Small seeded generators of well-formed proposals for the format warm-up (`flywheel.train.warmup`).

The built-in families' `TaskFamily.warmup_proposal` hooks draw from these templates. Nothing here is
trusted: every proposal goes through the family's own parsing and validation (the sandbox runs the
programs, the math checker computes the results), and a template instance that fails is dropped.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence

InputMaker = Callable[[random.Random], str]


def int_input(rng: random.Random) -> str:
    """One integer argument."""
    return str(rng.randint(-9, 20))


def int_list_input(rng: random.Random) -> str:
    """One list of 1 to 4 digits."""
    return str([rng.randint(0, 9) for _ in range(rng.randint(1, 4))])


def word_input(rng: random.Random) -> str:
    """One lowercase word of 2 to 6 letters, quoted."""
    return repr("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 6))))


def two_ints_input(rng: random.Random) -> str:
    """Two integer arguments."""
    return f"{int_input(rng)}, {int_input(rng)}"


CODE_TEMPLATES: tuple[tuple[str, InputMaker], ...] = (
    ("def f(x):\n    return x + {k}", int_input),
    ("def f(x):\n    return x * {k} - 1", int_input),
    ("def f(x):\n    return x % {k}", int_input),
    ("def f(x, y):\n    return x * y + {k}", two_ints_input),
    ("def f(x):\n    return [v * {k} for v in x]", int_list_input),
    ("def f(x):\n    return [v for v in x if v > {k}]", int_list_input),
    ("def f(x):\n    return sum(x) + {k}", int_list_input),
    ("def f(x):\n    return sorted(x)", int_list_input),
    ("def f(x):\n    return x[::-1]", int_list_input),
    ("def f(x):\n    return len(x) % {k}", int_list_input),
    ("def f(s):\n    return s[::-1]", word_input),
    ("def f(s):\n    return s.upper()", word_input),
    ("def f(s):\n    return s * {k}", word_input),
    ("def f(s):\n    return len(s) + {k}", word_input),
)
"""Program templates (``{k}`` is a small positive integer) with a maker of inputs they accept."""

INPUT_MAKERS: tuple[InputMaker, ...] = (int_input, int_list_input, word_input)
MESSAGES: tuple[str, ...] = ("Look at how each input changes.", "Compare inputs and outputs.", "Find the rule.")
"""Induction messages: generic hints, since a generator does not know what the shown function does."""


def code_snippet(rng: random.Random) -> tuple[str, str]:
    """A small program and one input (argument-list text) for it."""
    template, make_input = rng.choice(CODE_TEMPLATES)
    return template.format(k=rng.randint(2, 9)), make_input(rng)


def code_program(rng: random.Random, n: int) -> tuple[str, list[str]]:
    """A small program and `n` inputs it accepts."""
    template, make_input = rng.choice(CODE_TEMPLATES)
    return template.format(k=rng.randint(2, 9)), [make_input(rng) for _ in range(n)]


def code_inputs(rng: random.Random, n: int) -> list[str]:
    """`n` inputs of one random kind (ints, int lists or words), for a program the generator did not write."""
    make_input = rng.choice(INPUT_MAKERS)
    return [make_input(rng) for _ in range(n)]


# The ranges are wide enough that a run's buffer (some hundreds of tasks per family) stays a small part
# of each operation's space: a proposer drawing from the warm start's distribution rarely repeats a task.
def _evaluate(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 9), rng.randint(1, 20)
    return rng.choice((f"{a}*x**2 + {b}", f"x**3 - {b}*x", f"{a}*x + {b}")), {"x": str(rng.randint(-9, 9))}


def _expand(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 12), rng.randint(1, 12)
    return rng.choice((f"(x + {a})*(x - {b})", f"(x + {a})**2", f"{a}*(x + {b})")), {}


def _factor(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(1, 12), rng.randint(1, 12)
    return f"x**2 + {a + b}*x + {a * b}", {}


def _simplify(rng: random.Random) -> tuple[str, dict[str, str]]:
    a = rng.randint(1, 6)
    return f"(x**2 - {a * a})/(x - {a})", {}


def _differentiate(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, n = rng.randint(1, 12), rng.randint(2, 5)
    return rng.choice((f"{a}*x**{n}", f"x**{n} + {a}*x", f"sin({a}*x)")), {}


def _integrate(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, n = rng.randint(1, 5), rng.randint(1, 3)
    if rng.random() < 0.5:
        return f"{a}*x**{n}", {}
    return f"{a}*x**{n}", {"lower": "0", "upper": str(rng.randint(1, 3))}


def _limit(rng: random.Random) -> tuple[str, dict[str, str]]:
    a = rng.randint(1, 5)
    expression, point = rng.choice(((f"(x**2 - {a * a})/(x - {a})", str(a)), (f"sin({a}*x)/x", "0")))
    return expression, {"point": point}


def _solve(rng: random.Random) -> tuple[str, dict[str, str]]:
    a, b = rng.randint(-5, 5), rng.randint(-5, 5)
    return f"(x - {a})*(x - {b})", {}


def _series_coefficient(rng: random.Random) -> tuple[str, dict[str, str]]:
    a = rng.randint(1, 3)
    return rng.choice((f"exp({a}*x)", f"1/(1 - {a}*x)")), {"point": "0", "order": str(rng.randint(1, 4))}


def _sum(rng: random.Random) -> tuple[str, dict[str, str]]:
    a = rng.randint(1, 5)
    return rng.choice((f"{a}*k", "k**2", f"k + {a}")), {"index": "k", "lower": "1", "upper": "n"}


MATH_TEMPLATES: dict[str, Callable[[random.Random], tuple[str, dict[str, str]]]] = {
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
"""Per operation, a maker of (expression, params) instances."""


def math_problem(rng: random.Random, operations: Sequence[str]) -> tuple[str, str, dict[str, str]]:
    """An (operation, expression, params) triple for one of `operations`."""
    operation = rng.choice([name for name in operations if name in MATH_TEMPLATES])
    expression, params = MATH_TEMPLATES[operation](rng)
    return operation, expression, params


def math_function(rng: random.Random) -> str:
    """A small function of x with rational values at rational points."""
    a, b = rng.randint(1, 5), rng.randint(-5, 5)
    return rng.choice((f"{a}*x + {b}", f"x**2 + {b}", f"{a}*x**2 - x", f"x**3 + {a}"))


def rational_inputs(rng: random.Random, n: int) -> list[str]:
    """`n` distinct small integers (as text), for induction."""
    return [str(v) for v in rng.sample(range(-6, 10), n)]
