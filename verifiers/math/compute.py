"""SymPy operations behind `MathChecker.compute_many` (runs inside the worker processes)."""

from __future__ import annotations

from collections.abc import Mapping

import sympy

from .parsing import ParseError, parse_answer
from .types import OPERATIONS


class ComputeError(ValueError):
    """The operation is not applicable or has no closed form."""


def _expr(text: str) -> sympy.Expr:
    value = parse_answer(text).value
    if isinstance(value, sympy.Equality) and isinstance(value.lhs, sympy.Expr):
        return value.lhs - value.rhs
    if not isinstance(value, sympy.Expr):
        raise ParseError(f"expected an expression, got {type(value).__name__}")
    return value


def _symbol(name: str) -> sympy.Symbol:
    value = parse_answer(name).value
    if not isinstance(value, sympy.Symbol):
        raise ParseError(f"not a variable name: {name!r}")
    return value


def _param(params: Mapping[str, str], key: str, default: str | None = None) -> str:
    if key in params:
        return str(params[key])
    if default is None:
        raise ComputeError(f"missing parameter {key!r}")
    return default


def input_size(expression: str) -> int:
    """Node count of the parsed input (0 when it does not parse)."""
    try:
        value = parse_answer(expression).value
    except (ParseError, ValueError, TypeError):
        return 0
    return sum(1 for _ in sympy.preorder_traversal(value)) if isinstance(value, sympy.Basic) else 0


def run_operation(operation: str, expression: str, variable: str, params: Mapping[str, str]) -> str:
    """The result of one operation as plain text that `parse_answer` reads back to the same value."""
    if operation not in OPERATIONS:
        raise ComputeError(f"unknown operation {operation!r}")
    if operation == "solve":
        value = parse_answer(expression).value
        var = _symbol(variable)
        if isinstance(value, sympy.Equality):
            value = value.lhs - value.rhs
        if not isinstance(value, sympy.Expr):
            raise ParseError("solve needs an expression or an equation")
        domain = sympy.S.Reals if _param(params, "domain", "complex") == "real" else sympy.S.Complexes
        result = sympy.solveset(value, var, domain=domain)
        if not isinstance(result, sympy.FiniteSet) and result != sympy.S.EmptySet:
            raise ComputeError("solution set is not a finite set")
        return _text(result)
    expr = _expr(expression)
    if operation == "evaluate":
        subs = {_symbol(k): _expr(v) for k, v in params.items()}
        result = expr.xreplace(subs).doit() if subs else expr.doit()
        if result.has(sympy.nan, sympy.zoo):
            raise ComputeError("undefined at that point")
        return _text(result)
    var = _symbol(variable)
    if operation == "simplify":
        return _text(sympy.simplify(expr))
    if operation == "expand":
        return _text(sympy.expand(expr))
    if operation == "factor":
        return _text(sympy.factor(expr))
    if operation == "differentiate":
        order = int(_param(params, "order", "1"))
        if not 1 <= order <= 20:
            raise ComputeError("order must be 1..20")
        return _text(sympy.diff(expr, var, order))
    if operation == "integrate":
        if "lower" in params or "upper" in params:
            bounds = (var, _expr(_param(params, "lower")), _expr(_param(params, "upper")))
            return _text(sympy.integrate(expr, bounds))
        return _text(sympy.integrate(expr, var))
    if operation == "limit":
        point = _expr(_param(params, "point"))
        return _text(sympy.limit(expr, var, point, _param(params, "dir", "+-")))
    if operation == "series_coefficient":
        point = _expr(_param(params, "point", "0"))
        order = int(_param(params, "order"))
        if not 0 <= order <= 30 or point.is_infinite:
            raise ComputeError("order must be 0..30 and the point finite")
        shifted = expr.xreplace({var: var + point})
        series = sympy.series(shifted, var, 0, order + 1).removeO()
        return _text(sympy.expand(series).coeff(var, order))
    # sum
    index = _symbol(_param(params, "index", variable))
    lower, upper = _expr(_param(params, "lower")), _expr(_param(params, "upper"))
    return _text(sympy.summation(expr, (index, lower, upper)))


_UNFINISHED = (sympy.Integral, sympy.Derivative, sympy.Limit, sympy.Sum, sympy.Product, sympy.Order)


def _text(value: sympy.Basic) -> str:
    if value.has(*_UNFINISHED) or value.has(sympy.nan):
        raise ComputeError("no closed form (result still holds an unevaluated operation)")
    if value.atoms(sympy.Lambda, sympy.Dummy):
        raise ComputeError("result holds a lambda or dummy symbol")
    return str(value)
