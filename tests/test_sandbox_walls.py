"""The sandbox's walls, one test per class of attack (issue 12):

* reflection: every route from data to frames, gc or raw memory is refused by the runtime guard; routes
  from data to attributes (format fields, `Formatter.get_field`, `operator.attrgetter`, typing's string
  annotations) cannot name private attributes or reach modules outside the allowlist; what a program
  reaches anyway (builtins, `os` through `dataclasses.sys` with the static check off) is bounded by the
  walls below;
* filesystem: no world-writable host directory can be written, and nothing a job writes outlives it;
* memory: a job's process holds no other job's program, input or result;
* parse bombs: oversized text is refused before the parent parses anything.

Each runs with the Python-level layers on (static check + runtime guard), with only the runtime guard,
and with neither, in full isolation and, where it applies, in the degraded ("rlimits") mode.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flywheel.verifiers.sandbox import DEFAULT_ALLOWED_IMPORTS, Job, Sandbox, SandboxConfig, Status
from flywheel.verifiers.values import parse_literal

RELAXED_IMPORTS = DEFAULT_ALLOWED_IMPORTS | {"os", "sys", "gc", "ctypes", "signal", "builtins"}
# (static_check, runtime_guard, isolation)
LAYERS = [
    pytest.param((True, True, "full"), id="checked-full"),
    pytest.param((False, True, "full"), id="guard-only-full"),
    pytest.param((False, False, "full"), id="walls-only-full"),
    pytest.param((False, True, "rlimits"), id="guard-only-degraded"),
    pytest.param((False, False, "rlimits"), id="walls-only-degraded"),
]


@pytest.fixture(scope="module", params=LAYERS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    static_check, runtime_guard, isolation = request.param
    config = SandboxConfig(
        workers=2,
        timeout_s=2.0,
        memory_mb=256,
        static_check=static_check,
        runtime_guard=runtime_guard,
        isolation=isolation,
        allowed_imports=DEFAULT_ALLOWED_IMPORTS if static_check else RELAXED_IMPORTS,
    )
    with Sandbox(config) as sb:
        yield sb


# ---------------------------------------------------------------------------------------------- reflection

GENERATOR = "def g():\n    yield 1\n\ndef gen():\n    x = g()\n    next(x)\n    return x\n\n"
# Each program tries to take a frame (or every object of the process) through a route the AST cannot see.
FRAME_ROUTES = {
    "format spec": GENERATOR + "def f():\n    return ('{0.gi_' + 'frame.f_back}').format(gen())",
    "format_map": GENERATOR + "def f():\n    return ('{x.gi_' + 'frame}').format_map({'x': gen()})",
    "Formatter.get_field": "import string\n"
    + GENERATOR
    + "def f():\n    return repr(string.Formatter().get_field('0.gi_' + 'frame', [gen()], {})[0])",
    "operator.attrgetter": "import operator\n"
    + GENERATOR
    + "def f():\n    return repr(operator.attrgetter('gi_' + 'frame.f_back')(gen()))",
    "library frame helper": "import dataclasses\ndef f():\n    return repr(dataclasses.inspect.currentframe())",
    "module attribute to gc": "import dataclasses\n"
    "def f():\n    return len(dataclasses.sys.modules['gc'].get_objects())",
}


@pytest.mark.parametrize("route", sorted(FRAME_ROUTES))
def test_reflection_routes_to_frames_are_refused(sandbox: Sandbox, route: str) -> None:
    (result,) = sandbox.run(FRAME_ROUTES[route], [""])
    if sandbox.config.runtime_guard:
        assert result.status in (Status.REJECTED, Status.ERROR), result
        if result.status == Status.ERROR:
            assert "PermissionError: sandbox:" in result.error
    else:  # without the guard the frame is reached: the walls below must make that worthless
        assert result.status == Status.OK, result


# Each program takes a route from data to builtins or `os` that the static check cannot see (names
# computed at run time), or, for "module attribute", one that only the static check refuses.
DATA_ROUTES = {
    "Formatter.get_field": "import string\ndef f():\n"
    "    return string.Formatter().get_field('0.__buil' + 'tins__', [f], {})[0]['open']('/etc/passwd').read(30)",
    "operator.attrgetter": "import operator\ndef f():\n"
    "    return operator.attrgetter('__glo' + 'bals__')(f)['__builtins__'].open('/etc/passwd').read(30)",
    "operator.methodcaller": "import operator\ndef f():\n"
    "    return operator.methodcaller('__getattri' + 'bute__', '__globals__')(f)['__builtins__'].__name__",
    "str.format": "def f():\n    return ('{0.' + '__globals__[__builtins__]}').format(f)",
    "format_map": "def f():\n    return ('{x.' + '__globals__}').format_map({'x': f})",
    "nested format spec": "N = 5\ndef f():\n    return ('{1:>{0.' + '__globals__[N]}}').format(f, 'x')",
    "format field to a module": "import dataclasses\ndef f():\n"
    "    return ('{0.insp' + 'ect.os.environ}').format(dataclasses)",
    "typing string annotation": "import typing\nclass A:\n    x: ('op' + 'en')\ndef f():\n"
    "    return typing.get_type_hints(A)['x']('/etc/passwd').read(30)",
    "module attribute": "import dataclasses\ndef f():\n    return dataclasses.sys.modules['os'].getpid()",
}
STATIC_ONLY_ROUTES = {"module attribute"}


@pytest.mark.parametrize("route", sorted(DATA_ROUTES))
def test_data_routes_to_builtins_and_modules_are_refused(sandbox: Sandbox, route: str) -> None:
    (result,) = sandbox.run(DATA_ROUTES[route], [""])
    if sandbox.config.static_check and route in STATIC_ONLY_ROUTES:
        assert result.status == Status.REJECTED and "outside the import allowlist" in result.error, result
    elif sandbox.config.runtime_guard and route not in STATIC_ONLY_ROUTES:
        assert result.status == Status.ERROR and "PermissionError: sandbox:" in result.error, result
    else:  # the route is real: the walls below bound what it reaches
        assert result.status == Status.OK, result


PLAIN_REFLECTION = """
import collections
import operator
from typing import List
class Node:
    def __init__(self, v):
        self.v = v
