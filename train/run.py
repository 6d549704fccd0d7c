"""`flywheel train`: parse a recipe, set up the game and the policy, train, checkpoint, resume.

    flywheel train                                   # the laptop recipe shipped with the package
    flywheel train --config recipes/gpu.yaml         # any recipe ...
    flywheel train --max_steps 3 --output_dir /tmp/x # ... with command-line overrides
    flywheel train --output_dir /tmp/x --resume      # continue the latest checkpoint of a run

Recipes are parsed the way TRL parses its own: `trl.TrlParser` over `FlywheelConfig`, YAML values as
defaults and command-line flags on top.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from flywheel.train.config import FlywheelConfig
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import TrlParser

DEFAULT_RECIPE = "laptop.yaml"


class RecipeError(ValueError):
    """A recipe or command line that cannot be run, reported without a traceback."""


def default_recipe() -> Path:
    return Path(str(files("flywheel.recipes") / DEFAULT_RECIPE))


def parse_config(argv: Sequence[str]) -> FlywheelConfig:
    """Parse `--config RECIPE.yaml` (default: the laptop recipe) plus `--key value` overrides."""
    argv = list(argv)
    if "--config" not in argv:
        argv = ["--config", str(default_recipe()), *argv]
    recipe = Path(argv[argv.index("--config") + 1])
    if not recipe.is_file():
        raise RecipeError(f"recipe {recipe} not found")
    try:
        (config,) = TrlParser((FlywheelConfig,)).parse_args_and_config(argv)
    except (ValueError, TypeError) as error:
        raise RecipeError(str(error)) from error
    return config


def resolve_checkpoint(config: FlywheelConfig) -> str | None:
    """The checkpoint to continue from, or None for a fresh run (refusing to overwrite an existing one)."""
    output_dir = Path(config.output_dir)
    if config.resume_from_checkpoint:
        checkpoint = Path(config.resume_from_checkpoint)
        if not checkpoint.is_dir():
            raise RecipeError(f"checkpoint {checkpoint} does not exist")
        return str(checkpoint)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if config.resume:
        if last is None:
            raise RecipeError(f"--resume: no {PREFIX_CHECKPOINT_DIR}-* directory in {output_dir}")
        return last
    from flywheel.train.selfplay import STORE_FILE

    if last is not None or (output_dir / STORE_FILE).exists():
        raise RecipeError(
            f"{output_dir} already holds a run; pass --resume to continue it or choose another --output_dir"
        )
    return None


def build_trainer(config: FlywheelConfig, checkpoint: str | None) -> Any:
    """The trainer with its game: task store in the run dir (restored from `checkpoint`), families, policy."""
    from flywheel.agents import load_policy
    from flywheel.envs import Task, make_family
    from flywheel.envs.buffer import TaskStore
    from flywheel.envs.resources import SharedVerifiers
    from flywheel.train.selfplay import STORE_FILE, SelfPlay, copy_database
    from flywheel.train.trainer import FlywheelTrainer, GracefulInterrupt, diversity_alarm, periodic_eval

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        copy_database(Path(checkpoint) / STORE_FILE, output_dir / STORE_FILE)
    verifiers = SharedVerifiers()
    family_configs = config.family_configs or {}
    families = {name: make_family(name, family_configs.get(name), verifiers) for name in config.families}
    game = SelfPlay(
        families,
        TaskStore(output_dir / STORE_FILE),
        config.reward_config(),
        buffer_capacity=config.buffer_capacity,
        k_references=config.k_references,
        seed=config.seed,
    )
    if checkpoint is not None:
        game.load_state(checkpoint)
    else:
        game.seed_buffers(config.seed_files)

    hooks = [diversity_alarm(config.diversity_alarm_duplicate_rate, config.diversity_alarm_valid_rate)]
    if config.eval_file and config.eval_every > 0:
        tasks = []
        for number, line in enumerate(Path(config.eval_file).read_text().splitlines(), 1):
            try:
                tasks += [Task.from_json(line)] if line.strip() else []
            except (ValueError, KeyError, TypeError) as error:
                raise RecipeError(f"eval_file {config.eval_file} line {number} is not a task: {error!r}") from None
        unplayed = {task.family for task in tasks} - set(families)
        if unplayed:
            raise RecipeError(f"eval_file has tasks of families that are not played: {sorted(unplayed)}")
        hooks.append(periodic_eval(tasks, config.eval_every))

    dtype = (config.model_init_kwargs or {}).get("dtype", "float32")
    model, tokenizer = load_policy(config.model_name_or_path, dtype=dtype, device="cpu" if config.use_cpu else None)
    if checkpoint is None and config.warmup_steps > 0:
        from flywheel.train.warmup import warm_up

        warm_up(model, tokenizer, families, config)
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
        model, config, game, tokenizer, callbacks=[GracefulInterrupt()], peft_config=peft_config, hooks=hooks
    )
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `flywheel train`; returns the exit status (0 done, 130 interrupted, 2 bad recipe)."""
    from flywheel.agents import configure_threads
    from flywheel.train.trainer import GracefulInterrupt

    try:
        config = parse_config(sys.argv[1:] if argv is None else argv)
        checkpoint = resolve_checkpoint(config)
    except RecipeError as error:
        print(f"flywheel train: {error}", file=sys.stderr)
        return 2
    configure_threads(config.torch_threads)
    try:
        trainer = build_trainer(config, checkpoint)
    except (RecipeError, ValueError, KeyError, OSError) as error:  # OSError: a missing eval or seed file
        print(f"flywheel train: {error}", file=sys.stderr)
        return 2
    interrupt = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GracefulInterrupt))
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except KeyboardInterrupt:
        print(
            "\nflywheel train: aborted by a second Ctrl-C; progress since the last checkpoint is lost", file=sys.stderr
        )
        return 130
    finally:
        trainer.game.close()
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
