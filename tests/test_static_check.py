"""static_check: the cheap AST filter in front of the sandbox."""

from __future__ import annotations

import pytest
from flywheel.verifiers.sandbox import DEFAULT_ALLOWED_IMPORTS
from flywheel.verifiers.static_check import check_program


@pytest.mark.parametrize(
    "source",
    [
        "import math\nfrom collections import Counter\ndef f(x):\n    return math.sqrt(x)",
        "class A:\n    def __init__(self):\n        super().__init__()\n    def __len__(self):\n        return 0",
        "def f(input):\n    return input[::-1]",
        "if __name__ == '__main__':\n    pass",
    ],
)
def test_accepts_ordinary_programs(source: str) -> None:
    assert check_program(source, DEFAULT_ALLOWED_IMPORTS) == []


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("import os", "'os'"),
        ("import os.path", "'os.path'"),
        ("from subprocess import run", "'subprocess'"),
        ("from . import x", "'.'"),
        ("__import__('os')", "__import__"),
        ("x = __builtins__", "__builtins__"),
        ("eval('1')", "eval"),
        ("exec('1')", "exec"),
        ("compile('1', '', 'eval')", "compile"),
        ("open('/etc/passwd')", "open"),
        ("globals()", "globals"),
        ("vars()", "vars"),
        ("getattr(1, 'real')", "getattr"),
        ("setattr(f, 'x', 1)", "setattr"),
        ("breakpoint()", "breakpoint"),
        ("input()", "input"),
        ("memoryview(b'')", "memoryview"),
        ("().__class__.__bases__[0].__subclasses__()", "__class__"),
        ("f.__globals__", "__globals__"),
        ("def g():\n    yield\ng().gi_frame.f_back", "gi_frame"),
        ("import random\nrandom._inst.f_globals", "f_globals"),
        ("'{0.__class__}'.format(1)", "format field"),
        ("'{0._os}'.format(1)", "format field"),
        ("import random\nrandom._os.getcwd()", "random._os"),
        ("import collections as c\nc._sys.modules", "c._sys"),
        ("from random import _os", "_os"),
        ("def f(:", "does not parse"),
    ],
)
def test_rejects_with_reason(source: str, needle: str) -> None:
    problems = check_program(source, DEFAULT_ALLOWED_IMPORTS)
    assert problems and any(needle in p for p in problems), problems


def test_allowlist_is_configurable() -> None:
    assert check_program("import hashlib", DEFAULT_ALLOWED_IMPORTS)
    assert check_program("import hashlib", DEFAULT_ALLOWED_IMPORTS | {"hashlib"}) == []


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        (("1", "__import__('os')"), "input 1, line 1: name '__import__'"),
        (("(helper := len)",), "assignment (:=) in an input"),
        (("'{0.__class__}'",), "format field"),
        (("().__class__",), "'__class__'"),
    ],
)
def test_inputs_are_checked_like_programs(inputs: tuple[str, ...], needle: str) -> None:
    problems = check_program("def f(x):\n    return x", DEFAULT_ALLOWED_IMPORTS, inputs)
    assert any(needle in p for p in problems), problems


def test_expression_inputs_and_unparseable_inputs_pass() -> None:
    """Unparseable inputs run nothing (the child answers `bad input`), so they are no reason to refuse."""
    inputs = ("dict(a=1)", "'abc'.upper()", "[1] * 20", "range(100, 120)", "lambda x: x < 2", "1)(2", "[")
    assert check_program("def f(*a):\n    return a", DEFAULT_ALLOWED_IMPORTS, inputs) == []
