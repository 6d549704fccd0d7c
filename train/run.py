"""`flywheel train`: parse a recipe, set up the game and the policy, train, checkpoint, resume.

    flywheel train                                   # the laptop recipe shipped with the package
    flywheel train --config recipes/gpu.yaml         # any recipe ...
    flywheel train --max_steps 3 --output_dir /tmp/x # ... with command-line overrides
    flywheel train --output_dir /tmp/x --resume      # continue the latest checkpoint of a run

Recipes are parsed the way TRL parses its own: `trl.TrlParser` over `FlywheelConfig`, YAML values as
defaults and command-line flags on top.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml
from flywheel.train.config import FlywheelConfig
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import TrlParser

if TYPE_CHECKING:
    from flywheel.envs.rails import Rails
    from flywheel.verifiers.sandbox.config import SandboxConfig

DEFAULT_RECIPE = "laptop.yaml"
WARM_START_DIR = "warm-start"
"""Where a fresh run saves the warm-started model (`flywheel eval --model OUTPUT_DIR/warm-start`)."""


class RecipeError(ValueError):
    """A recipe or command line that cannot be run, reported without a traceback."""


def default_recipe() -> Path:
    return Path(str(files("flywheel.recipes") / DEFAULT_RECIPE))


class RecipeParser(TrlParser):
    """TRL's recipe parser over `FlywheelConfig`: usage errors are one-line `RecipeError`s, and ``--help`` lists
    Flywheel's own options first, in their own group, then TRL's and transformers'."""

    def __init__(self) -> None:
        super().__init__(
            (FlywheelConfig,),
            prog="flywheel train",
            usage="flywheel train [--config RECIPE.yaml] [--OPTION VALUE ...]",
            description="Self-play training. --config RECIPE.yaml (default: the laptop recipe) sets every option "
            "below; options on the command line win.",
        )
        own = set(inspect.get_annotations(FlywheelConfig))
        inherited = self._optionals
        inherited.title = "TRL GRPOConfig and transformers TrainingArguments options"
        flywheel = self.add_argument_group("Flywheel options (self-play, warm start, evaluation, run directory)")
        for action in [action for action in inherited._group_actions if action.dest in own]:
            inherited._group_actions.remove(action)
            flywheel._group_actions.append(action)
        self._action_groups.remove(flywheel)
        self._action_groups.insert(0, flywheel)

    def error(self, message: str) -> NoReturn:
        raise RecipeError(message)


def parse_config(argv: Sequence[str]) -> FlywheelConfig:
    """Parse `--config RECIPE.yaml` (default: the laptop recipe) plus `--key value` overrides."""
    argv = list(argv)
    if "--config" not in argv:
        argv = ["--config", str(default_recipe()), *argv]
    position = argv.index("--config") + 1
    if position == len(argv):
        raise RecipeError("--config needs a recipe file")
    settings = read_recipe(Path(argv[position]))
    try:
        (config,) = RecipeParser().parse_args_and_config(argv)
    except (ValueError, TypeError) as error:
        raise RecipeError(str(error)) from error
    if settings.get("warmup_steps") and "warm_start_steps" not in settings:
        warnings.warn(
            f"recipe {argv[position]} sets warmup_steps ({settings['warmup_steps']}): that is transformers' "
            "learning-rate warm-up of self-play; the supervised warm start is warm_start_steps (once named "
            "warmup_steps)",
            stacklevel=2,
        )
    return config


