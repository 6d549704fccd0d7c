"""Equivalence of two parsed answers (runs inside the checker's worker processes)."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import mpmath
import sympy

from .parsing import AnswerList, OrderedList, Parsed

EXACT_REL_TOL = mpmath.mpf("1e-25")  # numeric probes when both answers are exact (evaluated at 40 digits)
PROBE_POINTS = 6
MAX_SET = 64
SIMPLIFY_SHARE = 0.5  # share of the remaining soft budget that simplify() may use

mpmath.mp.dps = 40


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
        if not a.free_symbols and not b.free_symbols:
            return self._numbers(a, b)
        return self._expressions(a, b)

    def _close(self, x: mpmath.mpc, y: mpmath.mpc) -> bool:
        diff, scale = abs(x - y), max(abs(x), abs(y))
        if self.inexact:
            return bool(diff <= max(self.rel_tol * scale, self.abs_tol))
        return bool(diff <= EXACT_REL_TOL * scale)

    def _numbers(self, a: sympy.Expr, b: sympy.Expr) -> tuple[bool, str]:
        if a.is_infinite or b.is_infinite:
            return False, "different infinities" if a.is_infinite and b.is_infinite else "one side is infinite"
        if not self.inexact:
            if a.is_Rational and b.is_Rational:
                return False, "different exact rationals"
            d = a - b
            if d == 0:
                return True, "difference is exactly 0"
            if d.is_Rational:
                return False, "exact difference is nonzero"
        va, vb = _num(a, {}), _num(b, {})
        if va is None or vb is None:
            return False, "could not evaluate numerically"
        if self._close(va, vb):
            return True, "equal within tolerance" if self.inexact else "equal to 25+ significant digits"
        if self.inexact:
            return False, f"differ beyond tolerance ({mpmath.nstr(va, 8)} vs {mpmath.nstr(vb, 8)})"
        return False, f"numerically different ({mpmath.nstr(va, 8)} vs {mpmath.nstr(vb, 8)})"

    def _expressions(self, a: sympy.Expr, b: sympy.Expr) -> tuple[bool, str]:
        d = a - b
        if d == 0:
            return True, "difference is exactly 0"
        syms = sorted(a.free_symbols | b.free_symbols, key=str)
        rng = random.Random(20240611)
        agree = 0
        for _ in range(PROBE_POINTS):
            point = {
                s: sympy.Rational(rng.randint(-2000, 2000), 997) + sympy.I * sympy.Rational(rng.randint(1, 2000), 991)
                for s in syms
            }
            va, vb = _num(a, point), _num(b, point)
            if va is None or vb is None:
                continue
            if not self._close(va, vb):
                where = ", ".join(f"{s}={mpmath.nstr(_num(v, {}) or 0, 4)}" for s, v in point.items())
                return False, f"values differ at {where}"
            agree += 1
        try:
            if sympy.expand(d) == 0 or sympy.cancel(d) == 0:
                return True, "difference expands to 0"
            with time_budget(self.simplify_s):
                if sympy.simplify(d) == 0:
                    return True, "difference simplifies to 0"
        except SoftTimeout:
            if agree < 3:
                raise
        if agree >= 3:
            return True, f"numerically equal at {agree} random complex points"
        return False, "could not show equality"


def compare(gold: Parsed, pred: Parsed, rel_tol: float, abs_tol: float, simplify_s: float) -> tuple[bool, str]:
    """(equal?, reason) for two parsed answers."""
    return Comparator(gold.inexact or pred.inexact, rel_tol, abs_tol, simplify_s).eq(gold.value, pred.value)


def _num(expr: sympy.Expr, subs: dict) -> mpmath.mpc | None:
    try:
        val = expr.evalf(40, subs=subs) if subs else expr.evalf(40)
        re_, im_ = val.as_real_imag()
        if not (re_.is_Number and im_.is_Number) or re_.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            return None
        return mpmath.mpc(re_._to_mpmath(140), im_._to_mpmath(140))
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, ArithmeticError):
        return None


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
