"""The rails: one validated section, read by the families and the sandbox, stored with checkpoints and ledger
rows, and a resume under other rails refused unless overridden (and then logged)."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flywheel.envs import Rejection, Task, make_family
from flywheel.envs.buffer import TaskStore
from flywheel.envs.parsing import format_answer
from flywheel.envs.rails import RAILS_FILE, Rails
from flywheel.envs.rewards import RewardConfig
from flywheel.train.config import FlywheelConfig
from flywheel.train.run import _log_rails_override, main
from flywheel.train.selfplay import STATE_FILE, STORE_FILE, SelfPlay
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


@pytest.fixture
def families() -> Iterator[dict]:
    made = {}
    yield made
    for family in made.values():
        family.verifiers.close()


def code(program: str, text: str = "3") -> str:
    return format_answer(("python", program), ("input", text))


def propose(family, text: str) -> Task | Rejection:
    return family.propose([text], [family.proposer_prompt([], random.Random(0))])[0]


def test_defaults_validate_and_bad_rails_are_refused() -> None:
    rails = Rails.from_dict({})
    assert rails == Rails() and rails.digest() == Rails().digest()
    for bad in (
        {"max_program_chars": 0},
        {"sandbox_timeout_s": -1},
        {"math_operations": ["integrate", "prove"]},
        {"math_operations": []},
        {"max_structure_share": 0},
        {"max_structure_share": 1.5},
        {"nonsense": 1},
    ):
        with pytest.raises(ValueError, match="rails"):
            Rails.from_dict(bad)


def test_the_digest_follows_the_values_and_differences_name_them() -> None:
    base, tighter = Rails(), Rails.from_dict({"max_digits": 3, "allowed_imports": ["math"]})
    assert base.digest() != tighter.digest()
    assert Rails.from_json(tighter.to_json()) == tighter
    assert json.loads(tighter.to_json())["digest"] == tighter.digest()
    changes = base.differences(tighter)
    assert len(changes) == 2 and changes[1] == "max_digits: 8 -> 3"


def test_code_families_read_their_bounds_and_sandbox_limits_from_the_rails(families) -> None:
    program = "import math\ndef f(a):\n    return math.floor(a * 2.5)"
    families["loose"] = make_family("code_deduction")
    shared = families["loose"].verifiers  # bounds checked before any execution need no sandbox of their own
    families["short"] = make_family("code_deduction", None, shared, Rails.from_dict({"max_program_chars": 40}))
    families["simple"] = make_family("code_deduction", None, shared, Rails.from_dict({"max_program_nodes": 8}))
    families["no_math"] = make_family("code_deduction", rails=Rails.from_dict({"allowed_imports": ["re"]}))
    assert isinstance(propose(families["loose"], code(program)), Task)
    assert propose(families["short"], code(program)).reason == "program_too_long"
    assert propose(families["simple"], code(program)).reason == "program_too_complex"
    assert propose(families["no_math"], code(program)).reason == "static_check"


def test_math_families_read_bounds_and_operations_from_the_rails(families) -> None:
    rails = Rails.from_dict({"max_expression_nodes": 5, "math_operations": ["expand", "factor"]})
    families["math"] = family = make_family("math_deduction", rails=rails)
    assert family.config.operations == ("expand", "factor")
    big = format_answer(("operation", "expand"), ("expression", "(x + 1)**2*(x + 2)"))
    assert propose(family, big).reason == "too_large"
    derivative = format_answer(("operation", "differentiate"), ("expression", "x**2"))
    assert propose(family, derivative).reason == "operation_not_allowed"
    with pytest.raises(ValueError, match=r"rails\.math_operations"):
        make_family("math_deduction", {"operations": ["limit"]}, rails=rails)


def test_a_recipe_section_becomes_the_rails() -> None:
    config = FlywheelConfig(output_dir="unused", rails={"max_digits": 3}, report_to=[])
    assert config.rails_config().max_digits == 3
    with pytest.raises(ValueError, match="rails"):
        FlywheelConfig(output_dir="unused", rails={"max_digits": 0}, report_to=[])
    narrow = {"rails": {"math_operations": ["expand"]}, "families": ["math_deduction"]}
    with pytest.raises(ValueError, match=r"rails\.math_operations"):
        FlywheelConfig(output_dir="unused", family_configs={"math_deduction": {"operations": ["limit"]}}, **narrow)


def test_rails_are_stored_with_checkpoints_and_on_every_ledger_row(tmp_path: Path, families) -> None:
    rails = Rails.from_dict({"max_digits": 5})
    families["code_deduction"] = make_family("code_deduction", rails=rails)
    game = SelfPlay(
        families,
        TaskStore(tmp_path / STORE_FILE),
        RewardConfig(),
        buffer_capacity=8,
        k_references=1,
        seed=0,
        rails=rails,
    )
    game.store.record(1, "solve", "code_deduction", "p", "o", {"status": "wrong"})
    game.save(tmp_path / "checkpoint-1")
    game.store.close()
    assert Rails.from_json((tmp_path / "checkpoint-1" / RAILS_FILE).read_text()) == rails
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        assert db.execute("SELECT rails FROM ledger").fetchall() == [(rails.digest(),)]
        stored = json.loads(db.execute("SELECT rails FROM rails WHERE digest = ?", (rails.digest(),)).fetchone()[0])
    assert Rails.from_dict(stored) == rails


def fake_checkpoint(run: Path, rails: Rails) -> Path:
    """A complete-looking checkpoint: enough for `flywheel train --resume` to compare rails."""
    checkpoint = run / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    (checkpoint / STATE_FILE).write_text(json.dumps({"step": 1}))
    TaskStore(checkpoint / STORE_FILE).close()
    (checkpoint / RAILS_FILE).write_text(rails.to_json())
    return checkpoint


def test_resume_under_other_rails_is_refused_with_a_clear_message(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    fake_checkpoint(run, Rails())
    argv = ["--output_dir", str(run), "--resume", "--report_to", "none", "--rails", '{"max_digits": 3}']
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "rails differ" in error and "max_digits: 8 -> 3" in error and "--override_rails" in error


def test_an_override_is_logged_in_the_ledger_and_tensorboard(tmp_path: Path, families) -> None:
    families["code_deduction"] = make_family("code_deduction")
    game = SelfPlay(
        families, TaskStore(tmp_path / STORE_FILE), RewardConfig(), buffer_capacity=8, k_references=1, seed=0
    )
    game.step = 4
    _log_rails_override(game, tmp_path, "checkpoint-4", ["max_digits: 8 -> 3"])
    (row,) = game.store.ledger()
    game.store.close()
    assert row["role"] == "rails" and row["result"]["event"] == "rails_override"
    assert row["result"]["changes"] == ["max_digits: 8 -> 3"]
    events = EventAccumulator(str(tmp_path / "runs" / "selfplay"), size_guidance={"tensors": 0}).Reload()
    assert "rails/override/text_summary" in events.Tags()["tensors"]
