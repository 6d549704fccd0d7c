"""values: bounded literal parsing, canonical text, comparison policy."""

from __future__ import annotations

import math

import pytest
from flywheel.verifiers.values import (
    UnsupportedValue,
    ValueTooLarge,
    canonical,
    parse_arguments,
    parse_literal,
    values_equal,
)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -5,
        2**200,
        1.5,
        -0.0,
        math.inf,
        -math.inf,
        1 + 2j,
        complex(math.inf, 1),
        "a'b\"c",
        b"\x00x",
        None,
        True,
        [1, [2, (3,)]],
        (),
        (1,),
        {"b": 1, "a": [2]},
        {3, 1, 2},
        frozenset({"x"}),
        set(),
        frozenset(),
    ],
)
def test_canonical_round_trips(value: object) -> None:
    text = canonical(value)
    assert canonical(parse_literal(text)) == text
    assert values_equal(text, canonical(value))


def test_canonical_sorts_sets_and_dicts() -> None:
    assert canonical({"b": 1, "a": 2}) == "{'a': 2, 'b': 1}"
    assert canonical({3, 1, 2}) == "{1, 2, 3}"
    assert canonical(float("nan")) == "float('nan')"


def test_canonical_refuses_subclasses_and_objects() -> None:
    class Lying(int):
        def __repr__(self) -> str:
            return "42"

    for bad in (Lying(1), object(), ..., [1, object()], {"k": iter(range(3))}, (x for x in ()), map(str, "")):
        with pytest.raises(UnsupportedValue):
            canonical(bad)


def test_canonical_limits_size_depth_and_huge_ints() -> None:
    with pytest.raises(ValueTooLarge):
        canonical("x" * 100, max_chars=50)
    with pytest.raises(ValueTooLarge):
        canonical(10**5000)
    nested: list = []
    nested.append(nested)
    with pytest.raises(UnsupportedValue):
        canonical(nested)


def test_parse_literal_rejects_code_and_bounds() -> None:
    for text in ("__import__('os')", "f(1)", "[1, 2", "x", "1 +", "lambda: 0", "{**a}", "(1).real"):
        with pytest.raises(ValueError):
            parse_literal(text)
    with pytest.raises(ValueError, match="too long"):
        parse_literal("1" * 100, max_chars=10)
    with pytest.raises(ValueError):
        parse_literal("[" * 150 + "]" * 150)
    with pytest.raises(ValueError):
        parse_literal("1" * 5000)


def test_parse_arguments() -> None:
    assert parse_arguments("[1, 2], 3") == (([1, 2], 3), {})
    assert parse_arguments("") == ((), {})
    assert parse_arguments("'a',") == (("a",), {})
    assert parse_arguments("numbers = [2, 8]") == ((), {"numbers": [2, 8]})
    for bad in ("f(3) + f(4)", "*a", "x"):
        with pytest.raises(ValueError):
            parse_arguments(bad)


def test_comparison_policy() -> None:
    assert values_equal("0.1 + 0.2j", "(0.1+0.2j)")
    assert values_equal("0.30000000000000004", "0.3")
    assert not values_equal("0.31", "0.3")
    assert values_equal("float('nan')", "float('nan')")
    assert not values_equal("float('inf')", "float('-inf')")
    assert values_equal("-0.0", "0.0")
    # strict by default: 1, 1.0 and True differ; list and tuple differ.
    assert not values_equal("1", "1.0")
    assert not values_equal("1", "True")
    assert not values_equal("[1]", "(1,)")
    assert values_equal("1", "1.0", strict_types=False)
    assert values_equal("True", "1", strict_types=False)
    assert not values_equal("[1]", "(1,)", strict_types=False)
    assert values_equal("{'b': 1, 'a': 2}", "{'a': 2, 'b': 1}")
    assert values_equal("{1.0, 2.0}", "{2.0000000000001, 1.0}")
    assert values_equal("1.0", "1.5", abs_tol=0.6)


def test_garbage_is_unequal_never_raises() -> None:
    for a, b in (("", ""), ("[", "["), ("x", "x"), ("1" * 6000, "1" * 6000)):
        assert values_equal(a, b) is False
    assert values_equal(None, "1") is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (range(3), "range(0, 3)"),
        (range(1, 10, 2), "range(1, 10, 2)"),
        ({"b": 1, "a": [2]}.items(), "dict_items([('b', 1), ('a', [2])])"),
        ({3: 1, 1: 2}.keys(), "dict_keys([3, 1])"),
        ({1: (1, 2)}.values(), "dict_values([(1, 2)])"),
    ],
)
def test_ranges_and_dict_views_print_like_repr_and_round_trip(value: object, text: str) -> None:
    assert canonical(value) == text == repr(value)
    assert canonical(parse_literal(text)) == text


def test_ranges_and_dict_views_compare_like_python() -> None:
    assert values_equal("dict_keys([1, 2])", "dict_keys([2, 1])")  # set-like, as in Python
    assert values_equal("dict_items([(1, 'a'), (2, 'b')])", "dict_items([(2, 'b'), (1, 'a')])")
    assert not values_equal("dict_values([1, 2])", "dict_values([2, 1])")  # order counts
    assert values_equal("range(0, 0)", "range(5, 5)")
    assert not values_equal("range(0, 3)", "[0, 1, 2]")  # kinds must match
    for bad in ("dict_items([1, 2])", "dict_keys([[1]])", "range(1.5)", "range()"):
        with pytest.raises(ValueError):
            parse_literal(bad)
