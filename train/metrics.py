"""The self-play curriculum in TensorBoard: per-family scalars, solve-rate histograms, sample text, a
custom-scalars layout and the HParams summary.

Flywheel's scalars go through TRL's metric log (`FlywheelTrainer._log_step` appends to `self._metrics`), so they
are averaged over `logging_steps`; `SelfPlayTensorBoard.on_log` writes them under their own ``selfplay/...``
names, beside their histograms, while TRL's and transformers' own metrics keep the ``train/`` prefix. Histograms
and text panels are written directly with the same `SummaryWriter`, in one fixed run directory
(``output_dir/runs/selfplay``) that a resumed run keeps using. Every tag is documented in the README
("TensorBoard: logged metrics"); tests/test_train_e2e.py checks the two agree.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import yaml
from flywheel.envs.buffer import AddResult, TaskBuffer
from flywheel.envs.gate import DUPLICATE, STRUCTURE_QUOTA
from flywheel.envs.parsing import FormatError, extract_answer
from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback

if TYPE_CHECKING:
    from flywheel.envs.scoring import Answer, Proposal
    from flywheel.train.config import FlywheelConfig

SELFPLAY_PREFIX = "selfplay/"
"""Flywheel's own scalars; TensorBoard shows them under this name, TRL's under ``train/``."""
TEXT_SAMPLES = 4
"""Proposals and answers per family shown in the text panel."""
RECIPE_TRL_FIELDS = (
    "learning_rate",
    "num_generations",
    "max_steps",
    "beta",
    "num_iterations",
    "loss_type",
    "scale_rewards",
    "temperature",
    "seed",
    "use_vllm",
)


@dataclass
class StepRecord:
    """Everything one self-play step produced, for metrics, text panels and step hooks.

    With several processes, the main process's record holds the whole step (every process's proposals,
    answers, rewards, advantages and completion lengths, and the buffers); the others' hold the global rewards,
    groups, keys, advantages and completion lengths only (no proposals, answers or buffers)."""

    step: int
    families: list[str]
    proposals: list[Proposal] = field(default_factory=list)
    estimates: list[Answer] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    added: dict[str, AddResult] = field(default_factory=dict)
    rewards: list[float] = field(default_factory=list)
    groups: list[Hashable] = field(default_factory=list)
    """Per rollout, the group its advantage baseline is computed over: its prompt under ``grpo``, its
    family x role key under ``trr++`` (what ``no_signal_group_share`` counts)."""
    keys: list[str] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)
    completion_lengths: list[int] = field(default_factory=list)
    buffer_sizes: dict[str, int] = field(default_factory=dict)
    diversity: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per family, the buffer's diversity after the step (`buffer_diversity`), as ``diversity/...`` scalars."""
    repeated_structures: dict[str, int] = field(default_factory=dict)
    """Per family, the step's admitted tasks whose structure an earlier buffer task has (near-duplicates)."""
    real_task_ids: dict[str, set[str]] = field(default_factory=dict)
    """Per family that has real tasks (`real_task_files`), the ids of the real tasks among its solver tasks."""
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    known_reasons: dict[str, set[str]] = field(default_factory=dict)
    """Per family, the rejection reasons seen so far in the run (shared with the trainer, updated by
    `remember_reasons`): written as 0 at steps where they do not occur, so curves have no gaps."""

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] += time.perf_counter() - start

    def added_count(self, family: str) -> int:
        result = self.added.get(family)
        return result.added if result is not None else 0

    def _by_key(self, values: list[Any], key: str) -> list[Any]:
        return [value for value, k in zip(values, self.keys, strict=True) if k == key]

    def _no_signal(self, key: str) -> float:
        members: dict[Hashable, list[float]] = defaultdict(list)
        for reward, group, k in zip(self.rewards, self.groups, self.keys, strict=True):
            if k == key:
                members[group].append(reward)
        return fmean(float(max(v) - min(v) < 1e-9) for v in members.values())

    def scalars(self) -> dict[str, float]:
        """Scalar metrics keyed by tag (without TRL's ``train/`` prefix). Means over an empty set are left out."""
        out: dict[str, float] = {"selfplay/step": float(self.step)}
        for name in self.families:
            prefix = f"selfplay/{name}"
            proposals = [p for p in self.proposals if p.family == name]
            if proposals:
                valid = [p for p in proposals if p.task is not None]
                out[f"{prefix}/propose/valid_rate"] = len(valid) / len(proposals)
                reasons = Counter(p.result.reason for p in proposals if p.task is None)
                for reason in sorted(set(reasons) | self.known_reasons.get(name, set())):
                    out[f"{prefix}/propose/reject/{reason}"] = reasons[reason] / len(proposals)
                out[f"{prefix}/propose/reward_mean"] = fmean(p.reward for p in proposals)
                out[f"{prefix}/propose/new_task_rate"] = self.added_count(name) / len(proposals)
                key = f"{name}/propose"
                out[f"{prefix}/propose/completion_len"] = fmean(self._by_key(self.completion_lengths, key))
                out[f"{prefix}/propose/no_signal_group_share"] = self._no_signal(key)
                if valid or reasons[DUPLICATE]:
                    # Duplicates are the data gate's rejections: the share of otherwise valid proposals they make.
                    out[f"{prefix}/propose/duplicate_rate"] = reasons[DUPLICATE] / (len(valid) + reasons[DUPLICATE])
                repeats = reasons[DUPLICATE] + reasons[STRUCTURE_QUOTA]
                if valid or repeats:
                    near = repeats + self.repeated_structures.get(name, 0)
                    out[f"{prefix}/diversity/near_duplicate_rate"] = near / (len(valid) + repeats)
                if valid:
                    out[f"{prefix}/propose/solve_rate_mean"] = fmean(p.solve_rate or 0.0 for p in valid)
                    out[f"{prefix}/propose/learnability_mean"] = fmean(p.reward for p in valid)
                    out[f"{prefix}/propose/complexity_mean"] = fmean(p.complexity or 0 for p in valid)
            answers = [a for a in self.answers if a.family == name]
            if answers:
                key = f"{name}/solve"
                out[f"{prefix}/diversity/answer_diversity"] = answer_diversity(answers)
                out[f"{prefix}/solve/accuracy"] = fmean(float(a.verdict.correct) for a in answers)
                out[f"{prefix}/solve/format_error_rate"] = fmean(
                    float(a.verdict.status == "format_error") for a in answers
                )
                out[f"{prefix}/solve/reward_mean"] = fmean(a.reward for a in answers)
                out[f"{prefix}/solve/completion_len"] = fmean(self._by_key(self.completion_lengths, key))
                out[f"{prefix}/solve/no_signal_group_share"] = self._no_signal(key)
                if name in self.real_task_ids:
                    real = [a for a in answers if a.task.task_id in self.real_task_ids[name]]
                    out[f"{prefix}/solve/real_share"] = len(real) / len(answers)
                    if real:
                        out[f"{prefix}/solve/real_accuracy"] = fmean(float(a.verdict.correct) for a in real)
            if name in self.buffer_sizes:
                out[f"{prefix}/buffer_size"] = float(self.buffer_sizes[name])
            for stat, value in self.diversity.get(name, {}).items():
                out[f"{prefix}/diversity/{stat}"] = value
        if self.proposals:
            out["selfplay/propose/valid_rate"] = fmean(float(p.task is not None) for p in self.proposals)
        if self.answers:
            out["selfplay/solve/accuracy"] = fmean(float(a.verdict.correct) for a in self.answers)
        for name, seconds in self.timings.items():
            out[f"selfplay/time/{name}"] = seconds
        return out

    def remember_reasons(self) -> None:
        """Add this step's rejection reasons to `known_reasons`."""
        for p in self.proposals:
            if p.task is None:
                self.known_reasons.setdefault(p.family, set()).add(p.result.reason)

    def solve_rates(self, family: str) -> list[float]:
        """Estimated solve rates of this step's valid proposals of `family`."""
        return [p.solve_rate or 0.0 for p in self.proposals if p.family == family and p.task is not None]

    def task_solve_rates(self, family: str) -> list[float]:
        """Per solver task of `family`: the share of its num_generations answers that were correct."""
        correct: dict[str, list[float]] = defaultdict(list)
        for answer in self.answers:
            if answer.family == family:
                correct[answer.task.task_id].append(float(answer.verdict.correct))
        return [fmean(values) for values in correct.values()]

    def prompt_texts(self) -> list[str]:
        return [p.prompt.text for p in self.proposals] + [a.prompt.text for a in self.answers]

    def completion_texts(self) -> list[str]:
        return [p.text for p in self.proposals] + [a.text for a in self.answers]

    def samples_markdown(self) -> str:
        """A few proposals and answers per family, as Markdown for the text panel."""
        lines = [f"### Self-play step {self.step}"]
        for name in self.families:
            lines.append(f"\n#### {name}")
            for p in [p for p in self.proposals if p.family == name][:TEXT_SAMPLES]:
                status = (
                    f"valid, solve rate {p.solve_rate:.2f}" if p.task is not None else f"rejected: {p.result.reason}"
                )
                lines.append(f"- **proposal** ({status}, reward {p.reward:+.2f}):\n\n{fenced(p.text[:800])}")
            for a in [a for a in self.answers if a.family == name][:TEXT_SAMPLES]:
                lines.append(
                    f"- **answer** ({a.verdict.status}, reward {a.reward:+.2f}) to task `{a.task.task_id}`:\n\n"
                    f"{fenced(a.text[:800])}"
                )
        return "\n".join(lines)


