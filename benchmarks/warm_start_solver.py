"""Can a run's warm-started solver answer unseen tasks of its own training distribution? Issue 9's question
behind a family whose learnability stays 0: a solver that is never right gives every task solve rate 0.

    .venv/bin/python benchmarks/warm_start_solver.py RUN_DIR [RUN_DIR ...] [--family code_deduction]
        [--tasks 64] [--samples 4] [--heldout] [--template r1]

For each run it loads ``RUN_DIR/warm-start`` and answers `--tasks` solver tasks drawn from the family's
warm-start generator (`flywheel.train.warmup.family_examples`, seed 12345: tasks of the training
distribution that a run seeded otherwise is unlikely to have trained on), or with `--heldout` the run's own
held-out tasks of the family (`flywheel.envs.heldout`, the run's seed), greedy and `--samples` times at
temperature 1 (as self-play's solve-rate estimate samples), scored by `flywheel.train.evaluate.evaluate`. It
prints the share of correct answers (greedy; sampled), the share of tasks with at least one correct sampled
answer (pass@k: about the most that reinforcing the model's own right answers could reach, as RL sharpens
what it samples) and the share of format errors. Prompts and the family's settings are those of the first
run's ``recipe.yaml`` (`flywheel.train.evaluate.run_prompting`, as `flywheel eval` reads them); `--template`
overrides the template.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from flywheel.agents import TEMPLATES, Agent, configure_threads, load_policy, load_tokenizer

TASK_SEED = 12345


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding warm-start/")
    parser.add_argument("--family", default="code_deduction", help="the family whose solver is asked")
    parser.add_argument("--template", default=None, choices=TEMPLATES, help="default: the first run's recipe's")
    parser.add_argument("--tasks", type=int, default=64, help="unseen tasks of the training distribution")
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per task (temperature 1), 2 or more")
    parser.add_argument("--heldout", action="store_true", help="each run's held-out tasks instead")
    options = parser.parse_args()
    if options.samples < 2:
        parser.error("--samples must be at least 2")

    from flywheel.envs.heldout import family_heldout_tasks
    from flywheel.train.evaluate import evaluate, run_prompting, training_recipe
    from flywheel.train.warmup import family_examples

    configure_threads()
    first = str(options.runs[0] / "warm-start")
    template, families, _ = run_prompting(first, [options.family], template=options.template)
    family = families[options.family]
    if not options.heldout:
        renderer = Agent(None, load_tokenizer(first), template=template)
        examples = family_examples(family, renderer, options.tasks, 2, random.Random(TASK_SEED))
        unseen = [example.task for example in examples if example.role == "solve"]
    print(f"prompts: template {template}, {family.name} settings {family.config.to_dict()}")
    k = options.samples
    print(f"{'run':40} {'greedy':>7} {'sampled':>8} {f'pass@{k}':>8} {'format errors':>14}")
    for run in options.runs:
        model, tokenizer = load_policy(run / "warm-start")
        agent = Agent(model, tokenizer, template=template, max_new_tokens=32)
        if options.heldout:
            found = training_recipe(str(run / "warm-start"))
            tasks = family_heldout_tasks(family, options.tasks, (found[1] if found else {}).get("seed", 0))
        else:
            tasks = unseen
        greedy = evaluate(agent, {family.name: family}, {"tasks": tasks}).summary["accuracy"]
        report = evaluate(agent, {family.name: family}, {"tasks": tasks}, samples=k, temperature=1.0)
        errors = sum(row["verdict"] == "format_error" for row in report.rows) / len(report.rows)
        sampled, passed = report.summary["accuracy"], report.summary[f"pass@{k}"]
        print(f"{run!s:40} {greedy:7.3f} {sampled:8.3f} {passed:8.3f} {errors:14.3f}", flush=True)
    family.verifiers.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
