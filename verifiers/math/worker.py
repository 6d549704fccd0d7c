"""Worker process of MathChecker: `python -m flywheel.verifiers.math.worker CONFIG_JSON`.

Protocol (JSON lines on stdin/stdout): after start-up it prints `ready`; each input line is a batch
`[[tid, "check", gold, pred] | [tid, "compute", op, expr, var, params], ...]`; it answers one line per task
as soon as that task is done: `[tid, verdict, reason]` or `[tid, status, value, reason, size]`.
The parent enforces the hard timeout by killing this process; a SIGALRM soft timeout here usually
answers first, so the worker survives. Model text is only parsed (never evaluated as code).
"""

from __future__ import annotations

import json
import resource
import sys
from collections import OrderedDict

from .compare import SoftTimeout, compare, time_budget
from .compute import input_size, run_operation
from .parsing import Parsed, ParseError, parse_answer

PARSE_CACHE = 4096


class _Worker:
    def __init__(self, config: dict) -> None:
        self.timeout_s = float(config["timeout_s"])
        self.rel_tol = float(config["rel_tol"])
        self.abs_tol = float(config["abs_tol"])
        self.cache: OrderedDict[str, Parsed | str] = OrderedDict()

    def parse(self, text: str) -> Parsed:
        hit = self.cache.get(text)
        if hit is None:
            try:
                hit = parse_answer(text)
            except MemoryError:
                raise
            except Exception as exc:  # any failure to parse model text is a parse error
                hit = f"{type(exc).__name__}: {exc}"[:200] if not isinstance(exc, ParseError) else str(exc)
            self.cache[text] = hit
            if len(self.cache) > PARSE_CACHE:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(text)
        if isinstance(hit, str):
            raise ParseError(hit)
        return hit

    def check(self, gold: str, pred: str) -> list:
        try:
            g = self.parse(gold)
        except ParseError as exc:
            return ["parse_error", f"gold: {exc}"]
        try:
            p = self.parse(pred)
        except ParseError as exc:
            return ["parse_error", f"prediction: {exc}"]
        try:
            ok, why = compare(g, p, self.rel_tol, self.abs_tol, 0.4 * self.timeout_s)
        except MemoryError:
            raise
        except Exception as exc:  # SymPy raises many types on odd inputs; never let one escape
            return ["not_equal", f"could not compare ({type(exc).__name__})"]
        return ["equal" if ok else "not_equal", why]

    def compute(self, op: str, expr: str, var: str, params: dict) -> list:
        size = input_size(expr)
        try:
            return ["ok", run_operation(op, expr, var, params), "", size]
        except ParseError as exc:
            return ["parse_error", None, str(exc), size]
        except MemoryError:
            raise
        except Exception as exc:  # ComputeError and whatever SymPy raises on this input
            return ["error", None, f"{type(exc).__name__}: {exc}"[:300], size]

    def run_task(self, task: list) -> list:
        kind = task[1]
        try:
            with time_budget(0.8 * self.timeout_s):
                if kind == "check":
                    return [task[0], *self.check(task[2], task[3])]
                return [task[0], *self.compute(task[2], task[3], task[4], task[5])]
        except SoftTimeout:
            reason = f"gave up after {0.8 * self.timeout_s:.2f}s (soft limit)"
            return [task[0], "timeout", reason] if kind == "check" else [task[0], "timeout", None, reason, 0]


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.set_int_max_str_digits(200_000)
    limit = int(config["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    worker = _Worker(config)
    worker.check("\\frac{1}{2}", "x^2+1")  # warm the parsers' caches
    worker.cache.clear()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        for task in json.loads(line):
            try:
                reply = worker.run_task(task)
            except MemoryError:
                reply = [task[0], "timeout", "memory limit exceeded"]
                if task[1] != "check":
                    reply = [task[0], "timeout", None, "memory limit exceeded", 0]
                out.write(json.dumps(reply) + "\n")
                out.flush()
                sys.exit(3)  # state after MemoryError is unreliable: the parent respawns us
            out.write(json.dumps(reply) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