def buffer_diversity(buffer: TaskBuffer, window: int) -> dict[str, float]:
    """Structure diversity of a buffer's proposed tasks (seeds have no structure key and are left out), from
    SQL counts: the share of distinct structures over the buffer and over its newest `window` such tasks, and the
    entropy (bits) of the buffer's structure distribution. Empty while no proposed task is stored."""
    counts = buffer.structure_counts()
    total = sum(counts.values())
    if not total:
        return {}
    recent = buffer.structure_counts(newest=window)
    return {
        "distinct_structures": len(counts) / total,
        "recent_distinct_structures": len(recent) / sum(recent.values()),
        "structure_entropy": -sum(n / total * math.log2(n / total) for n in counts.values()),
    }


def answer_diversity(answers: Sequence[Answer]) -> float:
    """Mean over solver tasks of distinct normalised answers (the final answer with whitespace collapsed;
    unreadable answers are one answer) per answer given to that task."""
    groups: dict[str, list[str]] = defaultdict(list)
    for answer in answers:
        try:
            normalised = " ".join(extract_answer(answer.text).split())
        except FormatError:
            normalised = ""
        groups[answer.task.task_id].append(normalised)
    return fmean(len(set(group)) / len(group) for group in groups.values())


def fenced(text: str, info: str = "") -> str:
    """`text` as a Markdown code block that nothing in it can close (the fence is longer than any backtick run
    in it), so TensorBoard shows model text as inert text, never as markup, links or images."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def recipe_yaml(args: FlywheelConfig) -> str:
    """The Flywheel fields and the main TRL fields of a run, as YAML."""
    recipe = {**args.selfplay_fields(), **{name: getattr(args, name) for name in RECIPE_TRL_FIELDS}}
    return yaml.safe_dump(recipe, sort_keys=True)


def scalar_layout(families: Sequence[str]) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars layout (TensorBoard's "Custom Scalars" tab): one section per family with its propose
    and solve charts, then totals, timing, held-out evaluation and guards. Chart entries are tag regexes."""

    def chart(*patterns: str) -> list[Any]:
        return ["Multiline", list(patterns)]

    layout: dict[str, dict[str, list[Any]]] = {}
    for name in families:
        p = re.escape(f"selfplay/{name}")
        layout[f"family {name}"] = {
            "propose: valid rate and rejections": chart(f"{p}/propose/valid_rate$", f"{p}/propose/reject/"),
            "propose: solve rate and learnability": chart(
                f"{p}/propose/solve_rate_mean$", f"{p}/propose/learnability_mean$"
            ),
            "propose: reward": chart(f"{p}/propose/reward_mean$"),
            "propose: new tasks and duplicates": chart(f"{p}/propose/new_task_rate$", f"{p}/propose/duplicate_rate$"),
            "propose: complexity": chart(f"{p}/propose/complexity_mean$"),
            "solve: accuracy and format errors": chart(
                f"{p}/solve/accuracy$", f"{p}/solve/format_error_rate$", f"{p}/solve/real_"
            ),
            "solve: reward": chart(f"{p}/solve/reward_mean$"),
            "buffer size": chart(f"{p}/buffer_size$"),
            "no-signal baseline groups": chart(f"{p}/propose/no_signal", f"{p}/solve/no_signal"),
            "completion length": chart(f"{p}/propose/completion_len$", f"{p}/solve/completion_len$"),
            "held-out accuracy": chart(f"eval/[^/]+/{re.escape(name)}/accuracy$"),
            "diversity: structures and near-duplicates": chart(
                f"{p}/diversity/distinct_structures$",
                f"{p}/diversity/recent_distinct_structures$",
                f"{p}/diversity/near_duplicate_rate$",
                f"{p}/propose/duplicate_rate$",
            ),
            "diversity: entropies and answers": chart(
                f"{p}/diversity/structure_entropy$", f"{p}/diversity/answer_diversity$", "train/entropy$"
            ),
        }
    layout["totals"] = {
        "valid rate and accuracy": chart("selfplay/propose/valid_rate$", "selfplay/solve/accuracy$"),
        "reward": chart("train/reward$", "train/reward_std$"),
        "loss and gradient norm": chart("train/loss$", "train/grad_norm$"),
        "warm-start loss": chart("warm_start/loss$"),
    }
    layout["timing"] = {
        "seconds per step, by phase": chart("selfplay/time/"),
        "seconds per optimizer step": chart("train/step_time$"),
    }
    layout["held-out"] = {"accuracy": chart("eval/[^/]+/accuracy$"), "by family": chart("eval/[^/]+/[^/]+/accuracy$")}
    layout["guards"] = {"guards": chart("guard/")}
    return layout


