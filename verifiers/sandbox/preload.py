"""What the executor imports before any child exists.

A child runs under an unprivileged uid that may not be able to read the standard library (here it lives
under the root-only ``/root/.pyenv``), and from a private mount tree: a module not yet imported when the
child starts may fail to import there.  So the executor imports, once, at startup:

* the allowed modules;
* every standard-library module that one of these imports *inside a function* (lazy imports such as
  ``calendar`` -> ``locale``), and so on for the modules found that way;
* every codec of the ``encodings`` package (``'x'.encode('shift_jis')`` looks codecs up by name).

Children are cloned from this state, so these imports cost nothing per program.  Finding the lazy
imports means parsing standard-library sources (about 0.3 s of CPU), so the parent does it once per
process (`modules_to_preload`, cached, trusted files only) and sends the list; the executor only imports.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.util
import io
import pkgutil
import sys
from collections.abc import Iterable

# Standard-library modules with side effects on import, or that only exist for interactive use.
NEVER_PRELOAD = frozenset(
    {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "pydoc", "pydoc_data", "ensurepip"}
)

# Functions that only serve `python -m module` (their imports are not reachable from a program's calls).
COMMAND_LINE_MAINS = frozenset({"main", "_main", "_test", "test", "_demo"})


def _function_level_imports(source: str) -> set[str]:
    """Modules imported inside function bodies of `source` (one pass over its syntax tree)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names: set[str] = set()
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name in COMMAND_LINE_MAINS:
                continue
            in_function = True
        elif in_function and isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif in_function and isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        stack.extend((child, in_function) for child in ast.iter_child_nodes(node))
    return names


def _source(name: str) -> str:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return ""
    path = spec.origin if spec is not None else None
    if not path or not path.endswith(".py"):
        return ""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _is_stdlib(name: str) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names and top not in NEVER_PRELOAD


@functools.cache
def modules_to_preload(allowed: frozenset[str]) -> tuple[str, ...]:
    """The allowed modules and, transitively, the stdlib modules they import inside functions."""
    todo = sorted(allowed)
    seen = set(todo)
    while todo:
        for lazy in _function_level_imports(_source(todo.pop())):
            if lazy not in seen and _is_stdlib(lazy):
                seen.add(lazy)
                todo.append(lazy)
    return tuple(sorted(seen))


def preload(modules: Iterable[str]) -> None:
    """Import every codec, then `modules` (from `modules_to_preload`); what fails to import is skipped."""
    encodings = importlib.import_module("encodings")
    for info in pkgutil.iter_modules(encodings.__path__):
        _try_import(f"encodings.{info.name}")
    for name in modules:
        _try_import(name)


def _try_import(name: str) -> None:
    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
        importlib.import_module(name)
