"""Third-party families: one registered by decorator, one (the docs/new_family.md example, run as written)
loaded through the ``flywheel.families`` entry-point group."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import gymnasium
import pytest
from flywheel.envs import (
    Prompt,
    Rejection,
    Task,
    TaskFamily,
    Verdict,
    get_family_class,
    load_plugins,
    make_family,
    register_family,
)
from flywheel.envs.testing import check_family

DOC = Path(__file__).resolve().parents[1] / "docs" / "new_family.md"


def doc_blocks() -> list[str]:
    """The ```python blocks of docs/new_family.md: the family module, then the plug-in's test file."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 2, "docs/new_family.md lost its example family or its test"
    return blocks


def check_family_envs(name: str) -> None:
    """The public family check, plus a vector step with a non-text action."""
    check_family(name)
    stem = get_family_class(name).env_name
    for role in ("Solve", "Propose"):
        vec = gymnasium.make_vec(f"flywheel/{stem}-{role}-v0", num_envs=2, vectorization_mode="vector_entry_point")
        vec.reset(seed=0)
        _, rewards, terminated, _, _ = vec.step(["<answer>abc</answer>", 7])
        assert rewards.shape == (2,) and terminated.all()
        vec.close()


def test_family_registered_by_decorator():
    @register_family
    class Echo(TaskFamily):
        name = "test_echo"
        env_name = "TestEcho"
        domain = "toy"
        mode = "deduction"

        def seed_tasks(self):
            return [self.make_task({"text": "hi"})]

        def proposer_prompt(self, references, rng):
            return Prompt("Say something.")

        def parse_proposal(self, text, prompt):
            return {"text": text} if text.isalpha() and len(text) <= 20 else Rejection("parse_error", text[:20])

        def example_proposals(self):
            return [(Prompt("Say something."), "hello")]

        def validate_proposals(self, proposals):
            return [self.make_task(p) for p in proposals]

        def solver_prompt(self, task):
            return Prompt(f"Repeat: {task.payload['text']}")

        def verify(self, tasks, answers):
            return [
                Verdict("correct" if a == t.payload["text"] else "wrong") for t, a in zip(tasks, answers, strict=True)
            ]

        def reference_answer(self, task):
            return task.payload["text"]

        def wrong_answer(self, task):
            return task.payload["text"] + "!"

        def dedup_key(self, payload):
            return payload["text"]

        def complexity(self, task):
            return 1

    assert register_family(Echo) is Echo  # idempotent
    check_family_envs("test_echo")


def test_docs_example_loads_as_an_entry_point_plugin(tmp_path, monkeypatch):
    family_module, plugin_test = doc_blocks()[:2]
    (tmp_path / "flywheel_text_reverse.py").write_text(family_module, encoding="utf-8")
    dist = tmp_path / "flywheel_text_reverse-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flywheel-text-reverse\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[flywheel.families]\ntext_reverse = flywheel_text_reverse\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "text_reverse" in load_plugins()
    namespace: dict[str, object] = {}
    exec(compile(plugin_test, "test_text_reverse.py", "exec"), namespace)  # the plug-in's own test, as documented
    namespace["test_text_reverse_keeps_the_family_contract"]()
    check_family_envs("text_reverse")
    family = make_family("text_reverse")
    prompt = family.proposer_prompt(family.seed_tasks(), random.Random(0))
    task, rejection = family.propose(["<answer>gearbox</answer>", "<answer>NOT A WORD</answer>"], [prompt, prompt])
    assert isinstance(task, Task) and task.payload["answer"] == "xobraeg"
    assert rejection.reason == "not_a_word"
    monkeypatch.delitem(sys.modules, "flywheel_text_reverse", raising=False)


def test_broken_plugin_is_a_warning(tmp_path, monkeypatch):
    dist = tmp_path / "broken_flywheel_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-flywheel-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[flywheel.families]\nbroken = no_such_module_for_flywheel\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match="broken"):
        assert "broken" not in load_plugins()
