"""Equivalence of two parsed answers (runs inside the checker's worker processes)."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import mpmath
import sympy
from sympy.core.evalf import PrecisionExhausted

from .parsing import AnswerList, OrderedList, Parsed

PROBE_POINTS = 4  # fresh random complex points per identity test, one per quadrant
MIN_DEFINED_POINTS = 3  # points with a value needed before numbers may say `equal`
EXACT_POINTS = 2  # fresh random rational points for rational functions (exact arithmetic)
POINT_DENOMINATOR = 2**61 - 1
MAX_EXACT_EXPONENT = 1000  # larger integer powers go to the numeric probes (exact values would be huge)
PROBE_DIGITS = 40  # digits of each side's value at a probe point
PROBE_REL_DIFF = mpmath.mpf("1e-25")  # a larger relative difference of 40-digit values is certainly real
CONFIRM_DIGITS = 400  # working-precision cap when only numbers can decide `equal`
MAX_SET = 64

mpmath.mp.dps = 40
_RNG = random.Random()  # seeded from os.urandom: points are fresh per check and unknown to the answer's author
_QUADRANTS = ((1, 1), (-1, 1), (-1, -1), (1, -1))


class SoftTimeout(BaseException):
    """The in-worker soft deadline passed (BaseException: SymPy's `except Exception` must not eat it)."""


def _on_alarm(signum: int, frame: object) -> None:
    raise SoftTimeout


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """SIGALRM-based budget; nests (an inner budget never extends an outer one). Main thread only."""
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    outer_left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    start = time.monotonic()
    if outer_left:
        seconds = min(seconds, outer_left)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-4))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if outer_left:
            left = outer_left - (time.monotonic() - start)
            if left <= 0:
                raise SoftTimeout
            signal.setitimer(signal.ITIMER_REAL, left)


