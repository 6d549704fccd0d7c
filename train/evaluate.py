"""Evaluation on named task sets: `flywheel eval`, and the held-out evaluation of every training run.

`evaluate(model, families, task_sets, ...)` poses every task of every set {source: [Task]} to a model
(an `Agent`, or any callable from prompts to completion texts), scores each answer with the task's
``family.verify`` (the one scoring path self-play uses too) and returns an `EvalReport`: one row per
answer and a summary (accuracy overall, per source, per family, per source and family; pass@k with
several samples). `main` is the command line (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.agents import TEMPLATES, Agent
from flywheel.envs.base import Prompt, Task, TaskFamily

Generate = Callable[[Sequence[Prompt], int], list[list[str]]]
"""Solver prompts and a sample count -> per prompt, that many parser-ready completion texts."""

EVAL_PREFIX = "eval"


def agent_generator(agent: Agent, *, temperature: float, max_new_tokens: int, seed: int, batch_size: int) -> Generate:
    """`Generate` through `agent`'s model, template and tokenizer, greedy when `temperature` is 0.
    Each call uses the next seed, so chunks of one evaluation are not sampled alike."""
    sampler = Agent(
        agent.model,
        agent.tokenizer,
        template=agent.template,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=agent.top_p,
        role_preambles=agent.role_preambles,
    )
    calls = itertools.count(seed)

    def generate(prompts: Sequence[Prompt], samples: int) -> list[list[str]]:
        rendered = [sampler.render(prompt, "solve") for prompt in prompts]
        raw = sampler.generate(rendered, samples, seed=next(calls), batch_size=batch_size)
        return [[sampler.completion_text(text) for text in group] for group in raw]

    return generate


@dataclass
class EvalReport:
    """Per answer `rows` (index, sample, source, family, task_id, correct, answer, verdict, reason) and the
    `summary` (tasks, samples, correct, accuracy, pass@k, per_source, per_family, seconds)."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def metrics(self) -> dict[str, float]:
        """TensorBoard scalars: ``eval/{source}/accuracy`` and ``eval/{source}/{family}/accuracy``."""
        out = {}
        for source, entry in self.summary["per_source"].items():
            out[f"{EVAL_PREFIX}/{source}/accuracy"] = entry["accuracy"]
            for family, sub in entry["per_family"].items():
                out[f"{EVAL_PREFIX}/{source}/{family}/accuracy"] = sub["accuracy"]
        return out