def f(a: List['Node'] = None):
    n = Node(3)
    return ('{0.v:>{1}} {x[1]}'.format(n, 4, x=[0, 'y']), '{n.v}'.format_map({'n': n}),
            operator.attrgetter('v', 'v.real')(n), operator.attrgetter('v')(n),
            operator.methodcaller('upper')('a'), repr(collections.ChainMap({'a': 1}).keys()))
"""


def test_data_routes_with_public_names_still_work(sandbox: Sandbox) -> None:
    (result,) = sandbox.run(PLAIN_REFLECTION, [""])
    assert (result.status, result.value) == (
        Status.OK,
        "('   3 y', '3', (3, 3), 3, 'A', \"KeysView(ChainMap({'a': 1}))\")",
    ), result
    if not sandbox.config.static_check:  # the program's own eval (HumanEval/160) of a plain expression
        (evaluated,) = sandbox.run("def f(e):\n    return eval(e)", ["'3 + 4 * 2'"])
        assert (evaluated.status, evaluated.value) == (Status.OK, "11"), evaluated


# ---------------------------------------------------------------------------------------------- filesystem

# Builtins and `os` through a module attribute of an allowed module: only the static check refuses it.
REACH = """
import dataclasses
def host():
    modules = dataclasses.sys.modules
    return modules['builtins'].open, modules['os']
"""


def _world_writable_dirs() -> list[str]:
    """World-writable directories of this host (three levels deep, /proc and /sys skipped), plus the cwd."""
    found = {os.getcwd()}
    stack = [("/", 0)]
    while stack:
        path, depth = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            if entry.path in ("/proc", "/sys") or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_mode & 0o002:
                found.add(entry.path)
            if depth < 2:
                stack.append((entry.path, depth + 1))
    return sorted(found)


WRITE_EVERYWHERE = (
    REACH
    + """
def f(dirs, name):
    opener, system = host()
    written = []
    for d in dirs:
        path = d + '/' + name
        for attempt in (lambda: opener(path, 'w').write('x'), lambda: system.mkdir(path + '.d')):
            try:
                attempt()
                written.append(d)
            except OSError:
                pass
    return written
"""
)


def test_no_world_writable_host_dir_is_writable(sandbox: Sandbox) -> None:
    """A route to builtins and `os`, then a write attempt in every world-writable host directory."""
    dirs = _world_writable_dirs()
    assert "/tmp" in dirs and "/var/tmp" in dirs
    name = f"flywheel-probe-{uuid.uuid4().hex}"
    (result,) = sandbox.run(WRITE_EVERYWHERE, [f"{dirs!r}, {name!r}"])
    if sandbox.config.static_check:
        assert result.status == Status.REJECTED and "outside the import allowlist" in result.error, result
    else:
        assert (result.status, result.value) == (Status.OK, "[]"), result
    leftovers = [d for d in dirs if os.path.exists(f"{d}/{name}") or os.path.exists(f"{d}/{name}.d")]
    assert leftovers == []


def test_private_dir_is_the_only_writable_place_and_dies_with_the_job() -> None:
    config = SandboxConfig(workers=1, static_check=False, allowed_imports=RELAXED_IMPORTS, isolation="full")
    write = "import os\ndef f():\n    open('left', 'w').write('x' * 1000)\n    return os.getcwd()"
    look = "import os\ndef f():\n    return sorted(os.listdir('.'))"
    big_file = "def f():\n    with open('big', 'wb') as out:\n        out.write(b'x' * 2_000_000)"
    many_files = "def f():\n    for i in range(100):\n        open(f'f{i}', 'w').write('x' * 900_000)"
    with Sandbox(config) as sb:
        (cwd,) = sb.run(write, [""])
        assert cwd.status == Status.OK
        assert not Path(parse_literal(cwd.value)).exists()  # the job's directory is not on the host
        assert sb.run(look, [""])[0].value == "[]"  # the next job in the same slot starts empty
        assert sb.run(big_file, [""])[0].status == Status.ERROR  # 1 MiB per file
        assert sb.run(many_files, [""])[0].status == Status.ERROR  # 16 MiB per slot
        assert sb.run(look, [""])[0].value == "[]"


# ------------------------------------------------------------------------------------------------- memory

# Looks everywhere a job could find another job's text: every frame's variables (reached through a signal
SNOOP = """
import ctypes, gc, signal, sys
def _frames():
    got = []
    def handler(signum, frame):
        while frame is not None:
            got.append(repr(frame.f_locals))
            frame = frame.f_back
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.001)
    while not got:
        pass
    return got
