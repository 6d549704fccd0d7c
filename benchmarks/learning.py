"""Does self-play add to the warm start? Held-out accuracy of three arms, on several seeds.

    .venv/bin/python benchmarks/learning.py [--seeds 0 1 2] [--parallel 2] [--heldout_seed S] [-- RECIPE OVERRIDES]

Per seed, one process runs the default recipe (`flywheel train`'s, with any overrides after ``--``):

* (a) warm start only: the recipe's warm start, then held-out accuracy of that model;
* (b) warm start + self-play: the recipe's self-play steps from (a)'s weights; held-out accuracy at the end,
  and the self-play wall time T;
* (c) warm start + the same wall time T of more supervised data: from (a)'s weights, new warm-start examples
  (drawn with another seed; building them counts in T) trained at the warm-start learning rate until T is up.

Each arm's model is scored with `flywheel.train.evaluate.evaluate` (greedy, the run's own scoring path) on two
sets of the same size:

* held-out: `flywheel.envs.heldout.heldout_tasks` with the recipe's `heldout_per_family` (or `--per_family`)
  and the run's seed, exactly the set `flywheel train` reports as ``eval/heldout``; `--heldout_seed` draws
  another set (a validation draw, for tuning, so that the reported set is never tuned on);
* in distribution: solver tasks of the warm start's own generators (drawn with another seed) that the warm
  start did not train on, so a gain here without one on the held-out set is learning that does not transfer.

Printed: per seed the accuracies (overall and per family), the minutes of each phase and the late-run
learnability per family (`run_health.late_figures` over the second half of the steps); then per arm and set
the mean and sample standard deviation over seeds, and the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

from run_health import late_figures  # beside this file in benchmarks/

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ARMS = ("warm_start", "self_play", "more_warm_start")
SETS = ("heldout", "in_distribution")
IN_DISTRIBUTION_SEED = 2_000_003
"""Offset of the in-distribution draw's seed from the run's (the control arm's examples use 1_000_003)."""


def accuracy(trainer: Any, task_sets: dict[str, list], config: Any) -> dict[str, dict[str, float]]:
    """Greedy accuracy per set, overall and per family, through the evaluation path of `flywheel train`."""
    from flywheel.train.evaluate import evaluate

    report = evaluate(
        trainer.agent,
        trainer.game.families,
        task_sets,
        max_new_tokens=config.eval_max_new_tokens or config.max_solver_completion_length,
        seed=config.seed,
    )
    return {
        source: {"all": summary["accuracy"], **{name: e["accuracy"] for name, e in summary["per_family"].items()}}
        for source, summary in report.summary["per_source"].items()
    }


def in_distribution_tasks(trainer: Any, config: Any, per_family: int) -> list:
    """Up to `per_family` distinct solver tasks per family from the warm start's generators, drawn with another
    seed, none of them a task the warm start trained on (its examples rebuilt as `warm_up` builds them)."""
    from flywheel.train.warmup import build_examples

    families, agent = trainer.game.families, trainer.agent
    trained = {
        e.task.task_id
        for e in build_examples(
            families, agent, config.warm_start_examples, config.k_references, config.seed, config.roles
        )
    }
    trained |= {task.task_id for family in families.values() for task in family.seed_tasks()}
    drawn = build_examples(
        families, agent, 4 * per_family * len(families), 2, config.seed + IN_DISTRIBUTION_SEED, roles=("solve",)
    )
    tasks: dict[str, dict[str, Any]] = {name: {} for name in families}
    for example in drawn:
        mine = tasks[example.family]
        if example.task.task_id not in trained and len(mine) < per_family:
            mine.setdefault(example.task.task_id, example.task)
    return [task for mine in tasks.values() for task in mine.values()]


def one_seed(seed: int, per_family: int | None, heldout_seed: int | None, overrides: list[str]) -> dict[str, Any]:
    """The three arms for one seed, in this process."""
    from flywheel.agents import configure_threads
    from flywheel.envs.heldout import heldout_tasks
    from flywheel.train.run import build_trainer, parse_config
    from flywheel.train.warmup import build_examples, train_format

    work = tempfile.mkdtemp(prefix=f"flywheel-learning-{seed}-")
    config = parse_config(
        ["--output_dir", work, "--seed", str(seed), "--report_to", "none", "--save_strategy", "no", *overrides]
    )
    per_family = per_family or config.heldout_per_family
    # The arms are evaluated here, outside the timed phases; the run's own evaluation is switched off.
    config.heldout_per_family, config.eval_files = 0, []
    configure_threads(config.torch_threads)
    start = time.monotonic()
    trainer = build_trainer(config, None)
    warm_seconds = time.monotonic() - start
    families = trainer.game.families
    tasks = heldout_tasks(families, per_family, seed)
    if heldout_seed is not None:  # a validation draw: another seed, without the tasks of the reported set
        reported = {task.task_id for task in tasks}
        tasks = [task for task in heldout_tasks(families, per_family, heldout_seed) if task.task_id not in reported]
    task_sets = {"heldout": tasks, "in_distribution": in_distribution_tasks(trainer, config, per_family)}
    warm_weights = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
    result: dict[str, Any] = {"seed": seed, "warm_start_minutes": warm_seconds / 60}
    result["tasks"] = {name: len(task_set) for name, task_set in task_sets.items()}
    result["warm_start"] = accuracy(trainer, task_sets, config)

    start = time.monotonic()
    trainer.train()
    self_play_seconds = time.monotonic() - start
    result["self_play"] = accuracy(trainer, task_sets, config)
    result["self_play_minutes"] = self_play_seconds / 60
    late = late_figures(Path(work), share=0.5)
    result["late_learnability"] = {name: late.get(name, {}).get("learnability", 0.0) for name in families}

    trainer.model.load_state_dict(warm_weights)
    start = time.monotonic()
    examples = build_examples(
        families, trainer.agent, config.warm_start_examples, config.k_references, seed + 1_000_003, config.roles
    )
    steps = train_format(
        trainer.model,
        trainer.processing_class,
        examples,
        steps=10**9,
        batch_size=config.warm_start_batch_size,
        learning_rate=config.warm_start_learning_rate,
        seed=seed,
        seconds=self_play_seconds - (time.monotonic() - start),
    )
    result["more_warm_start"] = accuracy(trainer, task_sets, config)
    result["more_warm_start_minutes"] = (time.monotonic() - start) / 60
    result["more_warm_start_steps"] = len(steps)
    trainer.game.close()
    return result


def run_seed(seed: int, options: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """`one_seed` in a child process (so seeds can run side by side); its JSON result."""
    out = Path(options.logs) / f"seed{seed}.json"
    command = [sys.executable, __file__, "--one", str(seed), "--json", str(out)]
    if options.per_family:
        command += ["--per_family", str(options.per_family)]
    if options.heldout_seed is not None:
        command += ["--heldout_seed", str(options.heldout_seed)]
    with open(Path(options.logs) / f"seed{seed}.log", "w") as log:
        subprocess.run([*command, "--", *overrides], check=True, stdout=log, stderr=subprocess.STDOUT)
    return json.loads(out.read_text())


def spread(values: list[float]) -> str:
    return f"{fmean(values):.3f} ± {stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def report(results: list[dict[str, Any]], loads: tuple[float, float]) -> None:
    families = [name for name in results[0]["warm_start"]["heldout"] if name != "all"]

    def cells(figures: dict[str, float]) -> str:
        return f"{figures['all']:.3f} (" + ", ".join(f"{figures[f]:.3f}" for f in families) + ")"

    print("\nper seed: accuracy (all, then per family); minutes; late learnability per family")
    for r in results:
        print(f"seed {r['seed']}:")
        for name in SETS:
            print(f"    {name:16s}" + "  ".join(f"{arm} {cells(r[arm][name])}" for arm in ARMS))
        learn = ", ".join(f"{f} {r['late_learnability'][f]:.2f}" for f in families)
        print(
            f"    minutes: warm start {r['warm_start_minutes']:.1f}, self-play {r['self_play_minutes']:.1f}, more warm "
            f"start {r['more_warm_start_minutes']:.1f} ({r['more_warm_start_steps']} steps); tasks {r['tasks']}; "
            f"learnability {learn}"
        )
    for name in SETS:
        print(f"\n{name}: arm ({', '.join(families)}) -> accuracy, mean ± sd over {len(results)} seeds")
        for arm in ARMS:
            overall = spread([r[arm][name]["all"] for r in results])
            per_family = ", ".join(f"{f} {spread([r[arm][name][f] for r in results])}" for f in families)
            print(f"({'abc'[ARMS.index(arm)]}) {arm:16s} {overall}   [{per_family}]")
        gains = [r["self_play"][name]["all"] - r["warm_start"][name]["all"] for r in results]
        versus = [r["self_play"][name]["all"] - r["more_warm_start"][name]["all"] for r in results]
        print(f"self-play gain over warm start: {spread(gains)}; over (c): {spread(versus)}")
    print(f"\nload average (1 min) at start {loads[0]:.1f}, at end {loads[1]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="seeds run side by side (2 cores: at most 2)")
    parser.add_argument("--per_family", type=int, default=None, help="held-out tasks per family (recipe's default)")
    parser.add_argument("--heldout_seed", type=int, default=None, help="draw the held-out set with this seed")
    parser.add_argument("--logs", default=None, help="folder for each seed's log and result (default: a new one)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    options = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if options.one is not None:
        result = one_seed(options.one, options.per_family, options.heldout_seed, overrides)
        Path(options.json).write_text(json.dumps(result))
        return
    options.logs = options.logs or tempfile.mkdtemp(prefix="flywheel-learning-")
    Path(options.logs).mkdir(parents=True, exist_ok=True)
    print(f"logs in {options.logs}", flush=True)
    start_load = os.getloadavg()[0]
    with ThreadPoolExecutor(max_workers=options.parallel) as pool:
        results = list(pool.map(lambda seed: run_seed(seed, options, overrides), options.seeds))
    report(results, (start_load, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