HPARAM_METRICS = ("selfplay/propose/valid_rate", "selfplay/solve/accuracy", "train/reward")
"""Final figures every run reports to the HParams plugin (plus each ``eval/{source}/accuracy`` written)."""


def hparam_values(args: FlywheelConfig) -> dict[str, bool | int | float | str]:
    """The recipe (Flywheel fields and the main TRL fields) as HParams values: lists, mappings and None as JSON."""
    recipe = {**args.selfplay_fields(), **{name: getattr(args, name) for name in RECIPE_TRL_FIELDS}}
    return {
        name: value if isinstance(value, bool | int | float | str) else json.dumps(value, sort_keys=True, default=str)
        for name, value in recipe.items()
    }


class SelfPlayTensorBoard(TensorBoardCallback):
    """TRL's TensorBoard callback pinned to one run directory (kept on resume)
    that also writes the recipe, histograms and sample text."""

    def __init__(self, run_dir: Path, args: FlywheelConfig) -> None:
        super().__init__()
        self.logging_dir = str(run_dir)
        self.args = args
        self.eval_tags: set[str] = set()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir)
        if state.global_step > 0:
            # Resumed: `flywheel.train.rundir.truncate_events` dropped the events written after the checkpoint
            # and the first session's step-0 panels (args, model config, layout) stay; this session's recipe
            # goes to its first step, which no event holds yet, so no tag gets two values for one step.
            self.tb_writer.add_text("hparams/recipe", fenced(recipe_yaml(self.args), "yaml"), state.global_step + 1)
            return
        super().on_train_begin(args, state, control, **kwargs)
        self.tb_writer.add_text("hparams/recipe", fenced(recipe_yaml(self.args), "yaml"), 0)
        self.tb_writer.add_custom_scalars(scalar_layout(self.args.families))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Flywheel's ``selfplay/...`` metrics under their own names; the rest as TRL writes them (``train/...``)."""
        logs = logs or {}
        ours = {tag: value for tag, value in logs.items() if tag.startswith(SELFPLAY_PREFIX)}
        if state.is_world_process_zero and self.tb_writer is not None:
            for tag, value in ours.items():
                self.tb_writer.add_scalar(tag, value, state.global_step)
        rest = {tag: value for tag, value in logs.items() if tag not in ours}
        super().on_log(args, state, control, logs=rest, **kwargs)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Send the recipe and the names of the final figures to the HParams plugin, then close the writer."""
        if self.tb_writer is not None:
            from torch.utils.tensorboard.summary import hparams

            metrics = [*HPARAM_METRICS, *sorted(self.eval_tags)]
            for summary in hparams(hparam_values(self.args), dict.fromkeys(metrics, 0.0)):
                self.tb_writer.file_writer.add_summary(summary, state.global_step)
        super().on_train_end(args, state, control, **kwargs)

    def write_step(self, record: StepRecord, global_step: int, text_every: int) -> None:
        if self.tb_writer is None:
            return
        for name in record.families:
            if rates := record.solve_rates(name):
                self.tb_writer.add_histogram(f"selfplay/{name}/propose/solve_rate", np.array(rates), global_step)
            if rates := record.task_solve_rates(name):
                self.tb_writer.add_histogram(f"selfplay/{name}/solve/task_solve_rate", np.array(rates), global_step)
        if record.advantages:
            self.tb_writer.add_histogram("selfplay/advantages", np.array(record.advantages), global_step)
        if text_every > 0 and (record.step == 1 or record.step % text_every == 0):
            self.tb_writer.add_text("selfplay/samples", record.samples_markdown(), global_step)

    def scalar(self, tag: str, value: float, global_step: int) -> None:
        if re.fullmatch(r"eval/[^/]+/accuracy", tag):
            self.eval_tags.add(tag)
        if self.tb_writer is not None:
            self.tb_writer.add_scalar(tag, value, global_step)
            self.tb_writer.flush()


class SelfPlayProgress(TrainerCallback):
    """A progress bar with the step, ETA, mean reward, solver accuracy and proposal valid rate
    (replaces transformers' bar, which prints every logged dict)."""

    POSTFIX: ClassVar[dict[str, str]] = {
        "reward": "reward",
        "selfplay/solve/accuracy": "solve_acc",
        "selfplay/propose/valid_rate": "valid",
        "loss": "loss",
    }

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="self-play", dynamic_ncols=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.bar is not None and logs:
            shown = {
                label: f"{logs[key]:.3g}" for key, label in self.POSTFIX.items() if isinstance(logs.get(key), float)
            }
            self.bar.set_postfix(shown, refresh=True)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
