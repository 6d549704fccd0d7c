"""Plain Python values as literal text: bounded parsing, canonical printing, tolerant comparison.

This module is the only place that defines the value format crossing the sandbox boundary.
Accepted types are exactly: None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset,
range and the dict views dict_keys, dict_values, dict_items (never subclasses).  Non-finite floats print as
``float('nan')``/``float('inf')``/``float('-inf')`` so the text stays parseable; dicts and sets print with
entries sorted by their canonical text; ranges and dict views print as Python's repr does
(``range(0, 5)``, ``dict_items([('a', 1)])``), elements in iteration order.
"""

from __future__ import annotations

import ast
import math
from typing import Any

MAX_TEXT_CHARS = 200_000
MAX_DEPTH = 100
MAX_NODES = 200_000
# CPython refuses to convert ints longer than this to/from decimal text (sys.int_info.default_max_str_digits).
MAX_INT_DIGITS = 4300

_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_KEYS, _VALUES, _ITEMS = type({}.keys()), type({}.values()), type({}.items())
_VIEWS = {_KEYS: "dict_keys", _VALUES: "dict_values", _ITEMS: "dict_items"}
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class ValueTooLarge(ValueError):
    """The value's canonical text would exceed the size limit (maps to status ``output_limit``)."""


class UnsupportedValue(ValueError):
    """The value is not made only of exact builtin plain types, or is nested too deeply."""


# ----------------------------------------------------------------------------------------------- parsing


