"""Guards: triggers on the run's metrics and the actions they take (warn, adjust, rollback, stop).

The `guards` section of a recipe (`GuardsConfig`) lists triggers, each a metric tag (``{family}`` stands for
every played family), a condition (``above`` x, ``below`` y, or ``drop``: more than δ below its best so far)
and a window (the mean of the metric's last `window` values). The metric may be any scalar a step writes
(``selfplay/...``), TRL's latest ``train/...`` value (``train/entropy``) or a held-out ``eval/...`` figure
(one value per evaluation). When a trigger fires, its window starts again and its action runs:

- ``warn``: a warning;
- ``adjust``: raise the sampling temperature and the duplicate penalty by their steps, within the recipe's bounds;
- ``rollback``: stop this session and continue from the checkpoint with the best ``best_metric`` (or the last
  one), among those saved before the trigger's window began, through the resume path: model, optimizer,
  scheduler, trainer state, RNG, task store and self-play counters, then a new sampling seed; at most
  `max_rollbacks` times, then ``stop``;
- ``stop``: save a checkpoint and stop.

Every trigger and action is a ledger row of role ``guard`` and ``guard/...`` TensorBoard scalars and text.
The ledger is the guards' memory: a resumed run (or one rolled back, which keeps the guard rows of the steps it
abandons) reads its rollbacks and adjustments from those rows.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

from flywheel.train.metrics import SELFPLAY_PREFIX, fenced
from flywheel.train.selfplay import STATE_FILE, STORE_FILE
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

if TYPE_CHECKING:
    from flywheel.envs.buffer import TaskStore
    from flywheel.train.trainer import FlywheelTrainer

ACTIONS = ("warn", "adjust", "rollback", "stop")
ROLLBACK_TARGETS = ("best", "last")
GUARD_ROLE = "guard"
"""Ledger role of guard rows."""
ROLLED_BACK_PREFIX = "rolled-back-"
"""Checkpoints newer than a rollback's target are moved into ``OUTPUT_DIR/rolled-back-STAMP/``, never deleted."""
FAMILY = "{family}"

logger = logging.get_logger("flywheel.train")


