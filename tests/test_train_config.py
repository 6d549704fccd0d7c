"""Recipes parse through the same TrlParser path as `flywheel train` and give valid configs."""

from __future__ import annotations

import re
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
    """The laptop recipe configures code_deduction and math_deduction; playing code_abduction must still parse."""
    config = parse_config(["--families", "code_abduction"])
    assert config.families == ["code_abduction"] and not config.family_configs
    played = parse_config([])
    assert played.family_configs["math_deduction"]["operations"] == ["evaluate", "expand", "factor", "differentiate"]
    assert all(played.family_configs[name]["terse_prompts"] for name in played.families)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--families", "nope"], "unknown families"),
        (["--roles", "judge"], "roles"),
        (["--solver_correct", "-2"], "solver_correct"),
        (["--gradient_accumulation_steps", "7"], "does not divide"),
        (["--seed_files", "code_deduction"], "FAMILY=PATH"),
        (["--template", "fancy"], "template"),
        (["--family_configs", '{"nope": {}}'], r"family_configs names unknown families: \['nope'\]"),
        (["--family_configs", "{not json"], "family_configs is not valid JSON"),
        (["--family_configs", '{"math_deduction": {"operations": ["nope"]}}'], r"family_configs\[math_deduction\]"),
        (["--family_configs", '{"math_deduction": {"colour": 1}}'], "unknown settings"),
        (["--max_solver_completion_length", "-5"], "max_solver_completion_length must be at least 1, not -5"),
        (["--k_references", "-1"], "k_references must be at least 0"),
        (["--guards", '{"triggers": [{"metric": "train/entropy"}]}'], "needs exactly one of above, below, drop"),
        (["--guards", '{"triggers": [{"metric": "x", "below": 1, "action": "panic"}]}'], "action must be one of"),
        (["--guards", '{"max_rollbacks": -1}'], "guards.max_rollbacks must be a number of at least 0"),
        (["--guards", "{oops"], "guards is not valid JSON"),
        (["--sandbox_workers", "0"], "sandbox_workers must be at least 1, not 0"),
        (["--sandbox_workers", "65"], "sandbox_workers: .*workers must be an integer from 1 to 64, not 65"),
    ],
)
def test_broken_configs_are_clear_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_config(argv)


def test_family_configs_as_json_on_the_command_line() -> None:
    argv = ["--families", "math_deduction", "--family_configs", '{"math_deduction": {"operations": ["expand"]}}']
    config = parse_config(argv)
    assert config.families == ["math_deduction"]
    assert config.family_configs == {"math_deduction": {"operations": ["expand"]}}


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            "families: [code_deduction\nlearning_rate: 0.1\n",
            "is not valid YAML at line 2, column 14: expected ',' or ']'",
        ),
        ("max_solver_completion_length: -5\n", "max_solver_completion_length must be at least 1, not -5"),
        ("families: code_deduction\n", r"families must be a list, e.g. \[code_deduction\], not the string"),
        ("proposer_batch_size: 1.5\n", "proposer_batch_size must be an integer, not 1.5"),
        ("n_solver_samples: many\n", "argument --n_solver_samples.*invalid int value: 'many'"),
        ("warm_start_learning_rate: .inf\n", "warm_start_learning_rate must be a finite number"),
        ("use_peft: maybe\n", "argument --use_peft.*Truthy value expected"),
        ("use_peft: 3\n", "use_peft must be a boolean, not 3"),
        ("roles: [propose, 3]\n", "roles must be a list of strings"),
        ("- just\n- a list\n", "must be a mapping of settings"),
    ],
)
def test_bad_recipe_files_are_clear_errors(tmp_path: Path, recipe: str, message: str) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    with pytest.raises(RecipeError, match=message):
        parse_config(["--config", str(path)])


@pytest.mark.parametrize(
    ("recipe", "message"),
    [("/proc/self/mem", "cannot read recipe /proc/self/mem"), ("DIR", "cannot read recipe"), ("MISSING", "not found")],
)
def test_unreadable_recipes_exit_2_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recipe: str, message: str
) -> None:
    from flywheel.train.run import main

    recipe = {"DIR": str(tmp_path), "MISSING": str(tmp_path / "missing.yaml")}.get(recipe, recipe)
    assert main(["--config", recipe, "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_every_flywheel_field_has_help() -> None:
    from dataclasses import fields

    from trl import GRPOConfig

    own = {f.name for f in fields(FlywheelConfig)} - {f.name for f in fields(GRPOConfig)}
    undocumented = [f.name for f in fields(FlywheelConfig) if f.name in own and not f.metadata.get("help")]
    assert not undocumented


def test_help_lists_flywheel_options_first_and_keeps_trl_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_status:
        parse_config(["--help"])
    assert exit_status.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: flywheel train [--config RECIPE.yaml]")
    flywheel, trl = text.index("Flywheel options"), text.index("TRL GRPOConfig and transformers")
    assert flywheel < text.index("--proposer_batch_size") < text.index("--warm_start_steps") < trl
    assert trl < text.index("--learning_rate") and trl < text.index("--num_generations")


def test_errors_in_family_code_keep_their_traceback(tmp_path: Path) -> None:
    """A bug in a plug-in family (here a KeyError in `seed_tasks`) is not a recipe error: `flywheel train`
    lets it through with its traceback instead of printing `flywheel train: 'program'`."""
    from flywheel.envs import get_family_class, register_family
    from flywheel.train.run import main

    @register_family
    class BrokenSeeds(get_family_class("code_deduction")):
        name = "test_broken_seeds"
        env_name = "TestBrokenSeeds"

        def seed_tasks(self):
            row = {"snippet": "def f(x):\n    return x"}
            return [self.make_task({"program": row["program"]})]

    with pytest.raises(KeyError, match="program"):
        main(["--families", "test_broken_seeds", "--output_dir", str(tmp_path / "run"), "--warm_start_steps", "0"])


def test_model_card_shows_base_model_families_and_held_out_figures() -> None:
    from flywheel.train.model_card import model_card

    config = parse_config(["--model_name_or_path", "Qwen/Qwen2.5-Coder-1.5B", "--families", "code_deduction"])
    history = [
        {"step": 0, "metrics": {"eval/heldout/code_deduction/accuracy": 0.25}},
        {"step": 40, "metrics": {"eval/heldout/code_deduction/accuracy": 0.5}},
    ]
    card = model_card(config, 40, history)
    assert card.data.base_model == "Qwen/Qwen2.5-Coder-1.5B" and "flywheel" in card.data.tags
    text = str(card)
    assert "- **Task families:** `code_deduction`" in text and "- **Self-play steps:** 40" in text
    assert re.search(r"heldout/code_deduction\s+0\.250\s+0\.500\s+\+0\.250", text), text
    assert "families:\n- code_deduction" in text and "## Rails" in text
    assert model_card(parse_config([]), 0, []).data.base_model is None, "the local tiny model is not a hub id"