def read_recipe(path: Path) -> dict[str, Any]:
    """The recipe's settings; an unreadable file or invalid YAML is a `RecipeError` naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"cannot read recipe {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        settings = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise RecipeError(
            f"recipe {path} is not valid YAML{where}: {getattr(error, 'problem', None) or error}"
        ) from None
    if settings is not None and not isinstance(settings, dict):
        raise RecipeError(f"recipe {path} must be a mapping of settings (key: value lines)")
    return settings or {}


def resolve_checkpoint(config: FlywheelConfig) -> str | None:
    """The complete checkpoint to continue from, or None for a fresh run (refusing a directory holding a run)."""
    from flywheel.train.rundir import complete_checkpoints, is_complete

    output_dir = Path(config.output_dir)
    if config.resume_from_checkpoint:
        checkpoint = Path(config.resume_from_checkpoint)
        if not checkpoint.is_dir():
            raise RecipeError(f"checkpoint {checkpoint} does not exist")
        if not is_complete(checkpoint):
            raise RecipeError(f"checkpoint {checkpoint} is incomplete (its save was interrupted); choose another")
        return str(checkpoint)
    found = complete_checkpoints(output_dir)
    if config.resume:
        if not found:
            raise RecipeError(
                f"--resume: no {PREFIX_CHECKPOINT_DIR}-* directory with a complete checkpoint in {output_dir}"
            )
        skipped = sorted(set(output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")) - set(found))
        if skipped:
            names = ", ".join(path.name for path in skipped)
            print(
                f"flywheel train: skipping incomplete checkpoints ({names}); resuming {found[-1].name}", file=sys.stderr
            )
        return str(found[-1])
    if found:
        raise RecipeError(
            f"{output_dir} already holds a run; pass --resume to continue it or choose another --output_dir"
        )
    return None


def prepare_run_dir(config: FlywheelConfig, checkpoint: str | None) -> None:
    """Under the run's lock: clear what killed saves left; on resume, restore the task store from the checkpoint
    and cut TensorBoard events back to its step; on a fresh start, set aside what an unfinished start left.
    Then write the recipe of this start."""
    from flywheel.train.metrics import recipe_yaml
    from flywheel.train.rundir import (
        EVENTS_DIR,
        RECIPE_FILE,
        clear_leftovers,
        resumed_step,
        set_aside_unfinished,
        truncate_events,
    )
    from flywheel.train.selfplay import STORE_FILE, StoreCopyError, restore_store
    from flywheel.train.trainer import EVAL_HISTORY_FILE

    output_dir = Path(config.output_dir)
    clear_leftovers(output_dir)
    if checkpoint is None:
        run_files = [f"{STORE_FILE}*", EVENTS_DIR, WARM_START_DIR, EVAL_HISTORY_FILE, RECIPE_FILE, "README.md"]
        aside = set_aside_unfinished(output_dir, run_files)
        if aside is not None:
            print(
                f"flywheel train: an earlier start left no checkpoint; its files are kept in {aside}", file=sys.stderr
            )
    else:
        try:
            restore_store(Path(checkpoint) / STORE_FILE, output_dir / STORE_FILE)
        except StoreCopyError as error:
            raise RecipeError(f"cannot resume from {checkpoint}: {error}") from None
        truncate_events(output_dir, resumed_step(checkpoint))
    (output_dir / RECIPE_FILE).write_text(recipe_yaml(config), encoding="utf-8")


def build_trainer(
    config: FlywheelConfig, checkpoint: str | None, guards: Any = None, callbacks: Sequence[Any] = ()
) -> Any:
    """The trainer with its game: task store in the run dir (restored from `checkpoint`), families, policy;
    `guards` (`flywheel.train.guards.Guards`) and extra `callbacks` attached."""
    from accelerate import PartialState
    from flywheel.agents import load_policy
    from flywheel.envs import make_family
    from flywheel.envs.buffer import TaskStore
    from flywheel.envs.resources import SharedVerifiers
    from flywheel.train.selfplay import STORE_FILE, SelfPlay
    from flywheel.train.trainer import FlywheelTrainer, GracefulInterrupt

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    processes = PartialState()
    if config.save_on_each_node and processes.num_processes > 1:
        raise RecipeError(
            "save_on_each_node is not supported: the main process alone holds the task store, so checkpoints "
            "need an output_dir that every machine sees"
        )
    rails = config.rails_config()
    verifiers = SharedVerifiers(sandbox_config(rails, config.sandbox_workers), rails.math_settings())
    family_configs = config.family_configs or {}
    families = {name: make_family(name, family_configs.get(name), verifiers, rails) for name in config.families}
    eval_sets, real_tasks = held_out_and_real_tasks(config, families, verifiers)
    eval_families = {
        name: make_family(name, family_configs.get(name), verifiers, rails)
        for name in sorted({task.family for tasks in eval_sets.values() for task in tasks} - set(families))
    }
    # Every input is read: only now does the run directory change (a failed resume leaves it as it was).
    main = processes.is_main_process
    if main:
        prepare_run_dir(config, checkpoint)
    processes.wait_for_everyone()
    # The main process alone opens the task store; the others hold a follower game (docs/training.md).
    game = SelfPlay(
        families,
        TaskStore(output_dir / STORE_FILE, create=checkpoint is None) if main else None,
        config.reward_config(),
        buffer_capacity=config.buffer_capacity,
        k_references=config.k_references,
        seed=config.seed,
        rails=rails,
    )
    if checkpoint is not None:
        game.load_state(checkpoint)
        if main:
            _log_rails_override(game, output_dir, checkpoint, resume_rails_changes(config, checkpoint))
    elif main:
        game.seed_buffers(config.seed_files)

    dtype = (config.model_init_kwargs or {}).get("dtype", "float32")
    model, tokenizer = load_policy(config.model_name_or_path, dtype=dtype, device="cpu" if config.use_cpu else None)
    if checkpoint is None and config.warm_start_steps > 0:
        from flywheel.train.warmup import warm_up

        warm_up(model, tokenizer, families, config)
        if main:
            model.save_pretrained(output_dir / WARM_START_DIR)
            tokenizer.save_pretrained(output_dir / WARM_START_DIR)
        processes.wait_for_everyone()
    if config.beta != 0.0 and (output_dir / WARM_START_DIR).is_dir():
        # TRL builds the KL reference from `config._name_or_path`: the warm-started model, not the one it started
        # from (on resume too, where the policy's weights then come from the checkpoint).
        model.config._name_or_path = str(output_dir / WARM_START_DIR)
    peft_config = None
    if config.use_peft:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            target_modules=config.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    trainer = FlywheelTrainer(
        model,
        config,
        game,
        tokenizer,
        callbacks=[GracefulInterrupt(), *callbacks],
        peft_config=peft_config,
        eval_sets=eval_sets,
        eval_families=eval_families,
        real_tasks=real_tasks,
        guards=guards,
    )
    return trainer


def sandbox_config(rails: Rails, workers: int | None = None, processes_here: int | None = None) -> SandboxConfig:
    """The rails' sandbox settings with `workers` slots (the recipe's `sandbox_workers`) or, by default, this
    process's share of the machine's: all processes on a machine (`processes_here`, default torchrun's
    ``LOCAL_WORLD_SIZE``) together get two per core."""
    from flywheel.verifiers.sandbox.config import SandboxConfig, default_workers

    if workers is None:
        if processes_here is None:
            processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        workers = default_workers(processes_here)
    return rails.sandbox_config(SandboxConfig(workers=workers))


def resume_rails_changes(config: FlywheelConfig, checkpoint: str) -> list[str]:
    """How the recipe's rails differ from those `checkpoint` was saved under (`name: old -> new`; none when
    the checkpoint predates stored rails)."""
    from flywheel.envs.rails import RAILS_FILE, Rails

    stored = Path(checkpoint) / RAILS_FILE
    if not stored.is_file():
        return []
    try:
        saved = Rails.from_json(stored.read_text())
    except (ValueError, KeyError, TypeError) as error:
        raise RecipeError(f"{stored} is unreadable: {error}") from None
    return saved.differences(config.rails_config())


def _log_rails_override(game: Any, output_dir: Path, checkpoint: str, changes: Sequence[str]) -> None:
    """Record a resume under other rails (`--override_rails`) in the ledger and as TensorBoard text."""
    if not changes:
        return
    from flywheel.train.rundir import EVENTS_DIR
    from torch.utils.tensorboard import SummaryWriter

    result = {"event": "rails_override", "checkpoint": str(checkpoint), "changes": list(changes)}
    game.store.record(game.step, "rails", "", "--override_rails", "\n".join(changes), result)
    text = f"Resumed from {checkpoint} under other rails (--override_rails):\n\n" + "\n".join(
        f"* {change}" for change in changes
    )
    with SummaryWriter(log_dir=str(output_dir / EVENTS_DIR / "selfplay")) as writer:
        writer.add_text("rails/override", text, game.step + 1)


def held_out_and_real_tasks(
    config: FlywheelConfig, families: Mapping[str, Any], verifiers: Any
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The held-out sets {source: tasks} (the built-in one as ``heldout``, then `eval_files` by file name) and
    the real tasks {family: tasks} of `real_task_files`, whose families must be played."""
    from flywheel.envs.task_files import TaskFileError, read_task_file
    from flywheel.train.evaluate import source_names

    eval_sets: dict[str, list[Any]] = {}
    if config.heldout_per_family > 0:
        from flywheel.envs.heldout import SOURCE, heldout_tasks

        eval_sets[SOURCE] = heldout_tasks(families, config.heldout_per_family, config.seed)
    real_tasks: dict[str, list[Any]] = {}
    try:
        for name, path in zip(source_names(config.eval_files, reserved=eval_sets), config.eval_files, strict=True):
            eval_sets[name] = read_task_file(path, verifiers=verifiers)
        for path in config.real_task_files:
            for task in read_task_file(path, verifiers=verifiers):
                real_tasks.setdefault(task.family, []).append(task)
    except TaskFileError as error:
        raise RecipeError(str(error)) from None
    unplayed = sorted(set(real_tasks) - set(families))
    if unplayed:
        raise RecipeError(
            f"real_task_files hold tasks of families that are not played: {unplayed}; add them to families"
        )
    return eval_sets, real_tasks


