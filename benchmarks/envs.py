"""Environment throughput: solve-env steps/s with a scripted solver (reference answers), for one env and
for a vector env of N side by side, and proposals validated per second.

    .venv/bin/python benchmarks/envs.py [--steps 200] [--num-envs 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import random
import time

import flywheel.envs
import gymnasium
from flywheel.envs.parsing import format_answer
from flywheel.envs.resources import SharedVerifiers
from flywheel.verifiers.sandbox import SandboxConfig

CODE_IDS = ("CodeDeduction", "CodeAbduction", "CodeInduction")


def single_env_rate(env_id: str, steps: int, verifiers: SharedVerifiers) -> float:
    env = gymnasium.make(env_id, verifiers=verifiers)
    env.reset(seed=0)
    env.step(env.unwrapped.family.reference_answer(env.unwrapped.task))  # warm the sandbox
    start = time.perf_counter()
    for episode in range(steps):
        env.reset(seed=episode)
        env.step(env.unwrapped.family.reference_answer(env.unwrapped.task))
    env.close()
    return steps / (time.perf_counter() - start)


def vector_env_rate(env_id: str, steps: int, num_envs: int, verifiers: SharedVerifiers) -> float:
    vec = gymnasium.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", verifiers=verifiers)
    vec.reset(seed=0)
    family = vec.unwrapped.family
    rounds = max(1, steps // num_envs)
    start = time.perf_counter()
    for _ in range(rounds):
        vec.step([family.reference_answer(env.task) for env in vec.unwrapped.envs])
    vec.close()
    return rounds * num_envs / (time.perf_counter() - start)


def proposal_rate(verifiers: SharedVerifiers, count: int) -> float:
    family = flywheel.envs.make_family("code_deduction", verifiers=verifiers)
    prompt = family.proposer_prompt(family.seed_tasks(), random.Random(0))
    program = "def f(xs, k):\n    return [x * {} for x in xs[k:]]"
    texts = [format_answer(("python", program.format(i)), ("input", f"[1, 2, 3], {i % 3}")) for i in range(count)]
    start = time.perf_counter()
    results = family.propose(texts, [prompt] * count)
    elapsed = time.perf_counter() - start
    assert all(not hasattr(result, "reason") for result in results)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with SharedVerifiers(SandboxConfig(workers=args.workers)) as verifiers:
        for stem in CODE_IDS:
            env_id = f"flywheel/{stem}-Solve-v0"
            single = single_env_rate(env_id, args.steps, verifiers)
            vector = vector_env_rate(env_id, args.steps, args.num_envs, verifiers)
            print(f"{env_id:32s} single env {single:8.1f} steps/s   make_vec x{args.num_envs} {vector:8.1f} steps/s")
        print(f"code_deduction proposals validated (with determinism check): {proposal_rate(verifiers, 64):.1f}/s")


if __name__ == "__main__":
    main()
