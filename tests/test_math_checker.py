"""MathChecker: table of equal/unequal pairs, math-verify false positives, timeouts, fuzzing."""

from __future__ import annotations

import itertools
import os
import random
import re
import signal

import pytest
from flywheel.verifiers.math import ComputeRequest, MathChecker, MathVerdict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EQUAL = [
    # numbers, fractions, LaTeX basics
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac{3}{4}", "3/4"),
    ("2^{10}", "1024"),
    ("\\sqrt{8}", "2\\sqrt{2}"),
    ("\\sqrt[3]{8}", "2"),
    ("3\\frac{1}{2}", "7/2"),
    ("3 \\cdot 4", "12"),
    ("3\\times 4", "12"),
    ("\\left(1+2\\right)", "3"),
    ("\\pi", "pi"),
    ("2\\pi", "2*pi"),
    ("\\infty", "oo"),
    ("1{,}000", "1000"),
    ("1,000,000", "10^6"),
    ("1\\,000", "1000"),
    ("50\\%", "50"),
    ("30^\\circ", "30"),
    ("5\\text{ cm}", "5"),
    ("12 cm", "12"),
    ("-\\frac{1}{3}", "-1/3"),
    ("\\frac{\\sqrt{3}}{2}", "sqrt(3)/2"),
    ("The answer is \\boxed{\\dfrac{3}{4}}.", "0.75"),
    ("\\boxed{1} then \\boxed{2}", "2"),
    ("$5$", "5"),
    ("e^{2}", "exp(2)"),
    ("3+4i", "3+4*I"),
    ("\\frac{1}{\\sqrt{2}}", "sqrt(2)/2"),
    ("0.1", "1/10"),
    ("\\sqrt{2}", "1.4142135623730951"),
    ("1/2004!", "\\frac{1}{2004!}"),
    ("10^{-20}", "1e-20"),
    ("\\log_2 8", "3"),
    ("\\binom{5}{2}", "10"),
    ("5!", "120"),
    # expressions
    ("(x+1)^2", "x^2+2x+1"),
    ("\\frac{x^2-1}{x-1}", "x+1"),
    ("\\sin^2 x + \\cos^2 x", "1"),
    ("2x(x+1)", "2x^2 + 2x"),
    ("\\frac{1}{x} + \\frac{1}{y}", "(x+y)/(x*y)"),
    ("\\ln(e^x)", "x"),
    # equations
    ("x = 2", "2x - 4 = 0"),
    ("y = 2x+1", "2x - y + 1 = 0"),
    ("x^2 - 1 = 0", "(x-1)(x+1) = 0"),
    ("x = 2", "2"),
    ("y = 2x + 1", "y = 1 + 2x"),
    # sets, \pm, answer lists
    ("\\{1, 2\\}", "{2, 1}"),
    ("\\pm 2", "{-2, 2}"),
    ("\\pm 2", "2, -2"),
    ("x = \\pm 2", "-2, 2"),
    ("1 \\pm \\sqrt{2}", "1+sqrt(2), 1-sqrt(2)"),
    ("{-1, 2}", "x = 2 or x = -1"),
    ("\\emptyset", "{}"),
    # intervals and inequalities
    ("[1, 3)", "[1, 3)"),
    ("(-\\infty, 2]", "(-oo, 2]"),
    ("(1, 2)", "(1, 2)"),
    ("x > 2", "(2, \\infty)"),
    ("1 < x \\le 3", "(1, 3]"),
    ("(-\\infty, 1) \\cup (2, \\infty)", "(-\\infty,1)\\cup(2,\\infty)"),
    # tuples, ordered lists, matrices
    ("(1, 2, 3)", "(1,2,3)"),
    ("[3, 1, 2]", "[3, 1, 2]"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "Matrix([[1,2],[3,4]])"),
    ("\\begin{bmatrix}1\\\\2\\end{bmatrix}", "Matrix([[1],[2]])"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    # membership, infinity written `oo` inside LaTeX
    ("x \\in [-2,7]", "x \\in [-2,7]"),
    ("x \\in [-2,7]", "[-2, 7]"),
    ("x \\in [-2,7]", "-2 \\le x \\le 7"),
    ("x \\in \\{1, 2\\}", "\\{2, 1\\}"),
    ("\\left(-oo, \\frac{1}{2}\\right]", "(-\\infty, \\frac{1}{2}]"),
    ("x \\in (-oo, 0) \\cup (1, \\infty)", "(-\\infty, 0) \\cup (1, oo)"),
    # identities that need exact arithmetic or a symbolic proof
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}"),
    ("\\sin(2x)", "2\\sin x \\cos x"),
    ("\\sqrt{2}(x+1)", "\\sqrt{2}x+\\sqrt{2}"),
    ("(x+y)^3", "x^3 + 3x^2 y + 3x y^2 + y^3"),
    ("\\tan\\frac{\\pi}{12}", "2-\\sqrt{3}"),
    ("e^{i\\pi}", "-1"),
    # tolerances: only with a decimal literal
    ("1/3", "0.333333333333"),
    ("2.5", "5/2"),
]

