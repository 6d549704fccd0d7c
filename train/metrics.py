"""The self-play curriculum in TensorBoard: per-family scalars, solve-rate histograms, sample text.

Scalars go through TRL's metric log (`FlywheelTrainer._log_step` appends to `self._metrics`), so they are
averaged over `logging_steps` and written by the TensorBoard callback as ``train/<tag>``. Histograms and
text panels are written directly with the same `SummaryWriter`, in one fixed run directory
(``output_dir/runs/selfplay``) that a resumed run keeps using. Every tag is documented in
the README ("TensorBoard: logged metrics"); tests/test_train_e2e.py checks the two agree.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import yaml
from flywheel.envs.buffer import AddResult
from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback

if TYPE_CHECKING:
    from flywheel.train.config import FlywheelConfig
    from flywheel.train.selfplay import Answer, Proposal

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
    """Everything one self-play step produced, for metrics, text panels and step hooks."""

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
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))

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
                for reason, count in sorted(reasons.items()):
                    out[f"{prefix}/propose/reject/{reason}"] = count / len(proposals)
                out[f"{prefix}/propose/reward_mean"] = fmean(p.reward for p in proposals)
                out[f"{prefix}/propose/new_task_rate"] = self.added_count(name) / len(proposals)
                key = f"{name}/propose"
                out[f"{prefix}/propose/completion_len"] = fmean(self._by_key(self.completion_lengths, key))
                out[f"{prefix}/propose/no_signal_group_share"] = self._no_signal(key)
                if valid:
                    out[f"{prefix}/propose/solve_rate_mean"] = fmean(p.solve_rate or 0.0 for p in valid)
                    out[f"{prefix}/propose/learnability_mean"] = fmean(p.reward for p in valid)
                    out[f"{prefix}/propose/duplicate_rate"] = self.added[name].duplicates / len(valid)
                    out[f"{prefix}/propose/complexity_mean"] = fmean(p.complexity or 0 for p in valid)
            answers = [a for a in self.answers if a.family == name]
            if answers:
                key = f"{name}/solve"
                out[f"{prefix}/solve/accuracy"] = fmean(float(a.verdict.correct) for a in answers)
                out[f"{prefix}/solve/format_error_rate"] = fmean(
                    float(a.verdict.status == "format_error") for a in answers
                )
                out[f"{prefix}/solve/reward_mean"] = fmean(a.reward for a in answers)
                out[f"{prefix}/solve/completion_len"] = fmean(self._by_key(self.completion_lengths, key))
                out[f"{prefix}/solve/no_signal_group_share"] = self._no_signal(key)
            if name in self.buffer_sizes:
                out[f"{prefix}/buffer_size"] = float(self.buffer_sizes[name])
        if self.proposals:
            out["selfplay/propose/valid_rate"] = fmean(float(p.task is not None) for p in self.proposals)
        if self.answers:
            out["selfplay/solve/accuracy"] = fmean(float(a.verdict.correct) for a in self.answers)
        for name, seconds in self.timings.items():
            out[f"selfplay/time/{name}"] = seconds
        return out

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
                lines.append(f"- **proposal** ({status}, reward {p.reward:+.2f}):\n\n```\n{p.text[:800]}\n```")
            for a in [a for a in self.answers if a.family == name][:TEXT_SAMPLES]:
                lines.append(
                    f"- **answer** ({a.verdict.status}, reward {a.reward:+.2f}) to task `{a.task.task_id}`:\n\n"
                    f"```\n{a.text[:800]}\n```"
                )
        return "\n".join(lines)


def recipe_yaml(args: FlywheelConfig) -> str:
    """The Flywheel fields and the main TRL fields of a run, as YAML."""
    recipe = {**args.selfplay_fields(), **{name: getattr(args, name) for name in RECIPE_TRL_FIELDS}}
    return yaml.safe_dump(recipe, sort_keys=True)


class SelfPlayTensorBoard(TensorBoardCallback):
    """TRL's TensorBoard callback pinned to one run directory (kept on resume, later events purged)
    that also writes the recipe, histograms and sample text."""

    def __init__(self, run_dir: Path, args: FlywheelConfig) -> None:
        super().__init__()
        self.logging_dir = str(run_dir)
        self.args = args

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        # On resume, purge_step hides events a previous session wrote after the resumed checkpoint.
        purge_step = state.global_step + 1 if state.global_step > 0 else None
        self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir, purge_step=purge_step)
        super().on_train_begin(args, state, control, **kwargs)
        self.tb_writer.add_text("hparams/recipe", f"```yaml\n{recipe_yaml(self.args)}```", state.global_step)

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