class Comparator:
    """Compares two answers; `inexact` (a decimal literal on either side) switches on the tolerances."""

    def __init__(self, inexact: bool, rel_tol: float, abs_tol: float, simplify_s: float) -> None:
        self.inexact = inexact
        self.rel_tol = mpmath.mpf(rel_tol)
        self.abs_tol = mpmath.mpf(abs_tol)
        self.simplify_s = simplify_s

    # ------------------------------------------------------------------ dispatch
    def eq(self, a: object, b: object) -> tuple[bool, str]:
        a, b = _unwrap_assignment(a, b), _unwrap_assignment(b, a)
        a, b = _ineq_as_set(a, b), _ineq_as_set(b, a)
        if isinstance(a, list) and not isinstance(a, OrderedList):
            a = OrderedList(a)
        if isinstance(b, list) and not isinstance(b, OrderedList):
            b = OrderedList(b)
        if _is_setlike(a) and _is_setlike(b):
            return self._sets(_elements(a), _elements(b))
        if isinstance(a, AnswerList) or isinstance(b, AnswerList):
            return False, "one side has several answers, the other has one"
        a, b = _as_interval(a, b), _as_interval(b, a)
        if isinstance(a, sympy.Interval) and isinstance(b, sympy.Interval):
            return self._interval(a, b)
        if isinstance(a, sympy.Union) and isinstance(b, sympy.Union):
            return self._sets(list(a.args), list(b.args))
        if (isinstance(a, OrderedList) and isinstance(b, OrderedList)) or (
            isinstance(a, sympy.Tuple) and isinstance(b, sympy.Tuple)
        ):
            return self._sequence(list(a), list(b))
        if isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase):
            if a.shape != b.shape:
                return False, f"matrix shapes differ {a.shape} vs {b.shape}"
            return self._sequence(list(a), list(b))
        if isinstance(a, sympy.Equality) and isinstance(b, sympy.Equality):
            return self._equations(a, b)
        if isinstance(a, sympy.Rel) and isinstance(b, sympy.Rel):
            return self._relations(a, b)
        if isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr):
            return self._scalars(a, b)
        if isinstance(a, sympy.Basic) and isinstance(b, sympy.Basic) and type(a) is type(b):
            return (True, "identical") if a == b else (False, f"different {type(a).__name__} values")
        return False, f"different kinds of answer ({_kind(a)} vs {_kind(b)})"

    # ------------------------------------------------------------------ containers
    def _sets(self, xs: list[object], ys: list[object]) -> tuple[bool, str]:
        xs, ys = _dedup(xs), _dedup(ys)
        if len(xs) != len(ys):
            return False, f"{len(xs)} vs {len(ys)} distinct elements"
        if len(xs) > MAX_SET:
            return False, "set too large to compare"
        unused = list(range(len(ys)))
        for x in xs:
            match = next((j for j in unused if self.eq(x, ys[j])[0]), None)
            if match is None:
                return False, f"no match for element {_short(x)}"
            unused.remove(match)
        return True, f"same {len(xs)} elements (unordered)"

    def _sequence(self, xs: list[object], ys: list[object]) -> tuple[bool, str]:
        if len(xs) != len(ys):
            return False, f"lengths differ ({len(xs)} vs {len(ys)})"
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            ok, why = self.eq(x, y)
            if not ok:
                return False, f"entry {i} differs: {why}"
        return True, f"all {len(xs)} entries equal (ordered)"

    def _interval(self, a: sympy.Interval, b: sympy.Interval) -> tuple[bool, str]:
        if (a.left_open, a.right_open) != (b.left_open, b.right_open):
            return False, "interval ends differ in open/closed"
        for x, y, side in ((a.start, b.start, "left"), (a.end, b.end, "right")):
            ok, why = self.eq(x, y)
            if not ok:
                return False, f"{side} ends differ: {why}"
        return True, "same interval"

    # ------------------------------------------------------------------ relations
    def _equations(self, a: sympy.Equality, b: sympy.Equality) -> tuple[bool, str]:
        f1, f2 = a.lhs - a.rhs, b.lhs - b.rhs
        if not isinstance(f1, sympy.Expr) or not isinstance(f2, sympy.Expr):
            return (True, "identical") if a == b else (False, "different equations")
        syms = f1.free_symbols | f2.free_symbols
        if f1.free_symbols != f2.free_symbols:
            return False, "equations involve different variables"
        if not syms or f1 == 0 or f2 == 0:
            return (True, "identical") if a == b else (False, "degenerate equations differ")
        ratio = sympy.cancel(f1 / f2)
        if ratio.is_number and ratio != 0 and ratio.is_finite:
            return True, "same equation up to a constant factor"
        if len(syms) == 1:
            (v,) = syms
            s1, s2 = sympy.solveset(f1, v), sympy.solveset(f2, v)
            if isinstance(s1, sympy.FiniteSet) and isinstance(s2, sympy.FiniteSet):
                ok, why = self._sets(list(s1), list(s2))
                return ok, f"solution sets: {why}"
            if s1 == s2:
                return True, "same solution set"
        for v in sorted(syms, key=str):
            sol1, sol2 = sympy.solve(f1, v), sympy.solve(f2, v)
            if len(sol1) == 1 and len(sol2) == 1:
                ok, why = self._scalars(sol1[0], sol2[0])
                return ok, f"solved for {v}: {why}"
        return False, "could not show the solution sets agree"

    def _relations(self, a: sympy.Rel, b: sympy.Rel) -> tuple[bool, str]:
        na, nb = _normal_rel(a), _normal_rel(b)
        if na is None or nb is None or na[1] != nb[1]:
            return False, "different relations"
        ok, why = self._scalars(na[0], nb[0])
        return ok, f"relation sides: {why}"

    # ------------------------------------------------------------------ scalars
    def _scalars(self, a: sympy.Expr, b: sympy.Expr) -> tuple[bool, str]:
        if a == b:
            return True, "identical"
        bad = (sympy.nan, sympy.zoo)
        if a.has(*bad) or b.has(*bad):
            return False, "undefined value (nan/zoo)"
        if not a.free_symbols and not b.free_symbols and (a.is_infinite or b.is_infinite):
            return False, "different infinities" if a.is_infinite and b.is_infinite else "one side is infinite"
        return self._within_tolerance(a, b) if self.inexact else self._identity(a, b)

    # ------------------------------------------------------------------ exact answers: a - b == 0?
    def _identity(self, a: sympy.Expr, b: sympy.Expr) -> tuple[bool, str]:
        """Whether `a - b` is identically 0: exact arithmetic where it can decide, else see _analytic_identity."""
        d = a - b
        if d == 0:
            return True, "difference is exactly 0"
        if d.is_Rational:
            return False, "different exact rationals" if a.is_Rational else "exact difference is nonzero"
        syms = sorted(d.free_symbols, key=str)
        if syms and _is_rational_over_q(d):
            return _rational_identity(d, syms)
        return self._analytic_identity(a, b, syms)

    def _analytic_identity(self, a: sympy.Expr, b: sympy.Expr, syms: list[sympy.Symbol]) -> tuple[bool, str]:
        """40-digit values at fresh random complex points refute; then a symbolic proof; only if that fails,
        `a - b` must be indistinguishable from 0 with CONFIRM_DIGITS digits of precision at every point."""
        counterexample, defined = _probe(a, b, syms, _agree_to_probe_precision)
        if counterexample:
            return False, counterexample
        d = a - b
        proof = self._proof(d)
        if proof:
            return proof
        if len(defined) < _needed_points(syms):
            return False, "could not show equality"
        tiny = _tiny_difference(d, defined)
        if tiny:
            return False, tiny
        where = f" at {len(defined)} random complex points" if syms else ""
        return True, f"not proven: difference is 0 to {CONFIRM_DIGITS} digits{where}"

    def _proof(self, d: sympy.Expr) -> tuple[bool, str] | None:
        """(True, how) when `d` expands, cancels or simplifies (within the simplify budget) to 0, else None.
        Running out of the simplify budget gives None; running out of the task's budget raises SoftTimeout."""
        if sympy.expand(d) == 0 or sympy.cancel(d) == 0:
            return True, "difference expands to 0"
        task_budget = signal.getitimer(signal.ITIMER_REAL)[0] > 0
        try:
            with time_budget(self.simplify_s):
                if sympy.simplify(d) == 0:
                    return True, "difference simplifies to 0"
        except SoftTimeout:
            if task_budget and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
                raise
        return None

    # ------------------------------------------------------------------ inexact answers: tolerances
    def _within_tolerance(self, a: sympy.Expr, b: sympy.Expr) -> tuple[bool, str]:
        """|a - b| <= max(rel_tol * max(|a|, |b|), abs_tol) at the value, or at fresh random points."""
        syms = sorted(a.free_symbols | b.free_symbols, key=str)
        counterexample, defined = _probe(a, b, syms, self._within)
        if counterexample:
            return False, f"{counterexample}: beyond tolerance"
        if len(defined) < _needed_points(syms):
            return False, "could not evaluate numerically"
        where = f" at {len(defined)} random complex points" if syms else ""
        return True, f"equal within tolerance{where}"

    def _within(self, va: mpmath.mpc, vb: mpmath.mpc) -> bool:
        return bool(abs(va - vb) <= max(self.rel_tol * max(abs(va), abs(vb)), self.abs_tol))