NOT_EQUAL = [
    ("1/2004!", "1/2006!"),
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}"),
    ("10^{-20}", "2\\cdot 10^{-20}"),
    ("10^-20", "2*10^-20"),
    ("1e-20", "2e-20"),
    ("x^2-1=0", "x^2-4=0"),
    ("x^2 = 1", "x = 1"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("1/3", "0.333"),
    ("\\sqrt{2}", "1.414"),
    ("2", "-2"),
    ("\\pi", "3.14"),
    ("(x+1)^2", "x^2+1"),
    ("\\sqrt{x^2}", "x"),
    ("x", "y"),
    ("2x", "2y"),
    ("[1, 3)", "[1, 3]"),
    ("(1, 3]", "[1, 3]"),
    ("(1, 2)", "[1, 2]"),
    ("x > 2", "x \\ge 2"),
    ("\\{1, 2\\}", "{1, 2, 3}"),
    ("\\pm 2", "2"),
    ("2, -2", "2"),
    ("(1, 2, 3)", "(3, 2, 1)"),
    ("[1, 2, 3]", "[3, 2, 1]"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "Matrix([[1,2],[4,3]])"),
    ("Matrix([[1,2]])", "Matrix([[1],[2]])"),
    ("y = 2x+1", "y = 2x-1"),
    ("x = 2", "x = 3"),
    ("oo", "-oo"),
    ("3+4i", "3-4i"),
    ("1000", "1,000,001"),
    ("x + 10^{-20}", "x"),
    ("(x+1)^{1000000000}", "(x+2)^{1000000000}"),
    ("x \\in [-2, 7]", "x \\in (-2, 7)"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 2 & 3 & 4 \\end{pmatrix}"),
]

PARSE_ERRORS = [
    ("3", "3 +"),
    ("\\frac{1}{2}", "\\frac{1}{"),
    ("1", "\\boxed{2"),
    ("1", ""),
    ("1", "import os"),
    ("1", "__import__('os').system('true')"),
    ("1", "(lambda: 1)()"),
    ("1", "x.__class__"),
    ("1", "'abc'"),
    ("1", "a[0]"),
    ("1", "x" * 5000),
    ("1", "\x00\x01\x02"),
    ("1", "(((((((1"),
    ("1", "\\frac{1}{2} +"),
    ("3 *", "3"),
]


@pytest.fixture(scope="module")
def checker():
    with MathChecker(workers=2, timeout_s=3.0) as c:
        yield c


def test_table_sizes():
    assert len(EQUAL) + len(NOT_EQUAL) >= 60


def test_equal_pairs(checker):
    verdicts = checker.check_many(EQUAL)
    bad = [(p, v) for p, v in zip(EQUAL, verdicts, strict=True) if v.verdict != "equal"]
    assert not bad, bad


def test_equal_pairs_are_symmetric(checker):
    flipped = [(b, a) for a, b in EQUAL if "boxed{1} then" not in a and "The answer" not in a]
    verdicts = checker.check_many(flipped)
    bad = [(p, v) for p, v in zip(flipped, verdicts, strict=True) if v.verdict != "equal"]
    assert not bad, bad


def test_not_equal_pairs(checker):
    verdicts = checker.check_many(NOT_EQUAL)
    bad = [(p, v) for p, v in zip(NOT_EQUAL, verdicts, strict=True) if v.verdict != "not_equal"]
    assert not bad, bad


def test_parse_errors(checker):
    verdicts = checker.check_many(PARSE_ERRORS)
    bad = [(p, v) for p, v in zip(PARSE_ERRORS, verdicts, strict=True) if v.verdict != "parse_error"]
    assert not bad, bad
    assert all(v.reason for v in verdicts)


def test_math_verify_false_positives_are_not_equal(checker):
    """math-verify 0.9.0 calls these equal (or parses the malformed side silently)."""
    cases = {
        ("$\\frac{1}{2004!}$", "$\\frac{1}{2006!}$"): "not_equal",
        ("$10^{-20}$", "$2\\cdot 10^{-20}$"): "not_equal",
        ("$x^2-1=0$", "$x^2-4=0$"): "not_equal",
        ("\\boxed{x^2-1=0}", "\\boxed{x^2-4=0}"): "not_equal",
        ("3", "3 +"): "parse_error",
        ("$\\frac{1}{2}$", "$\\frac{1}{$"): "parse_error",
    }
    verdicts = checker.check_many(list(cases))
    assert [v.verdict for v in verdicts] == list(cases.values())


@pytest.mark.parametrize(
    ("gold", "restated"),
    [
        ("x^2", r"\int 2x\,dx"),
        ("2x", r"\frac{d}{dx} x^2"),
        ("1", r"\lim_{x \to 0} \frac{\sin x}{x}"),
        ("55", r"\sum_{k=1}^{10} k"),
        ("120", r"\prod_{k=1}^{5} k"),
    ],
)
def test_restated_problem_is_not_an_answer(checker, gold, restated):
    """latex2sympy would carry these operations out; an answer must be the closed form itself."""
    verdict = checker.check(gold, restated)
    assert verdict.verdict == "parse_error", verdict
    assert "closed form" in verdict.reason


def test_verdict_type_and_order(checker):
    pairs = [("1", "1"), ("1", "2"), ("1", "+"), ("2", "2")] * 5
    verdicts = checker.check_many(pairs)
    assert [v.verdict for v in verdicts] == ["equal", "not_equal", "parse_error", "equal"] * 5
    assert isinstance(verdicts[0], MathVerdict) and verdicts[0].equal and not verdicts[1].equal
    assert checker.check("x", "x").equal


def test_non_string_inputs_never_raise(checker):
    verdicts = checker.check_many([(None, "1"), ("1", 3), (b"\xff\xfe1", "1"), ("1",)])  # type: ignore[list-item]
    assert [v.verdict for v in verdicts] == ["parse_error"] * 4


def test_soft_timeout_on_huge_power():
    with MathChecker(workers=1, timeout_s=1.0) as c:
        verdicts = c.check_many([("10^(10^10)", "1"), ("2", "2")])
        assert verdicts[0].verdict == "timeout"
        assert verdicts[1].equal
        assert max(c.last_latencies) <= 1.0 + 0.25


def test_hard_timeout_kills_and_respawns_worker():
    """A worker that cannot answer (stopped, as if stuck in C code) is killed from outside."""
    with MathChecker(workers=1, timeout_s=1.0) as c:
        assert c.check("1", "1").equal
        old = c._procs[0].proc
        os.kill(old.pid, signal.SIGSTOP)
        verdicts = c.check_many([("1", "1"), ("2", "2")])
        assert verdicts[0].verdict == "timeout" and "hard limit" in verdicts[0].reason
        assert verdicts[1].equal
        assert old.poll() is not None and c._procs[0].proc.pid != old.pid


@pytest.mark.parametrize(
    "settings",
    [
        {"timeout_s": float("inf")},
        {"timeout_s": 1e308},
        {"timeout_s": 0},
        {"timeout_s": float("nan")},
        {"workers": 0},
        {"workers": -3},
        {"rel_tol": float("nan")},
        {"abs_tol": -1.0},
    ],
)
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError, match="must be"):
        MathChecker(**settings)