def parse_literal(text: str, *, max_chars: int = MAX_TEXT_CHARS) -> object:
    """Parse literal text (the `canonical` format or Python `repr` of plain values) without evaluating code.

    Raises ValueError with a readable reason on anything else, on text longer than `max_chars`, on
    nesting deeper than MAX_DEPTH or on more than MAX_NODES syntax nodes.
    """
    if not isinstance(text, str):
        raise ValueError(f"literal text must be str, not {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"literal text too long ({len(text)} > {max_chars} chars)")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ValueError(f"not a literal: {type(exc).__name__}: {exc}") from None
    budget = [MAX_NODES]
    return _build(tree.body, 0, budget)


def parse_arguments(text: str, *, max_chars: int = MAX_TEXT_CHARS) -> tuple[tuple[object, ...], dict[str, object]]:
    """Parse a call's argument list as CRUXEval/AZR store it, keyword arguments included.

    ``"[1, 2], 3"`` -> ``(([1, 2], 3), {})``; ``""`` -> ``((), {})``; ``"n = 5"`` -> ``((), {"n": 5})``.
    Every argument must be a plain literal; ``*``/``**`` unpacking is refused.
    """
    if not isinstance(text, str):
        raise ValueError(f"argument text must be str, not {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"argument text too long ({len(text)} > {max_chars} chars)")
    try:
        call = ast.parse(f"f({text}\n)", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ValueError(f"not an argument list: {type(exc).__name__}: {exc}") from None
    if not isinstance(call, ast.Call):
        raise ValueError("not a plain argument list")
    return literal_arguments(call)


def literal_arguments(call: ast.Call) -> tuple[tuple[object, ...], dict[str, object]]:
    """The values of a parsed call's arguments when every one is a plain literal; raises ValueError otherwise."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        raise ValueError("not a plain argument list")
    budget = [MAX_NODES]
    args = tuple(_build(a, 1, budget) for a in call.args)
    return args, {k.arg: _build(k.value, 1, budget) for k in call.keywords}  # type: ignore[misc]


def _number(node: ast.expr) -> int | float | complex | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, complex):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _number(node.operand)
        if inner is not None:
            return -inner if isinstance(node.op, ast.USub) else inner
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
    ):
        arg = node.args[0].value
        if isinstance(arg, str) and arg.strip().lower() in _NONFINITE:
            return _NONFINITE[arg.strip().lower()]
    return None


def _build(node: ast.expr, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"literal has more than {MAX_NODES} elements")
    if depth > MAX_DEPTH:
        raise ValueError(f"literal nested deeper than {MAX_DEPTH}")
    if isinstance(node, ast.Constant):
        if type(node.value) in _SCALARS:
            return node.value
        raise ValueError(f"unsupported constant {node.value!r}")
    number = _number(node)
    if number is not None:
        return number
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        left, right = _number(node.left), _number(node.right)
        if type(left) in (int, float) and type(right) is complex:
            return left + right if isinstance(node.op, ast.Add) else left - right
        raise ValueError("only complex literals like (1+2j) may use + or -")
    if isinstance(node, ast.List):
        return [_build(e, depth + 1, budget) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_build(e, depth + 1, budget) for e in node.elts)
    if isinstance(node, ast.Set):
        return _hashable_container(set, node.elts, depth, budget)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking (**) is not a literal")
        try:
            return {
                _build(k, depth + 1, budget): _build(v, depth + 1, budget)
                for k, v in zip(node.keys, node.values, strict=True)
            }  # type: ignore[arg-type]
        except TypeError as exc:
            raise ValueError(f"unhashable dict key: {exc}") from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name, args = node.func.id, node.args
        if name in ("set", "frozenset") and len(args) <= 1:
            if not args:
                return set() if name == "set" else frozenset()
            if isinstance(args[0], ast.Set | ast.List | ast.Tuple):
                return _hashable_container(set if name == "set" else frozenset, args[0].elts, depth, budget)
        if name == "complex" and len(args) == 2:
            real, imag = _number(args[0]), _number(args[1])
            if type(real) in (int, float) and type(imag) in (int, float):
                return complex(real, imag)  # type: ignore[arg-type]
        if name == "range" and 1 <= len(args) <= 3:
            bounds = [_number(a) for a in args]
            if all(type(b) is int for b in bounds):
                return range(*bounds)  # type: ignore[arg-type]
        if name in ("dict_keys", "dict_values", "dict_items") and len(args) == 1 and isinstance(args[0], ast.List):
            return _view(name, [_build(e, depth + 2, budget) for e in args[0].elts])
    raise ValueError(f"not a plain literal: {type(node).__name__} node")


def _view(name: str, elements: list) -> Any:
    try:
        if name == "dict_keys":
            return dict.fromkeys(elements).keys()
        if name == "dict_values":
            return dict(enumerate(elements)).values()
        if not all(type(e) is tuple and len(e) == 2 for e in elements):
            raise ValueError("dict_items elements must be (key, value) pairs")
        return dict(elements).items()
    except TypeError as exc:
        raise ValueError(f"unhashable dict key: {exc}") from None


def _hashable_container(kind: type, elts: list[ast.expr], depth: int, budget: list[int]) -> Any:
    try:
        return kind(_build(e, depth + 1, budget) for e in elts)
    except TypeError as exc:
        raise ValueError(f"unhashable set element: {exc}") from None


# ------------------------------------------------------------------------------------------- printing


def canonical(value: object, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Canonical literal text of a plain value; never calls user-defined methods.

    Raises UnsupportedValue for anything that is not an exact builtin plain type (subclasses included)
    or nests deeper than MAX_DEPTH (including self-references), and ValueTooLarge when the text would
    exceed `max_chars` or an int has more than MAX_INT_DIGITS decimal digits.
    """
    out: list[str] = []
    _emit(value, out, 0, [max_chars])
    return "".join(out)


def _put(out: list[str], text: str, room: list[int]) -> None:
    room[0] -= len(text)
    if room[0] < 0:
        raise ValueTooLarge("value text exceeds the size limit")
    out.append(text)


def _float_text(x: float) -> str:
    if x != x:
        return "float('nan')"
    if x in (math.inf, -math.inf):
        return "float('inf')" if x > 0 else "float('-inf')"
    return repr(x)


def _emit(value: object, out: list[str], depth: int, room: list[int]) -> None:
    kind = type(value)
    if depth > MAX_DEPTH:
        raise UnsupportedValue(f"value nested deeper than {MAX_DEPTH}")
    if kind is int:
        # bit_length bounds the digit count without the (quadratic, limited) decimal conversion.
        if value.bit_length() > 3.33 * min(MAX_INT_DIGITS, room[0]):  # type: ignore[attr-defined]
            raise ValueTooLarge("int too large to print")
        try:
            _put(out, int.__repr__(value), room)  # type: ignore[arg-type]
        except ValueError:  # past the interpreter's max_str_digits
            raise ValueTooLarge("int too large to print") from None
    elif kind is bool or value is None:
        _put(out, repr(value), room)
    elif kind is float:
        _put(out, _float_text(value), room)  # type: ignore[arg-type]
    elif kind is complex:
        c: complex = value  # type: ignore[assignment]
        if math.isfinite(c.real) and math.isfinite(c.imag):
            _put(out, repr(c), room)
        else:
            _put(out, f"complex({_float_text(c.real)}, {_float_text(c.imag)})", room)
    elif kind is str or kind is bytes:
        if len(value) > room[0]:  # type: ignore[arg-type]
            raise ValueTooLarge("value text exceeds the size limit")
        _put(out, str.__repr__(value) if kind is str else bytes.__repr__(value), room)  # type: ignore[arg-type]
    elif kind is list or kind is tuple:
        seq: list | tuple = value  # type: ignore[assignment]
        _put(out, "[" if kind is list else "(", room)
        for i, item in enumerate(seq):
            if i:
                _put(out, ", ", room)
            _emit(item, out, depth + 1, room)
        _put(out, "]" if kind is list else ("," if len(seq) == 1 else "") + ")", room)
    elif kind is dict:
        items = sorted((_sub(k, depth, room), _sub(v, depth, room)) for k, v in dict.items(value))  # type: ignore[arg-type]
        _put(out, "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}", room)
    elif kind is set or kind is frozenset:
        parts = sorted(_sub(e, depth, room) for e in value)  # type: ignore[attr-defined]
        body = "{" + ", ".join(parts) + "}" if parts else ""
        _put(out, (body or "set()") if kind is set else f"frozenset({body})", room)
    elif kind is range:
        _put(out, range.__repr__(value), room)  # type: ignore[arg-type]
    elif kind in _VIEWS:
        _put(out, _VIEWS[kind] + "(", room)  # type: ignore[index]
        _emit(list(value), out, depth + 1, room)  # type: ignore[call-overload]
        _put(out, ")", room)
    else:
        raise UnsupportedValue(f"unsupported return type: {kind.__name__}")


def _sub(value: object, depth: int, room: list[int]) -> str:
    part: list[str] = []
    _emit(value, part, depth + 1, [room[0]])
    return "".join(part)


# ------------------------------------------------------------------------------------------ comparing


def values_equal(a: str, b: str, *, rel_tol: float = 1e-9, abs_tol: float = 0.0, strict_types: bool = True) -> bool:
    """Compare two literal TEXTS as values; garbage (unparseable text) is unequal and never raises.

    Policy (also in docs/sandbox.md):
    - floats (and complex parts) match within ``math.isclose(rel_tol, abs_tol)``; NaN equals NaN;
      infinities match only with the same sign; ``-0.0 == 0.0``.
    - ``strict_types=True`` (default): types must match exactly, so ``1``, ``1.0`` and ``True`` are all
      different, and so are list/tuple and set/frozenset.  ``strict_types=False``: bool/int/float compare by
      numeric value (``1 == 1.0 == True``); container kinds must still match.
    - dicts and sets match when their entries pair up after sorting by canonical text.
    - ranges match when they hold the same numbers (``range(0, 0) == range(5, 5)``, as in Python);
      dict_keys and dict_items match as sets, dict_values as sequences (order counts).
    """
    try:
        return _equal(parse_literal(a), parse_literal(b), rel_tol, abs_tol, strict_types)
    except (ValueError, TypeError, RecursionError, MemoryError):
        return False


_REAL = (bool, int, float)


def _equal(x: Any, y: Any, rel: float, abs_: float, strict: bool) -> bool:
    tx, ty = type(x), type(y)
    if tx is not ty:
        if strict or tx not in _REAL or ty not in _REAL:
            return False
        return _close(float(x), float(y), rel, abs_) if float in (tx, ty) else x == y
    if tx is float:
        return _close(x, y, rel, abs_)
    if tx is complex:
        return _close(x.real, y.real, rel, abs_) and _close(x.imag, y.imag, rel, abs_)
    if tx in (list, tuple):
        return len(x) == len(y) and all(_equal(p, q, rel, abs_, strict) for p, q in zip(x, y, strict=True))
    if tx is dict:
        return len(x) == len(y) and _equal(_sorted_pairs(x), _sorted_pairs(y), rel, abs_, strict)
    if tx in (set, frozenset, _KEYS, _ITEMS):
        return len(x) == len(y) and _equal(sorted(x, key=canonical), sorted(y, key=canonical), rel, abs_, strict)
    if tx is _VALUES:
        return _equal(list(x), list(y), rel, abs_, strict)
    return x == y


def _sorted_pairs(d: dict) -> list[tuple[Any, Any]]:
    return sorted(d.items(), key=lambda kv: canonical(kv[0]))


def _close(x: float, y: float, rel: float, abs_: float) -> bool:
    if x != x or y != y:
        return x != x and y != y
    return x == y or math.isclose(x, y, rel_tol=rel, abs_tol=abs_)
