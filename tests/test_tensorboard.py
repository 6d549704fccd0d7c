"""TensorBoard laid out for people: the custom-scalars layout covers every documented curve, a rejection reason
once seen has no gaps, and the recipe reaches the HParams plugin as plain values."""

from __future__ import annotations

import re
from pathlib import Path

from flywheel.envs.base import Prompt, Rejection, Task
from flywheel.envs.buffer import AddResult
from flywheel.envs.scoring import Proposal
from flywheel.train.metrics import StepRecord, hparam_values, scalar_layout
from flywheel.train.run import parse_config

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["code_deduction", "math_deduction"]


def chart_patterns(section: dict) -> list[str]:
    return [pattern for kind, patterns in section.values() for pattern in patterns if kind == "Multiline"]


def documented_scalars() -> list[str]:
    """Scalar tags of the README's tag tables, with `{family}` as code_deduction and other fields filled in."""
    tags = []
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|\s*scalar\s*\|", line)
        if match:
            tag = match.group(1).replace("{family}", "code_deduction")
            tags.append(re.sub(r"\{[a-z_]+\}", "x", tag))
    return tags


def test_layout_has_a_section_per_family_then_totals_timing_held_out_and_guards():
    layout = scalar_layout(FAMILIES)
    assert list(layout) == [*(f"family {name}" for name in FAMILIES), "totals", "timing", "held-out", "guards"]
    code = chart_patterns(layout["family code_deduction"])
    assert not any(re.match(p, "selfplay/math_deduction/propose/valid_rate") for p in code)
    assert any(re.match(p, "guard/anything") for p in chart_patterns(layout["guards"]))


def test_every_documented_family_and_total_curve_has_a_chart():
    layout = scalar_layout(FAMILIES)
    patterns = [p for section in layout.values() for p in chart_patterns(section)]
    tags = [tag for tag in documented_scalars() if tag.startswith(("selfplay/", "eval/"))]
    assert len(tags) > 20, "the README's tag tables were not found"
    missing = [tag for tag in tags if tag != "selfplay/step" and not any(re.match(p, tag) for p in patterns)]
    assert not missing, f"documented curves without a chart in the custom-scalars layout: {missing}"


def test_a_rejection_reason_once_seen_is_logged_as_zero_afterwards():
    known: dict[str, set[str]] = {}
    task = Task("code_deduction", {"program": "def f(a):\n    return a"}, "t1")

    def record(step: int, results: list) -> StepRecord:
        proposals = [Proposal("code_deduction", Prompt("p"), "text", result) for result in results]
        return StepRecord(
            step=step,
            families=["code_deduction"],
            proposals=proposals,
            added={"code_deduction": AddResult(added=sum(isinstance(r, Task) for r in results), duplicates=0)},
            rewards=[0.0] * len(results),
            groups=[0] * len(results),
            keys=["code_deduction/propose"] * len(results),
            completion_lengths=[5] * len(results),
            known_reasons=known,
        )

    first = record(1, [Rejection("timeout"), task])
    first.remember_reasons()
    assert first.scalars()["selfplay/code_deduction/propose/reject/timeout"] == 0.5
    second = record(2, [task, task])
    second.remember_reasons()
    scalars = second.scalars()
    assert scalars["selfplay/code_deduction/propose/reject/timeout"] == 0.0
    assert not any("reject/parse_error" in tag for tag in scalars)  # never seen: not written


def test_the_recipe_reaches_hparams_as_plain_values():
    config = parse_config(["--config", str(REPO / "recipes" / "laptop.yaml")])
    values = hparam_values(config)
    assert all(isinstance(value, bool | int | float | str) for value in values.values())
    assert values["families"] == '["code_deduction", "math_deduction"]'
    assert values["learning_rate"] == config.learning_rate