def test_workers_are_separate_processes(checker):
    checker.check("1", "1")
    assert all(p.proc.pid != os.getpid() and p.proc.poll() is None for p in checker._procs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60), st.text(alphabet="0123456789+-*/^()[]{}=,.xy\\fracsqt ", max_size=40))
def test_fuzz_never_raises(checker, junk, mathy):
    verdicts = checker.check_many([(junk, mathy), (mathy, junk), ("1", junk)])
    assert all(v.verdict in ("equal", "not_equal", "parse_error", "timeout") and v.reason for v in verdicts)


def test_compute_operations(checker):
    reqs = [
        ComputeRequest("solve", "x^2 - x - 2"),
        ComputeRequest("differentiate", "x*sin(x)"),
        ComputeRequest("integrate", "x*exp(x)"),
        ComputeRequest("limit", "sin(x)/x", params={"point": "0"}),
        ComputeRequest("limit", "1/x", params={"point": "oo"}),
        ComputeRequest("series_coefficient", "exp(x)", params={"point": "0", "order": "3"}),
        ComputeRequest("sum", "k^2", params={"lower": "1", "upper": "n", "index": "k"}),
        ComputeRequest("evaluate", "x^2 + 1", params={"x": "3"}),
        ComputeRequest("factor", "x^2 - 1"),
        ComputeRequest("expand", "(x+1)^3"),
        ComputeRequest("simplify", "\\sin^2 x + \\cos^2 x"),
        ComputeRequest("integrate", "x", params={"lower": "0", "upper": "2"}),
    ]
    results = checker.compute_many(reqs)
    assert all(r.status == "ok" for r in results), results
    expected = [
        "{-1, 2}",
        "x*cos(x) + sin(x)",
        "(x - 1)*exp(x)",
        "1",
        "0",
        "1/6",
        "n**3/3 + n**2/2 + n/6",
        "10",
        "(x - 1)*(x + 1)",
        "x**3 + 3*x**2 + 3*x + 1",
        "1",
        "2",
    ]
    assert [r.value for r in results] == expected
    assert results[7].size > 0
    # values parse back exactly and compare equal to themselves / to equivalent forms
    verdicts = checker.check_many([(r.value, r.value) for r in results] + [(results[1].value, "sin(x)+x*cos(x)")])
    assert all(v.equal for v in verdicts), verdicts


