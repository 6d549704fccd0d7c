"""Time the tiny model's batched generation with 1 vs N torch threads, idle and beside busy processes.

    .venv/bin/python benchmarks/threads.py [--busy 1] [--repeats 5] [--batch 8] [--new-tokens 64]

The busy processes are pure-Python spin loops, standing in for verifier subprocesses (sandboxed
code, sympy) that run beside generation during training.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

import torch
from flywheel.agents import Agent, load_policy


def _spin() -> None:
    while True:
        pass


def _time_generate(agent: Agent, prompts: list[str], threads: int, repeats: int) -> list[float]:
    torch.set_num_threads(threads)
    agent.generate(prompts[:1], seed=0)  # warm-up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        agent.generate(prompts, seed=i)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=1, help="busy processes beside generation")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 2])
    args = parser.parse_args()

    model, tokenizer = load_policy(device="cpu")
    # temperature 0 with a fixed token count: every run does the same work.
    agent = Agent(model, tokenizer, max_new_tokens=args.new_tokens, temperature=0.0)
    model.generation_config.min_new_tokens = args.new_tokens  # never stop early
    prompts = [agent.render(f"Compute {i} * {i + 3} and explain the steps.", "solve") for i in range(args.batch)]
    print(f"cpus={os.cpu_count()} batch={args.batch} new_tokens={args.new_tokens} repeats={args.repeats}")
    for busy in sorted({0, args.busy}):
        workers = [mp.Process(target=_spin, daemon=True) for _ in range(busy)]
        for worker in workers:
            worker.start()
        try:
            for threads in args.threads:
                times = _time_generate(agent, prompts, threads, args.repeats)
                print(
                    f"busy={busy} threads={threads}: median {statistics.median(times):.3f}s "
                    f"min {min(times):.3f}s max {max(times):.3f}s"
                )
        finally:
            for worker in workers:
                worker.terminate()
                worker.join()


if __name__ == "__main__":
    main()