def evaluate(
    model: Agent | Generate,
    families: Mapping[str, TaskFamily],
    task_sets: Mapping[str, Sequence[Task]],
    *,
    samples: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 512,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> EvalReport:
    """Answer every task `samples` times and score the answers with their family's `verify`.

    `temperature`, `max_new_tokens` and `seed` configure an `Agent` (greedy by default); a `Generate`
    callable brings its own decoding. Raises ValueError when a task's family is not in `families`, or when
    several samples of an agent are asked for at temperature 0 (they would all be the same).
    """
    from tqdm.auto import tqdm

    if samples < 1:
        raise ValueError(f"samples must be at least 1, not {samples}")
    missing = sorted({task.family for tasks in task_sets.values() for task in tasks} - set(families))
    if missing:
        raise ValueError(f"no family given for tasks of {missing}")
    if isinstance(model, Agent):
        if samples > 1 and temperature <= 0:
            raise ValueError("several samples per task need a temperature above 0")
        model = agent_generator(
            model, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size
        )
    start = time.perf_counter()
    items = [(source, index, task) for source, tasks in task_sets.items() for index, task in enumerate(tasks)]
    rows: list[dict[str, Any]] = []
    chunk = max(1, batch_size // samples)
    with tqdm(total=len(items) * samples, desc="eval", unit="answer", disable=not progress, file=sys.stderr) as bar:
        for first in range(0, len(items), chunk):
            batch = items[first : first + chunk]
            prompts = [families[task.family].solver_prompt(task) for _, _, task in batch]
            texts = model(prompts, samples)
            rows += _scored(batch, texts, families)
            bar.update(len(batch) * samples)
    return EvalReport(rows, summarize(rows, samples, time.perf_counter() - start))


def _scored(
    batch: Sequence[tuple[str, int, Task]], texts: Sequence[Sequence[str]], families: Mapping[str, TaskFamily]
) -> list[dict[str, Any]]:
    """One row per answer, in batch order; each family verifies its answers in one call."""
    answers = [
        (item, sample, text) for item, group in zip(batch, texts, strict=True) for sample, text in enumerate(group)
    ]
    verdicts: list[Any] = [None] * len(answers)
    for name in {task.family for _, _, task in batch}:
        picked = [i for i, ((_, _, task), _, _) in enumerate(answers) if task.family == name]
        found = families[name].verify([answers[i][0][2] for i in picked], [answers[i][2] for i in picked])
        for i, verdict in zip(picked, found, strict=True):
            verdicts[i] = verdict
    return [
        {
            "index": index,
            "sample": sample,
            "source": source,
            "family": task.family,
            "task_id": task.task_id,
            "correct": verdict.correct,
            "answer": text,
            "verdict": verdict.status,
            "reason": verdict.reason,
        }
        for ((source, index, task), sample, text), verdict in zip(answers, verdicts, strict=True)
    ]


def summarize(rows: Sequence[Mapping[str, Any]], samples: int, seconds: float) -> dict[str, Any]:
    """Totals of scored rows: overall, per source (with its families), per family."""
    per_source: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    per_family: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        per_source[row["source"]].append(row)
        per_family[row["family"]].append(row)
    summary = _totals(rows, samples)
    summary["samples"] = samples
    summary["per_source"] = {
        source: {
            **_totals(members, samples),
            "per_family": {
                family: _totals([row for row in members if row["family"] == family], samples)
                for family in sorted({row["family"] for row in members})
            },
        }
        for source, members in per_source.items()
    }
    summary["per_family"] = {family: _totals(per_family[family], samples) for family in sorted(per_family)}
    summary["seconds"] = round(seconds, 3)
    return summary


def _totals(rows: Sequence[Mapping[str, Any]], samples: int) -> dict[str, Any]:
    """tasks, correct answers, accuracy (share of correct answers) and, with several samples, pass@k (share
    of tasks answered correctly at least once in k = samples tries)."""
    by_task: dict[tuple[str, int], bool] = defaultdict(bool)
    for row in rows:
        key = (row["source"], row["index"])
        by_task[key] = by_task[key] or row["correct"]
    correct = sum(bool(row["correct"]) for row in rows)
    totals: dict[str, Any] = {
        "tasks": len(by_task),
        "correct": correct,
        "accuracy": correct / len(rows) if rows else 0.0,
    }
    if samples > 1:
        totals[f"pass@{samples}"] = sum(by_task.values()) / len(by_task) if by_task else 0.0
    return totals


# ------------------------------------------------------------------------------------------- tables


def format_table(summary: Mapping[str, Any]) -> str:
    """Accuracy per source and family, then the total, as aligned text."""
    lines = [f"{'source':<28} {'family':<18} {'tasks':>6} {'accuracy':>9}"]
    for source, entry in summary["per_source"].items():
        for family, sub in entry["per_family"].items():
            lines.append(f"{source:<28} {family:<18} {sub['tasks']:>6} {sub['accuracy']:>9.3f}")
        if len(entry["per_family"]) > 1:
            lines.append(f"{source:<28} {'(all)':<18} {entry['tasks']:>6} {entry['accuracy']:>9.3f}")
    lines.append(f"{'total':<28} {'':<18} {summary['tasks']:>6} {summary['accuracy']:>9.3f}")
    pass_at = f"pass@{summary['samples']}"
    if pass_at in summary:
        lines.append(f"{pass_at}: {summary[pass_at]:.3f}")
    return "\n".join(lines)


def format_comparison(first: Mapping[str, Any], last: Mapping[str, Any]) -> str:
    """Held-out accuracy of two `eval_history` entries (warm start and end) and the difference, per
    source and family."""
    lines = [f"{'held-out set':<40} {'step ' + str(first['step']):>10} {'step ' + str(last['step']):>10} {'change':>8}"]
    for tag, before in first["metrics"].items():
        after = last["metrics"].get(tag)
        if after is None:
            continue
        name = tag.removeprefix(f"{EVAL_PREFIX}/").removesuffix("/accuracy")
        lines.append(f"{name:<40} {before:>10.3f} {after:>10.3f} {after - before:>+8.3f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- command line


def source_names(paths: Iterable[str], reserved: Iterable[str] = ()) -> list[str]:
    """A source name per task file: its name without ``.jsonl`` / ``.json`` / ``.gz``, made unique."""
    taken = set(reserved)
    names = []
    for path in paths:
        stem = Path(path).name.removesuffix(".gz").removesuffix(".jsonl").removesuffix(".json") or "tasks"
        name, number = stem, 2
        while name in taken:
            name, number = f"{stem}-{number}", number + 1
        taken.add(name)
        names.append(name)
    return names


def resolve_model(name_or_path: str) -> str:
    """A run directory means its final model (saved into it at the end of training); a run without one
    (interrupted) falls back to its latest complete checkpoint. Anything else is returned as it is."""
    from flywheel.train.rundir import latest_checkpoint

    path = Path(name_or_path)
    if not path.is_dir() or (path / "config.json").is_file():
        return name_or_path
    checkpoint = latest_checkpoint(path)
    if checkpoint is None:
        return name_or_path
    print(f"flywheel eval: {path} holds no final model; using its latest checkpoint {checkpoint}", file=sys.stderr)
    return str(checkpoint)


def training_recipe(model_path: str) -> tuple[Path, dict[str, Any]] | None:
    """The recipe of the run a model comes from: ``recipe.yaml`` beside it (a run's final model) or one folder
    up (its ``warm-start/`` and ``checkpoint-N/``), with where it was found; None for any other model.
    Raises ValueError for a file that is not a YAML mapping."""
    import yaml
    from flywheel.train.rundir import RECIPE_FILE

    path = Path(model_path)
    for candidate in (path / RECIPE_FILE, path.parent / RECIPE_FILE):
        if path.is_dir() and candidate.is_file():
            try:
                recipe = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except yaml.YAMLError as error:
                raise ValueError(f"{candidate} is not valid YAML: {error}") from None
            if not isinstance(recipe, dict):
                raise ValueError(f"{candidate} is not a recipe (a YAML mapping)")
            return candidate, recipe
    return None


def run_prompting(
    model_path: str,
    family_names: Iterable[str],
    verifiers: Any = None,
    *,
    template: str | None = None,
    terse_prompts: bool = False,
) -> tuple[str, dict[str, TaskFamily], Path | None]:
    """The template and the families (with their settings) that render prompts for a model as its training run
    did (`training_recipe`; `auto` and default settings for a model from no run), `template` and `terse_prompts`
    overriding the run's; and the recipe file they come from, if any. Raises ValueError for a broken recipe."""
    from flywheel.envs import make_family

    found = training_recipe(model_path)
    path, recipe = found if found is not None else (None, {})
    family_configs = recipe.get("family_configs") or {}
    families = {}
    for name in sorted(set(family_names)):
        settings = dict(family_configs.get(name) or {})
        if terse_prompts:
            settings["terse_prompts"] = True
        families[name] = make_family(name, settings or None, verifiers)
    return template or recipe.get("template") or "auto", families, path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flywheel eval", description="Evaluate a model on task files with the families' verifiers."
    )
    parser.add_argument("--model", required=True, help="flywheel/tiny, a hub id, a local model folder or a run dir")
    parser.add_argument("--tasks", action="append", required=True, metavar="FILE", help="JSONL task file (repeat)")
    parser.add_argument("--limit", type=int, default=None, help="read only the first N rows of each file")
    parser.add_argument("--samples", type=int, default=1, help="answers per task (pass@k for k > 1)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (the default) decodes greedily")
    parser.add_argument("--max_new_tokens", type=int, default=512, help="most new tokens per answer")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--mode", choices=["deduction", "abduction"], default="deduction", help="for code rows")
    parser.add_argument("--batch_size", type=int, default=32, help="answers generated per batch")
    parser.add_argument(
        "--template",
        choices=list(TEMPLATES),
        default=None,
        help="prompt template (default: the training run's, for a model from a run directory; else auto)",
    )
    parser.add_argument(
        "--terse_prompts",
        action="store_true",
        help="prompts without their instructions, for a model trained with terse_prompts (a model from a run "
        "directory gets its run's family settings, terse_prompts included, without this flag)",
    )
    parser.add_argument("--output", default=None, help="write the JSON lines here instead of stdout")
    return parser


def main(argv: Sequence[str]) -> int:
    """`flywheel eval`: 0 when every file was evaluated, 2 (with a message) when one could not be."""
    from flywheel.agents import configure_threads, load_policy
    from flywheel.envs.resources import SharedVerifiers
    from flywheel.envs.task_files import TaskFileError, load_task_file

    args = _parser().parse_args(list(argv))
    if (
        args.samples < 1
        or args.batch_size < 1
        or args.max_new_tokens < 1
        or (args.limit is not None and args.limit < 1)
    ):
        print(
            "flywheel eval: --samples, --batch_size, --max_new_tokens and --limit must be at least 1", file=sys.stderr
        )
        return 2
    if args.samples > 1 and args.temperature <= 0:
        print("flywheel eval: --samples above 1 needs --temperature above 0", file=sys.stderr)
        return 2
    configure_threads()
    with SharedVerifiers() as verifiers:
        task_sets, unusable = {}, {}
        for name, path in zip(source_names(args.tasks), args.tasks, strict=True):
            try:
                loaded = load_task_file(path, mode=args.mode, verifiers=verifiers, limit=args.limit)
            except TaskFileError as error:
                print(f"flywheel eval: {error}", file=sys.stderr)
                return 2
            for row in loaded.unusable:
                print(f"flywheel eval: {path} line {row.line}: not used: {row.reason}", file=sys.stderr)
            task_sets[name], unusable[name] = loaded.tasks, len(loaded.unusable)
        model_path = resolve_model(args.model)
        try:
            model, tokenizer = load_policy(model_path)
        except OSError as error:
            print(f"flywheel eval: cannot load model {args.model!r}: {error}", file=sys.stderr)
            return 2
        names = {task.family for tasks in task_sets.values() for task in tasks}
        try:
            template, families, recipe = run_prompting(
                model_path, names, verifiers, template=args.template, terse_prompts=args.terse_prompts
            )
        except ValueError as error:
            print(f"flywheel eval: {error}", file=sys.stderr)
            return 2
        if recipe is not None:
            print(f"flywheel eval: prompts rendered as the training run's {recipe} says", file=sys.stderr)
        agent = Agent(model, tokenizer, template=template)
        report = evaluate(
            agent,
            families,
            task_sets,
            samples=args.samples,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=True,
        )
    report.summary["unusable_rows"] = unusable
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        for row in report.rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.write(json.dumps(report.summary) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    print(format_table(report.summary), file=sys.stderr)
    return 0