def test_compute_errors(checker):
    results = checker.compute_many(
        [
            ComputeRequest("frobnicate", "x"),
            ComputeRequest("evaluate", "1 +"),
            ComputeRequest("integrate", "exp(x^2)*sin(x)^3/log(x)"),
            ComputeRequest("limit", "x"),
            ComputeRequest("solve", "sin(x)"),
        ]
    )
    assert [r.status for r in results][:2] == ["error", "parse_error"]
    assert results[2].status in ("error", "timeout")
    assert results[3].status == "error" and "point" in results[3].reason
    assert results[4].status == "error"


def test_compute_piecewise_round_trip(checker):
    res = checker.compute_many([ComputeRequest("sum", "r^k", params={"lower": "0", "upper": "n", "index": "k"})])[0]
    assert res.status == "ok" and "Piecewise" in res.value
    assert checker.check(res.value, res.value).equal


# ------------------------------------------------------------------ numeric false positives (issue 12 §4)


def _old_probe_points() -> list[tuple[int, int]]:
    """The 6 fixed points the checker used to probe, (a, b) for a/997 + b/991 i (seed 20240611)."""
    rng = random.Random(20240611)
    return [(rng.randint(-2000, 2000), rng.randint(1, 2000)) for _ in range(6)]


def _vanishing_at_old_points(real: bool) -> str:
    """prod(x - p_i) over the old points; `real` pairs each with its conjugate (rational coefficients)."""
    if real:
        return "*".join(f"(x^2 - 2*({a}/997)*x + ({a}/997)^2 + ({b}/991)^2)" for a, b in _old_probe_points())
    return "*".join(f"(x - ({a}/997 + {b}/991*I))" for a, b in _old_probe_points())


TINY_OR_HIDDEN_TERMS = [
    ("x", "x + 10^{-30}"),
    ("2x+1", "2x+1+10^{-40}x^3"),
    ("x^2", "x^2 + 10^{-60}xy"),
    ("\\frac{1}{x}", "\\frac{1}{x} + \\frac{10^{-50}}{x^2 + 1}"),
    ("x", "x + " + _vanishing_at_old_points(real=True)),
    ("x", "x + " + _vanishing_at_old_points(real=False)),
    ("sin(x)", "sin(x) + " + _vanishing_at_old_points(real=True)),
    ("sin(x)", "sin(x) + sin(x) * " + _vanishing_at_old_points(real=False)),
    ("e^x", "e^x + 10^{-30}\\sin x"),
    ("\\sin^2 x + \\cos^2 x", "1 + 10^{-30}\\cos x"),
    ("\\sqrt{x^2 + 1}", "\\sqrt{x^2 + 1} + 10^{-35}\\sqrt{x}"),
    ("\\pi", "\\pi + 10^{-30}\\sqrt{2}"),
    ("\\ln 2", "\\ln 2 + 10^{-45}\\pi"),
    ("e^{\\pi\\sqrt{163}}", "640320^3 + 744"),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}} + 10^{-200}"),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}} + 10^{-200}\\pi"),
]