def compare(gold: Parsed, pred: Parsed, rel_tol: float, abs_tol: float, simplify_s: float) -> tuple[bool, str]:
    """(equal?, reason) for two parsed answers."""
    return Comparator(gold.inexact or pred.inexact, rel_tol, abs_tol, simplify_s).eq(gold.value, pred.value)


def _num(expr: sympy.Expr, subs: dict) -> mpmath.mpc | None:
    try:
        val = expr.evalf(PROBE_DIGITS, subs=subs) if subs else expr.evalf(PROBE_DIGITS)
        re_, im_ = val.as_real_imag()
        if not (re_.is_Number and im_.is_Number) or re_.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            return None
        return mpmath.mpc(re_._to_mpmath(140), im_._to_mpmath(140))
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, ArithmeticError):
        return None


def _probe(a: sympy.Expr, b: sympy.Expr, syms: list[sympy.Symbol], close: Callable) -> tuple[str, list[dict]]:
    """Values of `a` and `b` at PROBE_POINTS fresh random points (without symbols: their values): a reason
    naming the first point where `close(va, vb)` fails ("" if none), and the points where both have a value."""
    defined = []
    for point in [_random_point(syms, k) for k in range(PROBE_POINTS)] if syms else [{}]:
        va, vb = _num(a, point), _num(b, point)
        if va is None or vb is None:
            continue
        if not close(va, vb):
            return f"differs{_where(point)} ({mpmath.nstr(va, 8)} vs {mpmath.nstr(vb, 8)})", defined
        defined.append(point)
    return "", defined