def main(argv: Sequence[str] | None = None, callbacks: Sequence[Any] = ()) -> int:
    """Entry point of `flywheel train`; returns the exit status (0 done, 130 interrupted, 2 bad recipe or a run
    directory in use). Errors raised by family code are not input errors: they keep their traceback. `callbacks`
    are added to the trainer (as `_train` does)."""
    from accelerate import PartialState
    from flywheel.train.rundir import RunDirectoryBusy, RunDirectoryLock

    try:
        config = parse_config(sys.argv[1:] if argv is None else argv)
    except RecipeError as error:
        print(f"flywheel train: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(None)
    lock = RunDirectoryLock(config.output_dir) if PartialState().is_main_process else None
    try:
        if lock is not None:
            lock.acquire()
        return _train(config, callbacks)
    except (RecipeError, RunDirectoryBusy, OSError) as error:  # OSError: a missing or unreadable input file
        print(f"flywheel train: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(config.output_dir)
    finally:
        if lock is not None:
            lock.release()


def _train(config: FlywheelConfig, callbacks: Sequence[Any] = ()) -> int:
    """Set up (under the run directory's lock) and train, again from a checkpoint after each guard rollback;
    the exit status. `callbacks` are added to every session's trainer."""
    from accelerate import PartialState
    from flywheel.agents import configure_threads
    from flywheel.train.guards import Guards
    from flywheel.train.trainer import GracefulInterrupt

    checkpoint = resolve_checkpoint(config)
    changes = resume_rails_changes(config, checkpoint) if checkpoint is not None else []
    if changes and not config.override_rails:
        raise RecipeError(
            f"the recipe's rails differ from those of {checkpoint} ({'; '.join(changes)}); a run keeps its rails. "
            "Resume with the checkpoint's rails, or pass --override_rails to continue under the new ones (logged)"
        )
    configure_threads(config.torch_threads)
    guards = Guards(config.guards_config(), config.seed)
    main = PartialState().is_main_process
    while True:
        trainer = build_trainer(config, checkpoint, guards, callbacks)
        interrupt = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GracefulInterrupt))
        try:
            trainer.train(resume_from_checkpoint=checkpoint)
            if guards.rollback is None and not interrupt.requested:
                trainer.save_model()
                trainer.create_model_card()
        finally:
            trainer.game.close()
        if guards.rollback is None or interrupt.requested:
            break
        checkpoint = str(guards.prepare_rollback(config.output_dir))
        if main:
            print(f"flywheel train: a guard rolled the run back to {checkpoint}", file=sys.stderr)
    if not main:
        return 130 if interrupt.requested else 0
    if trainer.eval_history:
        from flywheel.train.evaluate import format_comparison

        print(format_comparison(trainer.eval_history[0], trainer.eval_history[-1]))
    if interrupt.requested:
        print(
            f"flywheel train: interrupted at step {trainer.state.global_step}; checkpoint saved in {config.output_dir}."
            " "
            f"Continue with: flywheel train --output_dir {config.output_dir} --resume",
            file=sys.stderr,
        )
        return 130
    print(f"flywheel train: done, {trainer.state.global_step} steps; run directory {config.output_dir}")
    return 0


def _interrupted(output_dir: str | None) -> int:
    """Ctrl-C outside the graceful path (during setup, the warm start, or a second Ctrl-C): say what is kept."""
    from flywheel.train.rundir import latest_checkpoint

    checkpoint = latest_checkpoint(output_dir) if output_dir is not None else None
    then = (
        f"the run continues from {checkpoint.name} with: flywheel train --output_dir {output_dir} --resume"
        if checkpoint is not None
        else "no checkpoint was written; the same command starts the run again"
    )
    print(f"\nflywheel train: interrupted; work since the last checkpoint is lost, {then}", file=sys.stderr)
    return 130