def test_tiny_or_point_vanishing_terms_are_not_equal(checker):
    """Each pair fooled the old fixed-point, 25-digit probe ("numerically equal at 6 random complex points")."""
    pairs = TINY_OR_HIDDEN_TERMS + [(b, a) for a, b in TINY_OR_HIDDEN_TERMS]
    verdicts = checker.check_many(pairs)
    bad = [(p, v) for p, v in zip(pairs, verdicts, strict=True) if v.verdict != "not_equal"]
    assert not bad, bad


def test_equal_verdicts_say_how_equality_was_decided(checker):
    proven = {
        ("(x+1)^2", "x^2+2x+1"): "exact arithmetic",
        ("\\frac{x^2-1}{x-1}", "x+1"): "exact arithmetic",
        ("\\sqrt{2}(x+1)", "\\sqrt{2}x+\\sqrt{2}"): "expands to 0",
        ("\\sin^2 x + \\cos^2 x", "1"): "simplifies to 0",
        ("\\ln(e^x)", "x"): "not proven: difference is 0 to 400 digits",
    }
    verdicts = checker.check_many(list(proven))
    assert all(v.equal and how in v.reason for v, how in zip(verdicts, proven.values(), strict=True)), verdicts


def test_probe_points_are_fresh_per_check(checker):
    """The counterexample point changes from check to check: nobody can aim a term at it."""
    reasons = {checker.check("\\sqrt{x^2}", "x").reason for _ in range(3)}
    assert len(reasons) == 3 and all(re.search(r"differs at x=", r) for r in reasons), reasons


# ------------------------------------------------------------------ differential test over MATH answer shapes

MATH_GOLD_SHAPES = [
    # integers, separators, negatives, decimals, scientific notation, money
    "5",
    "-7",
    "0",
    "1{,}000",
    "10,000",
    "1\\,000",
    "2.5",
    "-0.25",
    "6.02 \\times 10^{23}",
    "1.5 \\times 10^{-3}",
    "\\$18.90",
    "\\$1,000",
    # fractions, radicals, pi, e
    "\\frac{3}{4}",
    "-\\frac{1}{2}",
    "\\dfrac{7}{2}",
    "\\tfrac{1}{3}",
    "3\\frac{1}{2}",
    "\\frac{\\sqrt{3}}{2}",
    "2\\sqrt{3}",
    "\\sqrt[3]{2}",
    "4 + 2\\sqrt{2}",
    "\\frac{1 + \\sqrt{5}}{2}",
    "3\\pi",
    "\\frac{5\\pi}{6}",
    "e^{2}",
    "2^{10}",
    "10^{-20}",
    "\\binom{5}{2}",
    "5!",
    "\\log_2 3",
    # degrees, percentages, units, text
    "30^\\circ",
    "45^{\\circ}",
    "25\\%",
    "12.5\\%",
    "5\\text{ cm}",
    "\\text{Monday}",
    "\\text{(C)}",
    "\\textbf{(A)}",
    # expressions and equations
    "x^2 + 2x + 1",
    "\\frac{x+1}{x-1}",
    "(x - 1)(x + 2)",
    "3x^2 - 5x + 2",
    "\\sin x",
    "\\cos^2 x",
    "y = 2x + 3",
    "x = 5",
    "x^2 + y^2 = 25",
    "y = -\\frac{1}{2}x + 4",
    # intervals, unions, inequalities, membership
    "[-2, 7]",
    "(-\\infty, 3)",
    "(-\\infty, -1) \\cup (2, \\infty)",
    "[0, 1) \\cup (1, 2]",
    "(3, \\infty)",
    "x \\in [-2,7]",
    "x \\in (-\\infty, 0]",
    "x < 3",
    "-2 \\le x \\le 7",
    # tuples, matrices, sets, several answers, complex numbers
    "(1, 2)",
    "(3, -1, 2)",
    "\\left( 2, \\frac{\\pi}{3} \\right)",
    "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
    "\\begin{pmatrix} -1 \\\\ 2 \\end{pmatrix}",
    "\\begin{bmatrix} 1 & 0 \\\\ 0 & 1 \\end{bmatrix}",
    "\\begin{pmatrix} \\frac{1}{2} & 0 \\\\ 0 & 3 \\end{pmatrix}",
    "\\{1, 2, 3\\}",
    "\\{-1, \\frac{1}{2}\\}",
    "2, -3",
    "\\pm 3",
    "1 \\pm \\sqrt{2}",
    "3 + 4i",
    "\\infty",
    "-\\infty",
    "\\emptyset",
    "\\boxed{7}",
    "\\left|x - 1\\right|",
    "\\frac{9\\pi}{2}",
    "(-\\infty, \\infty)",
    "\\sqrt{2}/2",
    "x^{2}",
    "\\text{no solution}",
]