def _agree_to_probe_precision(va: mpmath.mpc, vb: mpmath.mpc) -> bool:
    return bool(abs(va - vb) <= PROBE_REL_DIFF * max(abs(va), abs(vb)))


def _needed_points(syms: list[sympy.Symbol]) -> int:
    """Points with a value that numbers need before they may say `equal`."""
    return MIN_DEFINED_POINTS if syms else 1


def _random_rational(positive: bool = False) -> sympy.Rational:
    """One of 2**63 values n / (2**61 - 1) in (-2, 2) (in (0, 2) when `positive`), drawn fresh."""
    n = _RNG.randrange(1, 2**62) if positive else _RNG.randrange(-(2**62) + 1, 2**62)
    return sympy.Rational(n, POINT_DENOMINATOR)


def _random_point(syms: list[sympy.Symbol], k: int) -> dict[sympy.Symbol, sympy.Expr]:
    """Exact complex rationals, symbol j's in quadrant (k + j) % 4: the points of one check lie on both sides
    of every axis, so functions equal on a half-plane only (`sqrt(x^2)` vs `x`) always differ somewhere."""
    point = {}
    for j, s in enumerate(syms):
        re_sign, im_sign = _QUADRANTS[(k + j) % 4]
        point[s] = re_sign * _random_rational(positive=True) + im_sign * sympy.I * _random_rational(positive=True)
    return point


def _is_rational_over_q(expr: sympy.Expr) -> bool:
    """A rational function with rational coefficients: only +, *, integer powers (up to MAX_EXACT_EXPONENT, so
    exact values stay small), symbols and rationals."""
    return all(
        isinstance(node, sympy.Add | sympy.Mul | sympy.Symbol | sympy.Rational)
        or (isinstance(node, sympy.Pow) and node.exp.is_Integer and abs(node.exp) <= MAX_EXACT_EXPONENT)
        for node in sympy.preorder_traversal(expr)
    )


def _rational_identity(d: sympy.Expr, syms: list[sympy.Symbol]) -> tuple[bool, str]:
    """A rational function with rational coefficients, evaluated exactly at fresh random rational points: a
    nonzero numerator of degree D vanishes at one with probability <= D / 2**63 (Schwartz-Zippel)."""
    zeros = 0
    for _ in range(4 * EXACT_POINTS):
        point = {s: _random_rational() for s in syms}
        value = d.xreplace(point)
        if not value.is_Rational:  # a pole at this point (zoo/nan): draw another
            continue
        if value != 0:
            return False, f"differs{_where(point)} (exact)"
        zeros += 1
        if zeros == EXACT_POINTS:
            return True, f"difference is 0 at {zeros} random rational points (exact arithmetic)"
    return False, "could not evaluate the difference at random points"


def _tiny_difference(d: sympy.Expr, points: list[dict]) -> str:
    """A reason naming the first point where `d` is not 0 to CONFIRM_DIGITS digits ("" if none)."""
    for point in points:
        outcome = _zero_test(d, point, CONFIRM_DIGITS)
        if outcome == "nonzero":
            return f"differs{_where(point)} (by less than {mpmath.nstr(PROBE_REL_DIFF, 1)} relative)"
        if outcome == "undefined":
            return f"could not show equality (no value to {CONFIRM_DIGITS} digits{_where(point)})"
    return ""


