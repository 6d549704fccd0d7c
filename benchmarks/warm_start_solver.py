"""Can a run's warm-started solver answer unseen tasks of its own training distribution? Issue 9's question
behind a family whose learnability stays 0: a solver that is never right gives every task solve rate 0.

    .venv/bin/python benchmarks/warm_start_solver.py RUN_DIR [RUN_DIR ...] [--family code_deduction]
        [--tasks 64] [--samples 4] [--template r1]

For each run it loads ``RUN_DIR/warm-start`` and answers `--tasks` solver tasks drawn from the family's
warm-start generator (`flywheel.train.warmup.family_examples`, seed 12345: tasks of the training
distribution that a run seeded otherwise is unlikely to have trained on), greedy and `--samples` times at
temperature 1 (as self-play's solve-rate estimate samples), scored by `flywheel.train.evaluate.evaluate`. It
prints the share of correct answers and of format errors. Prompts and the family's settings are those of the
first run's ``recipe.yaml`` (as `flywheel eval` reads them); `--template` overrides the template.
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
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per task (temperature 1)")
    options = parser.parse_args()

    from flywheel.envs import make_family
    from flywheel.train.evaluate import evaluate, training_recipe
    from flywheel.train.warmup import family_examples

    configure_threads()
    found = training_recipe(str(options.runs[0] / "warm-start"))
    recipe = found[1] if found else {}
    template = options.template or recipe.get("template") or "r1"
    family = make_family(options.family, (recipe.get("family_configs") or {}).get(options.family))
    renderer = Agent(None, load_tokenizer(options.runs[0] / "warm-start"), template=template)
    examples = family_examples(family, renderer, options.tasks, 2, random.Random(TASK_SEED))
    tasks = [example.task for example in examples if example.role == "solve"]
    print(f"prompts: template {template}, {family.name} settings {family.config.to_dict()}")
    print(f"{'run':40} {'greedy':>7} {'sampled':>8} {'format errors':>14}")
    for run in options.runs:
        model, tokenizer = load_policy(run / "warm-start")
        agent = Agent(model, tokenizer, template=template, max_new_tokens=32)
        figures = []
        for samples, temperature in ((1, 0.0), (options.samples, 1.0)):
            report = evaluate(agent, {family.name: family}, {"unseen": tasks}, samples=samples, temperature=temperature)
            errors = sum(row["verdict"] == "format_error" for row in report.rows) / len(report.rows)
            figures.append((report.summary["accuracy"], errors))
        (greedy, _), (sampled, errors) = figures
        print(f"{run!s:40} {greedy:7.3f} {sampled:8.3f} {errors:14.3f}", flush=True)
    family.verifiers.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
