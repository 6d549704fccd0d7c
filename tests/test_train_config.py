"""Recipes parse through the same TrlParser path as `flywheel train` and give valid configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from flywheel.train.config import FlywheelConfig
from flywheel.train.run import RecipeError, default_recipe, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_gpu_recipe_is_valid_without_loading_the_model() -> None:
    config = parse_config(["--config", str(REPO / "recipes" / "gpu.yaml")])
    raw = yaml.safe_load((REPO / "recipes" / "gpu.yaml").read_text())
    assert config.model_name_or_path == "Qwen/Qwen2.5-Coder-1.5B"
    assert raw["bf16"] is True  # on this CPU-only machine the config forces bf16 off; the file asks for it
    assert len(config.families) == 6 and config.advantage_estimator == "trr++"
    assert config.rollouts_per_step == 6 * (8 + 8) * 4
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == config.rollouts_per_step
    assert config.generation_batch_size % config.num_generations == 0


def test_laptop_recipe_is_the_packaged_default_and_cpu_safe() -> None:
    assert default_recipe().read_text() == (REPO / "recipes" / "laptop.yaml").read_text()
    config = parse_config(["--max_steps", "3"])
    assert config.max_steps == 3 and config.model_name_or_path == "flywheel/tiny"
    assert config.learning_rate > 1e-4, "a from-scratch tiny model needs far more than TRL's 1e-6"
    import torch

    if not torch.cuda.is_available():
        assert config.use_cpu and not config.bf16


def test_command_line_overrides_the_recipe() -> None:
    config = parse_config(["--families", "math_deduction", "--n_solver_samples", "3", "--learnability", "peaked"])
    assert config.families == ["math_deduction"] and config.n_solver_samples == 3
    assert config.reward_config().learnability == "peaked"


def test_settings_of_families_not_played_are_dropped() -> None:
    """The laptop recipe configures math_deduction; playing only code_deduction must still parse."""
    config = parse_config(["--families", "code_deduction"])
    assert config.families == ["code_deduction"] and not config.family_configs
    played = parse_config([])
    assert played.family_configs["math_deduction"]["operations"] == ["evaluate", "expand", "factor", "differentiate"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--families", "nope"], "unknown families"),
        (["--roles", "judge"], "roles"),
        (["--solver_correct", "-2"], "solver_correct"),
        (["--gradient_accumulation_steps", "7"], "does not divide"),
        (["--seed_files", "code_deduction"], "FAMILY=PATH"),
        (["--template", "fancy"], "template"),
        (["--family_configs", '{"nope": {}}'], "unknown families"),
    ],
)
def test_broken_configs_are_clear_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_config(argv)


def test_every_flywheel_field_has_help() -> None:
    from dataclasses import fields

    from trl import GRPOConfig

    own = {f.name for f in fields(FlywheelConfig)} - {f.name for f in fields(GRPOConfig)}
    undocumented = [f.name for f in fields(FlywheelConfig) if f.name in own and not f.metadata.get("help")]
    assert not undocumented