def _zero_test(d: sympy.Expr, point: dict, digits: int) -> str:
    """'nonzero' (digits found), 'zero' (indistinguishable from 0 with `digits` of working precision) or
    'undefined' (a pole, nan, or no numeric value at this point)."""
    subs = {"subs": point} if point else {}
    try:
        value = d.evalf(15, maxn=digits, strict=True, **subs)
    except PrecisionExhausted:  # SymPy's error tracking found no nonzero digit with `digits` of precision
        return "zero"
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, ArithmeticError):
        return "undefined"
    parts = value.as_real_imag()
    if not all(p.is_Number and p.is_finite for p in parts):
        return "undefined"
    return "nonzero" if any(p != 0 and getattr(p, "_prec", 2) > 1 for p in parts) else "zero"


def _where(point: dict) -> str:
    if not point:
        return ""
    values = [(s, _num(v, {}) or mpmath.mpc(0)) for s, v in point.items()]
    return " at " + ", ".join(f"{s}={mpmath.nstr(v.real if v.imag == 0 else v, 6)}" for s, v in values)


def _unwrap_assignment(x: object, other: object) -> object:
    """`x = 2` compared with a non-equation means its right side, elementwise inside answer lists."""
    if _has_relation(other):
        return x
    if isinstance(x, AnswerList):
        return AnswerList(_unwrap_assignment(e, other) for e in x)
    if (
        isinstance(x, sympy.Equality)
        and isinstance(x.lhs, sympy.Symbol)
        and isinstance(x.rhs, sympy.Expr)
        and x.lhs not in x.rhs.free_symbols
    ):
        return x.rhs
    return x


def _has_relation(x: object) -> bool:
    if isinstance(x, AnswerList):
        return any(_has_relation(e) for e in x)
    return isinstance(x, sympy.Rel | sympy.And | sympy.Or)


def _ineq_as_set(x: object, other: object) -> object:
    """Univariate inequalities become sets when the other side is a set or an inequality too."""
    if not isinstance(x, sympy.And | sympy.Or | sympy.Rel) or isinstance(x, sympy.Equality | sympy.Unequality):
        return x
    if not isinstance(other, sympy.Set | sympy.Tuple | OrderedList | sympy.And | sympy.Or | sympy.Rel):
        return x
    if len(x.free_symbols) != 1:
        return x
    try:
        return x.as_set()
    except (NotImplementedError, TypeError, ValueError):
        return x


def _as_interval(x: object, other: object) -> object:
    """`(a, b)` next to an interval is an open interval; a plain `[a, b]` a closed one."""
    if not isinstance(other, sympy.Interval):
        return x
    if isinstance(x, sympy.Tuple) and len(x) == 2:
        return sympy.Interval.open(*x) if x[0] != x[1] else x
    if isinstance(x, OrderedList) and len(x) == 2 and all(isinstance(e, sympy.Expr) for e in x):
        return sympy.Interval(*x)
    return x


def _is_setlike(x: object) -> bool:
    return isinstance(x, AnswerList | sympy.FiniteSet) or x == sympy.S.EmptySet


def _elements(x: object) -> list[object]:
    return list(x) if x != sympy.S.EmptySet else []


def _dedup(xs: list[object]) -> list[object]:
    out: list[object] = []
    for x in xs:
        if not any(x == y for y in out):
            out.append(x)
    return out


def _normal_rel(r: sympy.Rel) -> tuple[sympy.Expr, str] | None:
    if isinstance(r, sympy.StrictGreaterThan | sympy.GreaterThan):
        return r.lhs - r.rhs, r.rel_op
    if isinstance(r, sympy.StrictLessThan):
        return r.rhs - r.lhs, ">"
    if isinstance(r, sympy.LessThan):
        return r.rhs - r.lhs, ">="
    return None


def _kind(x: object) -> str:
    return "list" if isinstance(x, OrderedList) else type(x).__name__


def _short(x: object) -> str:
    s = str(x)
    return s if len(s) <= 40 else s[:37] + "..."