def _objects():
    return [o for o in gc.get_objects() if type(o) is str]
def _memory(prefix):
    found = []
    for line in open('/proc/self/maps'):
        fields = line.split()
        if fields[1][:2] != 'rw' or len(fields) > 5 and fields[5].startswith('[v'):
            continue
        start, end = (int(x, 16) for x in fields[0].split('-'))
        for at in range(start, end, 1 << 20):
            chunk = ctypes.string_at(at, min(1 << 20, end - at))
            i = chunk.find(prefix)
            while i >= 0:
                found.append(chunk[i : i + len(prefix) + 32].decode('latin-1'))
                i = chunk.find(prefix, i + 1)
    return found
def f(prefix):
    texts = []
    for look in (_frames, _objects, lambda: _memory(prefix.encode())):
        try:
            texts += look()
        except Exception as exc:
            texts.append(type(exc).__name__)
    hexdigits = set('0123456789abcdef')
    return sorted({t[t.index(prefix) : t.index(prefix) + len(prefix) + 32] for t in texts
                   if prefix in t and set(t[t.index(prefix) + len(prefix) :][:32]) <= hexdigits
                   and len(t[t.index(prefix) + len(prefix) :]) >= 32})
"""


@pytest.mark.parametrize("isolation", ["full", "rlimits"])
def test_a_job_cannot_read_other_jobs_data(isolation: str) -> None:
    config = SandboxConfig(
        workers=2,
        timeout_s=10.0,
        memory_mb=512,
        static_check=False,
        runtime_guard=False,
        allowed_imports=RELAXED_IMPORTS,
        isolation=isolation,
    )
    prefix = "flywheel-secret-"
    secrets = [prefix + uuid.uuid4().hex for _ in range(6)]
    victims = [Job(f"SECRET = {s!r}\ndef f(x):\n    return len(x)", (repr(s),)) for s in secrets]
    slow = [Job("import time\ndef f(s):\n    time.sleep(s)\n    return s", ("0.5",))]
    with Sandbox(config) as sb:
        sb.run_many(victims)  # earlier jobs: their data passed through the executor before
        results = sb.run_many(slow + victims + [Job(SNOOP, (repr(prefix),))] + victims)
    found = results[1 + len(victims)][0]
    assert found.status == Status.OK, found
    assert parse_literal(found.value) == []


# -------------------------------------------------------------------------------------------- parse bombs


@pytest.mark.parametrize(
    ("program", "inputs", "needle"),
    [
        ("x = 1\n" * 8_000_000, ("",), "program too long"),
        ("x = 1\n" * 6_000, ("",), "lines"),
        ("def f(x):\n    return x", ("[" * 70_000 + "]" * 70_000,), "input too long"),
    ],
    ids=["8M lines", "too many lines", "huge input"],
)
def test_parse_bombs_are_refused_before_parsing(sandbox: Sandbox, program: str, inputs: tuple, needle: str) -> None:
    (result,) = sandbox.run(program, inputs)
    assert result.status == Status.REJECTED and needle in result.error


def test_deep_nesting_within_the_size_limits_is_a_clear_answer(sandbox: Sandbox) -> None:
    program = "def f(x):\n    return 1"
    deep_inputs = ["[" * 30_000 + "]" * 30_000, "-" * 60_000 + "1", "not " * 15_000 + "1"]
    results = sandbox.run(program, deep_inputs)
    assert all(r.status == Status.ERROR and r.error.startswith("bad input") for r in results), results
    (nested_program,) = sandbox.run("def f():\n    return " + "(" * 30_000 + ")" * 30_000, [""])
    assert nested_program.status in (Status.REJECTED, Status.ERROR)
    with pytest.raises(ValueError, match="too long"):
        parse_literal("[1, " * 2_000_000 + "]")