_TOKEN = re.compile(r"\\(?:text|textbf|mbox|mathrm|begin|end)\{[^{}]*\}|\{,\}|\\[A-Za-z]+|\\.|\d+(?:\.\d+)?|\S")
_OPENERS, _CLOSERS = {"(": ")", "[": "]", "\\{": "\\}"}, {")", "]", "\\}"}


def _spaced(text: str) -> str:
    """A space between every token (commands, numbers, `\\text{...}` kept whole)."""
    return " ".join(_TOKEN.findall(text))


def _compact(text: str) -> str:
    """No spaces, except where two tokens would merge: a command name and a letter (`\\sin x`), two numbers."""
    tokens = _TOKEN.findall(text)
    out = tokens[:1]
    for prev, tok in itertools.pairwise(tokens):
        merge = (re.fullmatch(r"\\[A-Za-z]+", prev) and tok[0].isalnum()) or (prev[-1] + tok[0]).isdigit()
        out.append((" " if merge else "") + tok)
    return "".join(out)


def _sized(text: str, left: str, right: str) -> str:
    """Every bracket pair (an interval may pair `[` with `)`) gets `left`/`right`; `\\sqrt[n]` is left alone."""
    matches = list(_TOKEN.finditer(text))
    inserts: dict[int, str] = {}
    stack: list[int] = []
    for i, m in enumerate(matches):
        if m.group() in _OPENERS and not (m.group() == "[" and i and matches[i - 1].group() == "\\sqrt"):
            stack.append(m.start())
        elif m.group() in _CLOSERS and stack:
            inserts[stack.pop()] = left
            inserts[m.start()] = right
    return "".join(inserts.get(i, "") + ch for i, ch in enumerate(text))


def _variants(gold: str) -> list[str]:
    """Whitespace, `\\left`/`\\right` (and `\\bigl`/`\\Bigr`) variants of a gold answer, with fraction
    spellings and the usual wrappers."""
    forms = [gold, _spaced(gold), _compact(gold)]
    forms += [_sized(f, "\\left", "\\right") for f in forms]
    forms += [_sized(gold, "\\bigl", "\\bigr"), _sized(_spaced(gold), "\\Bigl ", "\\Bigr ")]
    forms += [re.sub(r"\\[dt]?frac", template, gold) for template in (r"\\dfrac", r"\\tfrac", r"\\frac")]
    forms += [f"${gold}$", f"\\({gold}\\)", f"The answer is $\\boxed{{{_spaced(gold)}}}$."]
    return list(dict.fromkeys(forms))


def _mutated(gold: str) -> str:
    """The gold answer with its first digit changed: a different answer for every shape that has a digit."""
    return re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), gold, count=1)


def test_variant_generators():
    assert _spaced("\\frac{1}{2}") == "\\frac { 1 } { 2 }"
    assert _compact("\\sin x + 1") == "\\sin x+1"
    assert _sized("[0, 1) \\cup \\{2\\}", "\\left", "\\right") == "\\left[0, 1\\right) \\cup \\left\\{2\\right\\}"
    assert _sized("\\sqrt[3]{2}", "\\left", "\\right") == "\\sqrt[3]{2}"
    assert len(_variants("(1, 2)")) >= 10


def test_math_answer_shapes_equal_their_variants(checker):
    """Differential test: every gold equals itself (both ways) and all its variants, and not its mutation."""
    pairs, expected = [], []
    for gold in MATH_GOLD_SHAPES:
        pairs += [(gold, v) for v in _variants(gold)] + [(_spaced(gold), gold)]
        expected += ["equal"] * (len(pairs) - len(expected))
        if re.search(r"\d", gold):
            pairs.append((gold, _mutated(gold)))
            expected.append("not_equal")
    verdicts = checker.check_many(pairs)
    bad = [(p, v) for p, v, e in zip(pairs, verdicts, expected, strict=True) if v.verdict != e]
    assert not bad, bad
