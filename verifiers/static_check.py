"""Cheap AST filter run before a program reaches the sandbox (a first wall, not the only one)."""

from __future__ import annotations

import ast
import re

DENIED_NAMES = frozenset(
    {
        "__import__",
        "__builtins__",
        "__loader__",
        "__spec__",
        "__build_class__",
        "eval",
        "exec",
        "compile",
        "open",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "breakpoint",
        "input",
        "memoryview",
        "exit",
        "quit",
        "help",
        "copyright",
        "credits",
        "license",
    }
)
# Denied names that are harmless once the program binds its own variable of that name (stdin is /dev/null):
# `def f(input): ...` is common in generated code.
REBINDABLE_NAMES = frozenset({"input", "help", "copyright", "credits", "license", "exit", "quit"})
# Dunder methods a plain class legitimately defines or calls (e.g. super().__init__()); all other dunder
# attributes (__class__, __globals__, __subclasses__, __dict__, ...) are introspection and denied.
SAFE_DUNDER_ATTRS = frozenset(
    {
        "__init__",
        "__post_init__",
        "__name__",
        "__len__",
        "__iter__",
        "__next__",
        "__getitem__",
        "__setitem__",
        "__contains__",
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__hash__",
        "__str__",
        "__repr__",
        "__add__",
        "__sub__",
        "__mul__",
        "__bool__",
    }
)
# Frame, traceback, generator and code-object attributes: ways to reach other scopes without dunders.
DENIED_ATTRS = frozenset(
    {
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "f_trace",
        "tb_frame",
        "tb_next",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "co_code",
        "co_consts",
        "func_globals",
        "func_code",
        "_getframe",
        "mro",
    }
)
# "{0.__class__}".format(x) reads attributes through format fields.
_FORMAT_DUNDER = re.compile(r"\{[^{}]*__")


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def _bound_names(tree: ast.AST) -> set[str]:
    names = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    return names | {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def check_program(source: str, allowed_imports: frozenset[str]) -> list[str]:
    """Problems found in `source` (empty list = accepted). `allowed_imports` holds top-level module names."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [f"does not parse: {type(exc).__name__}: {exc}"]
    problems: list[str] = []
    bound = _bound_names(tree) & REBINDABLE_NAMES
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = ["." * node.level + (node.module or "")]
        else:
            modules = []
        for module in modules:
            if module.split(".")[0] not in allowed_imports:
                problems.append(f"line {line}: import of {module!r} is not allowed")
        if isinstance(node, ast.Name) and node.id in bound:
            continue
        if isinstance(node, ast.Name) and (node.id in DENIED_NAMES or (_is_dunder(node.id) and node.id != "__name__")):
            problems.append(f"line {line}: name {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute) and (
            node.attr in DENIED_ATTRS or (_is_dunder(node.attr) and node.attr not in SAFE_DUNDER_ATTRS)
        ):
            problems.append(f"line {line}: attribute {node.attr!r} is not allowed")
        elif isinstance(node, ast.alias) and node.name in DENIED_NAMES | DENIED_ATTRS:
            problems.append(f"line {node.lineno}: importing name {node.name!r} is not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _FORMAT_DUNDER.search(node.value):
            problems.append(f"line {line}: string with a dunder format field is not allowed")
    return problems
