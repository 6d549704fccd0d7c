"""Our MathChecker vs math-verify 0.9.0 on the same pairs: agreement, disagreements, checks/s, latency.

Run: `.venv/bin/python benchmarks/math_verify.py` (math-verify is a dev dependency).
"""

from __future__ import annotations

import os
import random
import sys
import time

from flywheel.verifiers.math import MathChecker

HARD = [
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}"),
    ("10^{-20}", "2\\cdot 10^{-20}"),
    ("3", "3 +"),
    ("x^2-1=0", "x^2-4=0"),
    ("\\boxed{x^2-1=0}", "\\boxed{x^2-4=0}"),
    ("\\frac{1}{2}", "\\frac{1}{"),
    ("x = 2", "2x - 4 = 0"),
    ("x^2 = 1", "x = 1"),
    ("\\pm 2", "\\{-2, 2\\}"),
    ("[1, 3)", "[1, 3]"),
    ("(1, 2)", "[1, 2]"),
    ("\\sqrt{x^2}", "x"),
    ("(x+1)^2", "x^2+2x+1"),
    ("\\sin^2 x + \\cos^2 x", "1"),
    ("y = 2x+1", "2x - y + 1 = 0"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    ("50\\%", "50"),
    ("30^\\circ", "30"),
    ("5\\text{ cm}", "5"),
    ("1{,}000", "1000"),
    ("3\\frac{1}{2}", "\\frac{7}{2}"),
    ("\\pi", "3.14"),
    ("\\sqrt{2}", "1.414"),
    ("1/3", "0.333333333333"),
    ("x > 2", "(2, \\infty)"),
    ("(1,2,3)", "(3,2,1)"),
    ("2, -2", "\\pm 2"),
    ("\\infty", "-\\infty"),
]


def easy_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Typical graded answers: integers, fractions, radicals, small polynomials; half equal, half not."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, c = rng.randint(1, 99), rng.randint(2, 99), rng.randint(1, 9)
        kind = rng.randrange(4)
        if kind == 0:
            gold, eq, ne = str(a), str(a), str(a + 1)
        elif kind == 1:
            gold, eq, ne = f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"{a + 1}/{b}"
        elif kind == 2:
            gold, eq, ne = f"{c}\\sqrt{{{b}}}", f"{c}*sqrt({b})", f"{c + 1}*sqrt({b})"
        else:
            gold, eq, ne = f"x^2+{a}x+{c}", f"x^2 + {a}*x + {c}", f"x^2 + {a}*x + {c + 1}"
        out.append((gold, rng.choice([eq, ne, f"\\boxed{{{eq}}}"])))
    return out


def expression_pairs(n: int, seed: int = 1) -> tuple[list[tuple[str, str]], list[bool]]:
    """Expressions that need the identity test (factored vs expanded, cancellable fractions, trig) and whether
    each pair is equal; the unequal ones differ by a tiny or a point-vanishing term."""
    rng = random.Random(seed)
    out, truth = [], []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        kind = rng.randrange(3)
        if kind == 0:
            gold, eq, ne = f"(x+{a})(x+{b})", f"x^2+{a + b}x+{a * b}", f"x^2+{a + b}x+{a * b}+x^3/{10**9}"
        elif kind == 1:
            gold, eq, ne = f"\\frac{{x^2-{a * a}}}{{x-{a}}}", f"x+{a}", f"x+{a}+(x-1)(x-2)(x-3)/{b}"
        else:
            gold, eq, ne = f"{a}\\sin^2 x + {a}\\cos^2 x", f"{a}", f"{a}+\\sin(x)/{10**30}"
        pred = rng.choice([eq, ne])
        out.append((gold, pred))
        truth.append(pred == eq)
    return out, truth


def run_math_verify(pairs: list[tuple[str, str]]) -> tuple[list[bool], float]:
    here = os.path.dirname(os.path.abspath(__file__))  # this file shadows the `math_verify` package
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.modules.pop("math_verify", None)
    from math_verify import parse, verify

    start = time.perf_counter()
    res = []
    for gold, pred in pairs:
        g = gold if "$" in gold or "boxed" in gold else f"${gold}$"
        p = pred if "$" in pred or "boxed" in pred else f"${pred}$"
        try:
            res.append(bool(verify(parse(g), parse(p))))
        except Exception:
            res.append(False)
    return res, time.perf_counter() - start


def main() -> None:
    easy = easy_pairs(2000)
    expr, expr_truth = expression_pairs(300)
    with MathChecker() as checker:
        checker.check("1", "1")  # wait for workers to be up
        start = time.perf_counter()
        ours_easy = checker.check_many(easy)
        ours_easy_s = time.perf_counter() - start
        max_easy = max(checker.last_latencies)
        start = time.perf_counter()
        ours_expr = checker.check_many(expr)
        ours_expr_s = time.perf_counter() - start
        max_expr = max(checker.last_latencies)
        start = time.perf_counter()
        ours_hard = checker.check_many(HARD)
        ours_hard_s = time.perf_counter() - start
        max_hard = max(checker.last_latencies)
        timeout_s = checker.timeout_s
        workers = checker.workers
    mv_easy, mv_easy_s = run_math_verify(easy)
    mv_hard, _ = run_math_verify(HARD)

    agree = sum(o.equal == m for o, m in zip(ours_easy, mv_easy, strict=True))
    print(
        f"easy pairs: {len(easy)}  ours {len(easy) / ours_easy_s:.0f} checks/s ({workers} workers), "
        f"math-verify {len(easy) / mv_easy_s:.0f} checks/s (1 process)"
    )
    print(f"easy agreement: {agree}/{len(easy)} ({100 * agree / len(easy):.1f}%)")
    for (g, p), o, m in zip(easy, ours_easy, mv_easy, strict=True):
        if o.equal != m:
            print(f"  easy differs: {g!r} vs {p!r}: ours {o.verdict} ({o.reason}), math-verify {m}")
    print(
        f"expression pairs: {len(expr)}  ours {len(expr) / ours_expr_s:.0f} checks/s, "
        f"wrong verdicts {sum(v.equal != t for v, t in zip(ours_expr, expr_truth, strict=True))}, "
        f"max latency {max_expr * 1000:.1f} ms"
    )
    agree_h = sum(o.equal == m for o, m in zip(ours_hard, mv_hard, strict=True))
    print(f"hard pairs agreement: {agree_h}/{len(HARD)}; differences:")
    for (g, p), o, m in zip(HARD, ours_hard, mv_hard, strict=True):
        if o.equal != m:
            print(f"  {g!r} vs {p!r}: ours {o.verdict} ({o.reason}); math-verify equal={m}")
    print(
        f"max latency per check: easy {max_easy * 1000:.1f} ms, hard {max_hard * 1000:.1f} ms "
        f"(timeout {timeout_s:.1f} s); hard set took {ours_hard_s:.2f} s"
    )


if __name__ == "__main__":
    main()
