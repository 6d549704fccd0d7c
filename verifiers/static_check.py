"""Cheap AST filter run before a program reaches the sandbox (a first wall, not the only one)."""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import re
import types
from collections.abc import Iterable, Iterator

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
# "{0.__class__}".format(x) and "{0._os}" read attributes through format fields.
_FORMAT_PRIVATE = re.compile(r"\{[^{}]*(__|[.\[]_)")


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def _bound_names(tree: ast.AST) -> set[str]:
    names = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    return names | {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _module_names(tree: ast.AST) -> set[str]:
    """Names bound by import statements (modules or names imported from them)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _imported_modules(tree: ast.AST) -> set[str]:
    """Modules named by the import statements of `tree`."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


@functools.cache
def _foreign_module_attributes(module: str, allowed_imports: frozenset[str]) -> dict[str, str]:
    """Attributes of `module` (imported here, once, only when its top level is allowed) that hold modules
    outside `allowed_imports`, e.g. ``dataclasses.sys`` -> ``{"sys": "dataclasses.sys"}``."""
    if module.partition(".")[0] not in allowed_imports:
        return {}
    try:
        namespace = vars(importlib.import_module(module))
    except Exception:  # an allowed module that does not import here holds nothing to refuse
        return {}
    return {
        name: f"{module}.{name}"
        for name, value in namespace.items()
        if isinstance(value, types.ModuleType) and str(value.__name__).partition(".")[0] not in allowed_imports
    }


def _argument_trees(inputs: Iterable[str]) -> Iterator[tuple[int, ast.AST]]:
    """Each input's parse as the argument list of one call; inputs that do not parse are skipped (they
    run nothing: the child answers them with a `bad input` error)."""
    for index, text in enumerate(inputs):
        with contextlib.suppress(SyntaxError, ValueError, RecursionError, MemoryError):
            yield index, ast.parse(f"f({text}\n)", mode="eval")


def check_program(
    source: str,
    allowed_imports: frozenset[str],
    inputs: Iterable[str] = (),
    assume_imported: Iterable[str] = (),
) -> list[str]:
    """Problems found in `source` and in the argument texts `inputs`, which run as code in the program's
    globals (empty list = accepted). `allowed_imports` holds top-level module names; `assume_imported`
    names modules the code may reach besides those it imports.  Callers bound the text sizes first
    (parsing is linear but not cheap)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [f"does not parse: {type(exc).__name__}: {exc}"]
    problems: list[str] = []
    bound = _bound_names(tree) & REBINDABLE_NAMES
    modules = _module_names(tree)
    foreign: dict[str, str] = {}
    for module in sorted(_imported_modules(tree) | set(assume_imported)):
        foreign |= _foreign_module_attributes(module, allowed_imports)
    trees = [("line", tree)] + [(f"input {index}, line", parsed) for index, parsed in _argument_trees(inputs)]
    for where, root in trees:
        problems += _node_problems(root, where, bound, modules, foreign, allowed_imports)
    return problems


def _node_problems(
    tree: ast.AST,
    where: str,
    bound: set[str],
    modules: set[str],
    foreign: dict[str, str],
    allowed_imports: frozenset[str],
) -> list[str]:
    """`foreign`: attribute names under which an imported module holds a module outside the allowlist."""
    problems: list[str] = []
    for node in ast.walk(tree):
        line = f"{where} {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported = ["." * node.level + (node.module or "")]
        else:
            imported = []
        for module in imported:
            if module.split(".")[0] not in allowed_imports:
                problems.append(f"{line}: import of {module!r} is not allowed")
        if isinstance(node, ast.Name) and node.id in bound:
            continue
        if isinstance(node, ast.Name) and (node.id in DENIED_NAMES or (_is_dunder(node.id) and node.id != "__name__")):
            problems.append(f"{line}: name {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute) and (
            node.attr in DENIED_ATTRS or (_is_dunder(node.attr) and node.attr not in SAFE_DUNDER_ATTRS)
        ):
            problems.append(f"{line}: attribute {node.attr!r} is not allowed")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            problems.append(f"{line}: private module attribute {node.value.id}.{node.attr} is not allowed")
        elif isinstance(node, ast.Attribute | ast.alias) and (
            (node.attr if isinstance(node, ast.Attribute) else node.name) in foreign
        ):
            name = node.attr if isinstance(node, ast.Attribute) else node.name
            problems.append(f"{line}: {name!r} names a module outside the import allowlist ({foreign[name]})")
        elif isinstance(node, ast.alias) and (node.name in DENIED_NAMES | DENIED_ATTRS or node.name.startswith("_")):
            problems.append(f"{line}: importing name {node.name!r} is not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _FORMAT_PRIVATE.search(node.value):
            problems.append(f"{line}: string with a private or dunder format field is not allowed")
        elif isinstance(node, ast.NamedExpr) and where != "line":
            problems.append(f"{line}: assignment (:=) in an input is not allowed (it could rebind the program's names)")
    return problems
