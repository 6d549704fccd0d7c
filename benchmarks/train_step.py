"""Flywheel self-play step vs a plain TRL GRPO step, same tiny model, same prompts and generation counts.

    .venv/bin/python benchmarks/train_step.py [--steps 4] [--families code_deduction math_deduction]
        [--template plain] [--full_prompts]

Both trainers run in this process, one after the other, on the same prompt set (the rendered proposer and
solver prompts of a first self-play step), `num_generations` samples per prompt and one completion length.
Printed: mean step time of each (after one warm-up step), their ratio with the self-play-only solver
samples (the n solve-rate estimates, needed by design) excluded, those samples' time on its own (plus the
measured cost of estimating one task), and the share of the self-play step spent in verification (proposal
validation + answer checking). Both trainers start from the same weights: the tiny model after the format
warm-up of `flywheel train` (`--warm_start_steps`, 0 to skip), so that proposals and answers are readable and
reach the sandbox and the math checker, as they do in a real run. Prompts are the laptop recipe's (the plain
template, the families' `terse_prompts`); `--template r1 --full_prompts` measures the AZR-style prompts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from statistics import fmean

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def mean_after_warmup(history: list[dict[str, float]], key: str) -> float:
    values = [row[key] for row in history if key in row]
    return fmean(values[1:]) if len(values) > 1 else fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="measured steps (plus one warm-up)")
    parser.add_argument("--families", nargs="+", default=["code_deduction", "math_deduction"])
    parser.add_argument("--batch", type=int, default=2, help="proposer and solver prompts per family")
    parser.add_argument("--num_generations", type=int, default=4)
    parser.add_argument("--length", type=int, default=64, help="max completion tokens (both roles)")
    parser.add_argument("--warm_start_steps", type=int, default=150, help="format warm-up before both trainers")
    parser.add_argument("--template", default="plain", help="prompt template (the laptop recipe's: plain)")
    parser.add_argument("--full_prompts", action="store_true", help="prompts with their instructions")
    options = parser.parse_args()

    from datasets import Dataset
    from flywheel.agents import configure_threads, load_policy
    from flywheel.envs import Task, make_family
    from flywheel.envs.buffer import TaskStore
    from flywheel.train.config import FlywheelConfig
    from flywheel.train.selfplay import SelfPlay
    from flywheel.train.trainer import FlywheelTrainer
    from flywheel.train.warmup import warm_up
    from trl import GRPOConfig, GRPOTrainer

    configure_threads()
    work = Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    common = {
        "num_generations": options.num_generations,
        "learning_rate": 1e-3,
        "beta": 0.0,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "max_steps": options.steps + 1,
        "seed": 0,
        "disable_tqdm": True,
    }
    config = FlywheelConfig(
        output_dir=str(work / "flywheel"),
        families=options.families,
        proposer_batch_size=options.batch,
        solver_batch_size=options.batch,
        n_solver_samples=options.num_generations,
        k_references=2,
        max_proposer_completion_length=options.length,
        max_solver_completion_length=options.length,
        template=options.template,
        warm_start_steps=options.warm_start_steps,
        warm_start_examples=256,
        warm_start_batch_size=8,
        warm_start_learning_rate=5e-3,
        **common,
    )
    family_config = None if options.full_prompts else {"terse_prompts": True}
    families = {name: make_family(name, family_config) for name in options.families}
    game = SelfPlay(
        families, TaskStore(work / "tasks.sqlite"), config.reward_config(), buffer_capacity=1000, k_references=2, seed=0
    )
    game.seed_buffers()
    model, tokenizer = load_policy("flywheel/tiny", dtype="float32", device="cpu")
    if options.warm_start_steps:
        warm_up(model, tokenizer, families, config)
    start_weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    flywheel = FlywheelTrainer(model, config, game, tokenizer)

    # The same prompts for TRL: one self-play step's proposer and solver prompts, rendered the same way.
    prompts = [
        flywheel.agent.render(p, "propose") for name in families for p in game.proposer_prompts(name, options.batch)
    ]
    prompts += [
        flywheel.agent.render(families[name].solver_prompt(task), "solve")
        for name in families
        for task in game.solver_tasks(name, options.batch, fresh=0)
    ]
    seed_tasks = [task for name in families for task in game.buffers[name].sample(1, game.rng)]
    start = time.perf_counter()
    flywheel._sample_solutions([families[t.family].solver_prompt(t) for t in seed_tasks], config.n_solver_samples)
    estimate_per_task = (time.perf_counter() - start) / len(seed_tasks)

    flywheel.train()
    history = flywheel.state.log_history
    step = mean_after_warmup(history, "step_time")
    estimate = (
        mean_after_warmup(history, "selfplay/time/generate_estimate")
        if any("selfplay/time/generate_estimate" in row for row in history)
        else 0.0
    )
    verification = mean_after_warmup(history, "selfplay/time/validate") + mean_after_warmup(
        history, "selfplay/time/verify"
    )
    # A tiny model rarely proposes a valid task, and validating one (sandbox or SymPy, determinism re-runs) is
    # the dearest check: time it on the families' own synthetic proposals, as many as one step trains.
    per_family = options.batch * options.num_generations
    full_validation, valid, proposed = 0.0, 0, 0
    for name, family in families.items():
        proposer_prompts = game.proposer_prompts(name, per_family)
        texts = [family.warmup_proposal(prompt, game.rng) for prompt in proposer_prompts]
        start = time.perf_counter()
        results = family.propose(texts, proposer_prompts)
        full_validation += time.perf_counter() - start
        valid += sum(isinstance(result, Task) for result in results)
        proposed += len(results)
    game.close()

    def length_reward(completions: list[str], **_: object) -> list[float]:
        return [len(text) / 100 for text in completions]

    baseline_config = GRPOConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=len(prompts) * options.num_generations,
        max_completion_length=options.length,
        use_cpu=True,
        bf16=False,
        **common,
    )
    model, tokenizer = load_policy("flywheel/tiny", dtype="float32", device="cpu")
    model.load_state_dict(start_weights)
    baseline = GRPOTrainer(
        model,
        reward_funcs=length_reward,
        args=baseline_config,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
    )
    baseline.train()
    trl_step = mean_after_warmup(baseline.state.log_history, "step_time")

    rows = len(prompts) * options.num_generations
    print(
        f"rollouts per step: {rows} ({len(prompts)} prompts x {options.num_generations}), {options.length} tokens max"
    )
    print(f"flywheel self-play step:   {step:7.2f} s")
    print(
        f"  solve-rate estimation:   {estimate:7.2f} s  (n={config.n_solver_samples} untrained samples per valid task;"
    )
    print(f"                                       measured {estimate_per_task:.2f} s per estimated task)")
    print(f"  verification:            {verification:7.3f} s  = {100 * verification / step:.2f} % of the step")
    print(f"plain TRL GRPO step:       {trl_step:7.2f} s")
    print(f"ratio (estimation excluded): {(step - estimate) / trl_step:.3f}")
    valid_rate = mean_after_warmup(history, "selfplay/propose/valid_rate")
    readable = 1 - fmean(
        mean_after_warmup(history, f"selfplay/{name}/solve/format_error_rate") for name in options.families
    )
    print(f"(proposal valid rate {valid_rate:.2f}, readable solver answers {readable:.2f}: the verifiers' real load)")
    print(
        f"validating one step's proposals when they are valid ({valid}/{proposed} synthetic): {full_validation:.3f} s;"
        f" with it, verification = {100 * (verification + full_validation) / step:.2f} % of the step"
    )


if __name__ == "__main__":
    main()