@dataclass
class Trigger:
    """One condition on one metric (per family when the tag holds ``{family}``) and the action it takes."""

    metric: str = field(
        metadata={
            "help": "Metric tag: a selfplay/... scalar ({family} = every played family), train/... (TRL's latest "
            "value, e.g. train/entropy) or eval/... (one value per held-out evaluation)."
        }
    )
    above: float | None = field(default=None, metadata={"help": "Fire when the window's mean exceeds this."})
    below: float | None = field(default=None, metadata={"help": "Fire when the window's mean falls below this."})
    drop: float | None = field(
        default=None, metadata={"help": "Fire when the window's mean is more than this below the best value so far."}
    )
    window: int = field(default=1, metadata={"help": "Values averaged (steps; evaluations for eval/... metrics)."})
    action: str = field(default="warn", metadata={"help": f"What to do when it fires: one of {ACTIONS}."})
    name: str = field(
        default="",
        metadata={"help": "Name in guard/trigger/{name} (default: the tag's last part); the family is appended."},
    )

    def validate(self) -> None:
        conditions = [c for c in (self.above, self.below, self.drop) if c is not None]
        if len(conditions) != 1:
            raise ValueError(f"guard on {self.metric!r} needs exactly one of above, below, drop")
        if not all(isinstance(c, int | float) and math.isfinite(c) for c in conditions):
            raise ValueError(f"guard on {self.metric!r}: the threshold must be a finite number, not {conditions[0]!r}")
        if self.drop is not None and self.drop < 0:
            raise ValueError(f"guard on {self.metric!r}: drop must be at least 0, not {self.drop}")
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 1:
            raise ValueError(f"guard on {self.metric!r}: window must be an integer of at least 1, not {self.window!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"guard on {self.metric!r}: action must be one of {ACTIONS}, not {self.action!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]*", self.name):
            raise ValueError(f"guard name {self.name!r} may hold only letters, digits, '_', '.' and '-'")

    def label(self, family: str) -> str:
        """The trigger's name in ``guard/trigger/{label}``."""
        base = self.name or self.metric.replace(FAMILY, "").strip("/").rsplit("/", 1)[-1]
        return f"{base}.{family}" if family else base

    def condition(self) -> str:
        if self.above is not None:
            return f"mean of last {self.window} > {self.above}"
        if self.below is not None:
            return f"mean of last {self.window} < {self.below}"
        return f"mean of last {self.window} more than {self.drop} below its best"

    def fires(self, window: Sequence[float], best: float) -> bool:
        if len(window) < self.window:
            return False
        mean = fmean(window)
        if self.above is not None:
            return mean > self.above
        if self.below is not None:
            return mean < self.below
        return best - mean > self.drop


DEFAULT_TRIGGERS = ({"metric": "selfplay/{family}/propose/duplicate_rate", "above": 0.9, "action": "warn"},)
"""Without a `guards` section: warn when a family's proposals are mostly duplicates (no other action)."""


@dataclass
class GuardsConfig:
    """The `guards` section of a recipe (JSON on the command line)."""

    triggers: list[Trigger] = field(
        default_factory=lambda: [Trigger(**t) for t in DEFAULT_TRIGGERS],
        metadata={"help": "Triggers: {metric, above|below|drop, window, action, name}."},
    )
    max_rollbacks: int = field(default=1, metadata={"help": "Most rollbacks in a run; a rollback beyond it stops."})
    rollback_to: str = field(
        default="best",
        metadata={
            "help": "'best': the checkpoint with the highest best_metric (falls back to 'last' without one); "
            "'last': the newest checkpoint. Either way only checkpoints saved before the trigger's window began."
        },
    )
    best_metric: str = field(
        default="eval/heldout/accuracy", metadata={"help": "Held-out figure (eval_history) that ranks checkpoints."}
    )
    temperature_step: float = field(default=0.1, metadata={"help": "adjust: raise the sampling temperature by this."})
    temperature_max: float = field(default=1.5, metadata={"help": "adjust: never beyond this temperature."})
    duplicate_penalty_step: float = field(
        default=0.25, metadata={"help": "adjust: raise the duplicate penalty (duplicate_penalty) by this."}
    )
    duplicate_penalty_max: float = field(default=1.0, metadata={"help": "adjust: never beyond this penalty."})

    def validate(self) -> None:
        for trigger in self.triggers:
            trigger.validate()
        if self.rollback_to not in ROLLBACK_TARGETS:
            raise ValueError(f"guards.rollback_to must be one of {ROLLBACK_TARGETS}, not {self.rollback_to!r}")
        numbers = ("temperature_step", "temperature_max", "duplicate_penalty_step", "duplicate_penalty_max")
        for name in ("max_rollbacks", *numbers):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"guards.{name} must be a number of at least 0, not {value!r}")
        if not isinstance(self.max_rollbacks, int):
            raise ValueError(f"guards.max_rollbacks must be an integer, not {self.max_rollbacks!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> GuardsConfig:
        """Guards from a recipe's `guards` mapping (missing keys take their defaults); validated."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"guards: unknown settings {unknown}; known: {sorted(known)}")
        if "triggers" in values:
            triggers = values["triggers"]
            if not isinstance(triggers, list) or not all(isinstance(t, dict) for t in triggers):
                raise ValueError(f"guards.triggers must be a list of mappings, not {triggers!r}")
            trigger_fields = {f.name for f in fields(Trigger)}
            for trigger in triggers:
                if "metric" not in trigger or set(trigger) - trigger_fields:
                    raise ValueError(f"guards trigger {trigger!r}: needs 'metric'; known keys {sorted(trigger_fields)}")
            values["triggers"] = [Trigger(**t) for t in triggers]
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Rollback:
    """A rollback the guards asked for: the checkpoint to continue from and the row that explains it."""

    checkpoint: Path
    event: dict[str, Any]


class Guards(TrainerCallback):
    """Checks the triggers after every self-play step (after the held-out evaluation of that step) and acts.

    One `Guards` object lives through a run's sessions: after a ``rollback`` the run builds a new trainer from
    the chosen checkpoint and attaches the same object (`flywheel.train.run`)."""

    def __init__(self, config: GuardsConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.trainer: FlywheelTrainer | None = None
        self.rollback: Rollback | None = None
        """Set when a trigger asked for a rollback; the run then continues from `rollback.checkpoint`."""
        self.rollbacks = 0
        self.temperature: float | None = None
        self.duplicate_penalty: float | None = None
        self._carried: list[tuple[int, str, str, str, str]] = []
        self._reseed: int | None = None
        self._windows: dict[tuple[int, str], deque[tuple[int, float]]] = {}
        """Per trigger and tag, the last `window` (self-play step, value) pairs."""
        self._best: dict[tuple[int, str], float] = {}
        self._seen_step = -1

    def attach(self, trainer: FlywheelTrainer) -> None:
        self.trainer = trainer

    # --- session start: the ledger's guard rows, adjustments, a new seed after a rollback -------------------
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        trainer = self._trainer()
        main = trainer.accelerator.is_main_process
        if main:
            for step, family, prompt, output, result in self._carried:
                trainer.game.store.record(step, GUARD_ROLE, family, prompt, output, json.loads(result))
        self._carried = []
        if self.rollback is not None:
            self._reseed = self.seed + 1000 * (self.rollbacks + 1)
            event = {**self.rollback.event, "seed": self._reseed}
            self.rollback = None
            self._record(event, state.global_step + 1)
        history = self._read_ledger(trainer.game.store) if main else None
        self.rollbacks, self.temperature, self.duplicate_penalty = self._trainer().from_main(history)
        self._windows, self._best, self._seen_step = {}, {}, trainer.game.step
        for entry in trainer.eval_history:
            self._observe(entry["metrics"], entry["step"])
        self._apply()

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """After a rollback, the first step reseeds (after transformers restored the checkpoint's RNG)."""
        if self._reseed is not None:
            from transformers import set_seed

            set_seed(self._reseed)
            self._trainer().game.rng.seed(self._reseed)
            self._reseed = None

    def _read_ledger(self, store: TaskStore) -> tuple[int, float | None, float | None]:
        """Rollbacks so far and the latest adjusted temperature and duplicate penalty, from the guard rows."""
        rollbacks, temperature, penalty = 0, self.temperature, self.duplicate_penalty
        for row in store.ledger(role=GUARD_ROLE):
            result = row["result"]
            rollbacks += result.get("action") == "rollback"
            if result.get("action") == "adjust":
                temperature, penalty = result["temperature"], result["duplicate_penalty"]
        return rollbacks, temperature, penalty

    def _apply(self) -> None:
        trainer = self._trainer()
        if self.temperature is not None and temperature_adjustable(trainer):
            set_temperature(trainer, self.temperature)
        if self.duplicate_penalty is not None:
            trainer.game.rewards.duplicate_penalty = self.duplicate_penalty

    # --- after each step: observe, check, act -----------------------------------------------------------
    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        trainer = self._trainer()
        record = trainer.last_record
        if record is None or record.step == self._seen_step:
            return
        self._seen_step = record.step
        values = record.scalars()
        values.update(
            {
                f"train/{k}": v[-1]
                for k, v in trainer._metrics["train"].items()
                if v and not k.startswith(SELFPLAY_PREFIX)
            }
        )
        if trainer.eval_history and trainer.eval_history[-1]["step"] == record.step:
            values.update(trainer.eval_history[-1]["metrics"])
        events = []
        for index, trigger, family, tag, since in self._observe(values, record.step):
            window = self._windows[(index, tag)]
            event = {
                "event": "guard",
                "trigger": trigger.label(family),
                "family": family,
                "metric": tag,
                "condition": trigger.condition(),
                "value": fmean(value for _, value in window),
                "action": trigger.action,
                "step": record.step,
                "since": since,
            }
            window.clear()
            events.append(event)
        for event in trainer.from_main(self._decide(events) if trainer.accelerator.is_main_process else None):
            self._act(event, state, control)

    def _observe(self, values: Mapping[str, float], step: int) -> list[tuple[int, Trigger, str, str, int]]:
        """Add the values of self-play step `step` to the trigger windows; the triggers that fire, with family,
        tag and the step of their window's first value."""
        fired = []
        families = list(self._trainer().game.families)
        for index, trigger in enumerate(self.config.triggers):
            expanded = [(f, trigger.metric.replace(FAMILY, f)) for f in families] if FAMILY in trigger.metric else []
            for family, tag in expanded or [("", trigger.metric)]:
                if tag not in values:
                    continue
                key = (index, tag)
                window = self._windows.setdefault(key, deque(maxlen=trigger.window))
                window.append((step, float(values[tag])))
                self._best[key] = max(self._best.get(key, -math.inf), float(values[tag]))
                if trigger.fires([value for _, value in window], self._best[key]):
                    fired.append((index, trigger, family, tag, window[0][0]))
        return fired

    def _decide(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Complete the fired events with what their actions will do (new temperature and penalty, the
        checkpoint, or ``stop`` where a rollback cannot be made), up to the first that ends the session."""
        trainer, config = self._trainer(), self.config
        temperature, penalty = trainer.temperature, trainer.game.rewards.duplicate_penalty
        rollbacks = self.rollbacks
        decided = []
        for event in events:
            if event["action"] == "adjust":
                if temperature_adjustable(trainer):
                    temperature = max(temperature, min(config.temperature_max, temperature + config.temperature_step))
                penalty = max(penalty, min(config.duplicate_penalty_max, penalty + config.duplicate_penalty_step))
                event.update(temperature=temperature, duplicate_penalty=penalty)
            if event["action"] == "rollback":
                checkpoint = self._rollback_target(event["since"])
                if rollbacks >= config.max_rollbacks or checkpoint is None:
                    why = "max_rollbacks reached" if checkpoint is not None else "no checkpoint before the window"
                    event.update(action="stop", note=f"rollback refused: {why}")
                else:
                    event.update(checkpoint=checkpoint.name, rolled_back_from=event["step"])
            decided.append(event)
            if event["action"] in ("rollback", "stop"):
                break
        return decided

    def _act(self, event: dict[str, Any], state: TrainerState, control: TrainerControl) -> None:
        """Carry out a decided event (every process); record it (the main process)."""
        action = event["action"]
        if action == "adjust":
            self.temperature, self.duplicate_penalty = event["temperature"], event["duplicate_penalty"]
            self._apply()
        if action in ("rollback", "stop"):
            control.should_training_stop = True
            control.should_save = action == "stop"
        if action == "rollback":
            self.rollback = Rollback(Path(self._trainer().args.output_dir) / event["checkpoint"], event)
            logger.warning(f"guard {event['trigger']}: {event['condition']} at step {event['step']}; rolling back")
        else:
            self._record(event, state.global_step)

    def _rollback_target(self, step: int) -> Path | None:
        """The checkpoint to roll back to, saved before self-play step `step` (the first of the trigger's
        window: checkpoints saved while the metric was already going wrong are passed over)."""
        trainer = self._trainer()
        best_metric = self.config.best_metric if self.config.rollback_to == "best" else None
        return ranked_checkpoint(trainer.args.output_dir, trainer.eval_history, best_metric, before_step=step)

    def kept_checkpoint(self) -> Path | None:
        """The checkpoint a rollback to the best would choose now, which checkpoint rotation must keep; None
        unless a rollback trigger targets the best."""
        if self.config.rollback_to != "best" or not any(t.action == "rollback" for t in self.config.triggers):
            return None
        trainer = self._trainer()
        return ranked_checkpoint(trainer.args.output_dir, trainer.eval_history, self.config.best_metric)

    def _record(self, event: dict[str, Any], global_step: int) -> None:
        """A ledger row of role ``guard`` and the ``guard/...`` scalars and text (main process only)."""
        trainer = self._trainer()
        if not trainer.accelerator.is_main_process:
            return
        action = event["action"]
        description = f"{event['metric']}: {event['condition']} (window mean {event['value']:.4g})"
        trainer.game.store.record(event["step"], GUARD_ROLE, event["family"], description, action, event)
        logger.warning(f"guard {event['trigger']} at step {event['step']}: {description}; {action}")
        board = trainer.tensorboard
        if board is None or board.tb_writer is None:
            return
        board.scalar(f"guard/trigger/{event['trigger']}", event["value"], global_step)
        board.scalar(f"guard/{action}", 1.0, global_step)
        if action == "adjust":
            board.scalar("guard/temperature", event["temperature"], global_step)
            board.scalar("guard/duplicate_penalty", event["duplicate_penalty"], global_step)
        if action == "rollback":
            board.scalar("guard/rollbacks", float(self.rollbacks + 1), global_step)
        board.tb_writer.add_text(
            "guard/events", fenced(json.dumps(event, indent=2, sort_keys=True), "json"), global_step
        )

    # --- between sessions: prepare the run directory for the rollback -----------------------------------
    def prepare_rollback(self, output_dir: str | Path) -> Path:
        """Before the run restores `rollback.checkpoint`: keep the live store's guard rows that the checkpoint's
        store lacks (re-recorded when the next session starts) and move newer checkpoints aside. Returns the
        checkpoint."""
        if self.rollback is None:
            raise RuntimeError("no rollback was asked for")
        output_dir, checkpoint = Path(output_dir), self.rollback.checkpoint
        if not self._trainer().accelerator.is_main_process:
            return checkpoint
        with closing(sqlite3.connect(f"file:{checkpoint / STORE_FILE}?mode=ro", uri=True)) as saved:
            last = saved.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()[0]
        with closing(sqlite3.connect(f"file:{output_dir / STORE_FILE}?mode=ro", uri=True)) as live:
            self._carried = live.execute(
                "SELECT step, family, prompt, output, result FROM ledger WHERE role = ? AND seq > ? ORDER BY seq",
                (GUARD_ROLE, last),
            ).fetchall()
        set_aside_checkpoints_after(output_dir, json.loads((checkpoint / STATE_FILE).read_text())["step"])
        return checkpoint

    def _trainer(self) -> FlywheelTrainer:
        if self.trainer is None:
            raise RuntimeError("Guards.attach(trainer) must be called first")
        return self.trainer


def ranked_checkpoint(
    output_dir: str | Path,
    eval_history: Sequence[Mapping[str, Any]],
    best_metric: str | None,
    before_step: float = math.inf,
) -> Path | None:
    """Of the complete checkpoints saved before self-play step `before_step`, the one whose step has the highest
    `best_metric` in `eval_history` (the newer on ties); the newest one when `best_metric` is None or none of
    them was evaluated; None when there is none."""
    from flywheel.train.rundir import complete_checkpoints

    saved = {}
    for checkpoint in complete_checkpoints(output_dir):
        saved_step = json.loads((checkpoint / STATE_FILE).read_text())["step"]
        if saved_step < before_step:
            saved[saved_step] = checkpoint
    if not saved:
        return None
    scores = {
        entry["step"]: entry["metrics"][best_metric]
        for entry in eval_history
        if best_metric is not None and entry["step"] in saved and best_metric in entry["metrics"]
    }
    if scores:
        return saved[max(scores, key=lambda s: (scores[s], s))]
    return saved[max(saved)]


def set_aside_checkpoints_after(output_dir: Path, step: int) -> Path | None:
    """Move the checkpoints of self-play steps after `step` (the abandoned branch) into ``rolled-back-STAMP/``."""
    from flywheel.train.rundir import complete_checkpoints

    later = [c for c in complete_checkpoints(output_dir) if json.loads((c / STATE_FILE).read_text())["step"] > step]
    if not later:
        return None
    aside = Path(tempfile.mkdtemp(prefix=time.strftime(f"{ROLLED_BACK_PREFIX}%Y%m%d-%H%M%S-"), dir=output_dir))
    for checkpoint in later:
        checkpoint.rename(aside / checkpoint.name)
    return aside


def temperature_adjustable(trainer: FlywheelTrainer) -> bool:
    """Whether the sampling temperature may change during a run: off CPU, TRL's fused LM head fixes the
    temperature its log-probs are scaled by when the trainer is built, so there ``adjust`` leaves it."""
    return trainer.accelerator.device.type == "cpu"


def set_temperature(trainer: FlywheelTrainer, temperature: float) -> None:
    """The sampling temperature of TRL's generation (and of its log-probs, which scale by it)."""
    trainer.temperature = temperature
    config = getattr(trainer, "generation_config", None)
    if config is not None:
        config.temperature = temperature
    kwargs = getattr(trainer, "generation_kwargs", None)
    if isinstance(kwargs, dict) and "temperature" in kwargs:
        kwargs["temperature"] = temperature
