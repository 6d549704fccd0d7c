"""MathChecker: table of equal/unequal pairs, math-verify false positives, timeouts, fuzzing."""

from __future__ import annotations

import os
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
