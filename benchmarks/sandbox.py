"""Sandbox throughput: `python benchmarks/sandbox.py [--programs N]`.

Measures, in one run and under full isolation: distinct single-call programs/s, calls/s with 8 candidate
inputs per program, the cost of a timed-out call, and a naive baseline that starts a fresh interpreter per
call with `subprocess.run([sys.executable, ...])` under the same rlimits.  Also the CPU time the executor,
its zygote and its children spend per program, which other load on the machine disturbs far less than
the throughput figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

from flywheel.verifiers.sandbox import Job, Sandbox, SandboxConfig

TEMPLATE = "def f(xs, k):\n    out = [x * {i} + k for x in xs if x % 3 != {j}]\n    return sorted(out)[:5], sum(out)\n"
INPUTS = tuple(f"[{', '.join(str(v) for v in range(n, n + 12))}], {n}" for n in range(8))
BASELINE_RUNNER = "import sys\nexec(sys.argv[1])\nprint(repr(f(*eval('(' + sys.argv[2] + ',)'))))"


def _limits() -> None:
    for rlimit, value in ((resource.RLIMIT_AS, 512 << 20), (resource.RLIMIT_CPU, 2), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(rlimit, (value, value))


def _cpu_seconds(pid: int) -> float:
    """CPU time of the executor, its reaped children and its living children (the zygote) so far."""
    ticks = os.sysconf("SC_CLK_TCK")

    def fields(p: int | str) -> list[str]:
        text = open(f"/proc/{p}/stat").read()  # noqa: SIM115 - one short read
        return text[text.rindex(")") + 2 :].split()

    own = fields(pid)
    total = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in open(f"/proc/{pid}/task/{task}/children").read().split():  # noqa: SIM115
            try:
                total += sum(int(x) for x in fields(child)[11:13])
            except OSError:  # exited meanwhile: counted in cutime once reaped
                continue
    return total / ticks


def baseline(n: int) -> float:
    """Calls/s of one fresh interpreter per call (sequential), same memory/CPU limits."""
    start = time.perf_counter()
    for i in range(n):
        subprocess.run(
            [sys.executable, "-c", BASELINE_RUNNER, TEMPLATE.format(i=i, j=i % 3), INPUTS[i % 8]],
            capture_output=True,
            timeout=5,
            preexec_fn=_limits,
            check=True,
        )
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--programs", type=int, default=2000)
    parser.add_argument("--baseline-calls", type=int, default=60)
    args = parser.parse_args()
    with Sandbox(SandboxConfig(isolation="full")) as sb:
        print(f"isolation: {sb.isolation}; workers={sb.config.workers}; cores={os.cpu_count()}")
        sb.run_many([Job(TEMPLATE.format(i=i, j=0), INPUTS[:1]) for i in range(50)])  # warm-up
        single = [Job(TEMPLATE.format(i=i, j=i % 3), (INPUTS[i % 8],)) for i in range(args.programs)]
        start, cpu = time.perf_counter(), _cpu_seconds(sb.executor_pid)
        results = sb.run_many(single)
        programs_s = len(single) / (time.perf_counter() - start)
        cpu_ms = (_cpu_seconds(sb.executor_pid) - cpu) / len(single) * 1000
        assert all(r[0].status == "ok" for r in results)
        batched = [Job(TEMPLATE.format(i=i, j=i % 3), INPUTS) for i in range(args.programs // 2)]
        start = time.perf_counter()
        results = sb.run_many(batched)
        calls_s = len(batched) * len(INPUTS) / (time.perf_counter() - start)
        assert all(r.status == "ok" for res in results for r in res)
        sb_timeout = Sandbox(SandboxConfig(isolation="full", timeout_s=0.2))
        with sb_timeout:
            start = time.perf_counter()
            timed = sb_timeout.run("def f(x):\n    while x:\n        pass\n    return x", ["1", "0"])
            timeout_cost = time.perf_counter() - start
            assert [r.status for r in timed] == ["timeout", "ok"]
    base = baseline(args.baseline_calls)
    print(f"single-call programs/s: {programs_s:8.1f}  (target >= 250)")
    print(f"CPU ms per program    : {cpu_ms:8.2f}  (executor + zygote + children, single-call phase)")
    print(f"calls/s, 8 inputs/prog: {calls_s:8.1f}  (target >= 1000)")
    print(f"baseline calls/s      : {base:8.1f}  (subprocess.run per call, sequential)")
    print(f"ratio batched/baseline: {calls_s / base:8.1f}x (target >= 20x); single/baseline: {programs_s / base:.1f}x")
    print(f"timed-out call (0.2 s limit) + one more call in a re-fork: {timeout_cost * 1000:.0f} ms")


if __name__ == "__main__":
    main()
