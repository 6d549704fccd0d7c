"""The data gate: each rule rejects a proposal that would pass without it, and a rejected proposal never
out-earns a new valid task (docs/ledger.md, "The data gate")."""

from __future__ import annotations

import random
from collections.abc import Iterator

import gymnasium
import pytest
from flywheel.envs import Prompt, Rejection, Task, make_family
from flywheel.envs.buffer import TaskStore
from flywheel.envs.code_tasks import normalised_program, program_structure
from flywheel.envs.gate import DUPLICATE, STRUCTURE_QUOTA, Gate
from flywheel.envs.parsing import format_answer
from flywheel.envs.rails import Rails
from flywheel.envs.resources import SharedVerifiers
from flywheel.envs.rewards import RewardConfig
from flywheel.envs.scoring import score_proposals, validate_proposals

LOOSE = Rails.from_dict({"max_structure_share": 1.0})
"""Rails without the structure quota, for the tests of the other rules."""


@pytest.fixture(scope="module")
def verifiers() -> Iterator[SharedVerifiers]:
    with SharedVerifiers() as shared:
        yield shared


def code(program: str, text: str) -> str:
    return format_answer(("python", program), ("input", text))


def math(operation: str, expression: str, params: str = "") -> str:
    blocks = [("operation", operation), ("expression", expression)] + ([("params", params)] if params else [])
    return format_answer(*blocks)


def gated(family, texts: list[str], rails: Rails | None = None, stored: list[str] = ()) -> list[Task | Rejection]:
    """Propose `stored` (admitting what passes), then screen `texts` as one later batch."""
    store = TaskStore(":memory:")
    gate = Gate(family, store.buffer(family.name, 100))
    prompt = family.proposer_prompt([], random.Random(0))
    if stored:
        earlier = gate.screen(family.propose(list(stored), [prompt] * len(stored)))
        assert all(isinstance(item, Task) for item in earlier), earlier
        gate.admit(earlier, step=1)  # type: ignore[arg-type]
    return gate.screen(family.propose(texts, [prompt] * len(texts)))


def reasons(results: list[Task | Rejection]) -> list[str]:
    return [item.reason if isinstance(item, Rejection) else "valid" for item in results]


# ----------------------------------------------------------------------------------- new in substance


def test_code_duplicates_are_found_after_folding_constants_and_renaming(verifiers):
    family = make_family("code_deduction", verifiers=verifiers, rails=LOOSE)
    stored = code("def f(a):\n    return a * 5 - 1", "4")
    same = code("def f(x):\n    # the same, written otherwise\n    return x * (2 + 3) - (1)", "4")
    assert normalised_program("def f(a):\n    return a * (2 + 3)") == normalised_program("def g(b):\n    return b * 5")
    assert reasons(gated(family, [same], stored=[stored])) == [DUPLICATE]
    # Other constants or another input are new tasks.
    other = [code("def f(x):\n    return x * 6 - 1", "4"), code("def f(x):\n    return x * 5 - 1", "7")]
    assert reasons(gated(family, other, stored=[stored])) == ["valid", "valid"]


def test_duplicates_are_checked_against_the_whole_buffer_not_only_the_batch(verifiers):
    family = make_family("code_deduction", verifiers=verifiers, rails=LOOSE)
    text = code("def f(a):\n    return a[::-1]", "[1, 2, 3]")
    assert reasons(gated(family, [text])) == ["valid"]
    assert reasons(gated(family, [text], stored=[text])) == [DUPLICATE]
    assert reasons(gated(family, [text, text])) == ["valid", DUPLICATE]


def test_math_duplicates_compare_the_canonical_sympy_form_and_default_parameters(verifiers):
    family = make_family("math_deduction", verifiers=verifiers, rails=LOOSE)
    stored = [math("differentiate", "x**3 + 2*x"), math("evaluate", "x**2 + 1", "x: 3")]
    again = [
        math("differentiate", "2*x + x**3", "order: 1"),  # reordered, and order 1 is the default
        math("evaluate", "1 + x**2", "x: 6/2"),  # 6/2 is 3
    ]
    assert reasons(gated(family, again, stored=stored)) == [DUPLICATE, DUPLICATE]
    assert reasons(gated(family, [math("differentiate", "x**3 + 2*x", "order: 2")], stored=stored)) == ["valid"]


# ----------------------------------------------------------------------------------------- trivial


def test_an_output_equal_to_an_input_is_trivial(verifiers):
    family = make_family("code_deduction", verifiers=verifiers, rails=LOOSE)
    results = gated(family, [code("def f(a):\n    return sorted(a)", text) for text in ("[1, 2, 3]", "[3, 1, 2]")])
    assert reasons(results) == ["trivial", "valid"]
    abduction = make_family("code_abduction", verifiers=verifiers, rails=LOOSE)
    assert reasons(gated(abduction, [code("def f(a, b):\n    return max(a, b)", "3, 9")])) == ["trivial"]


def test_a_constant_function_is_trivial(verifiers):
    family = make_family("code_deduction", verifiers=verifiers, rails=LOOSE)
    texts = [code("def f(a):\n    x = 7\n    return x * 6", "5"), code("def f(a):\n    return a * 6", "5")]
    assert reasons(gated(family, texts)) == ["trivial", "valid"]


def test_induction_on_a_constant_or_identity_function_is_trivial(verifiers):
    family = make_family("code_induction", verifiers=verifiers, rails=LOOSE)
    inputs = ("1", "2", "3", "4")
    asked = [
        family.proposer_prompt([Task("code_induction", {"program": program}, "x")], random.Random(0))
        for program in ("def f(a):\n    return a % 1", "def f(a):\n    return abs(a)", "def f(a):\n    return a * a")
    ]
    texts = [format_answer(*[("input", x) for x in inputs], ("message", "guess")) for _ in asked]
    assert reasons(family.propose(texts, asked)) == ["trivial", "trivial", "valid"]
    # Shown only the identity seed, the proposer escapes it with its own program.
    identity = family.proposer_prompt([], random.Random(0))
    own = format_answer(*[("input", x) for x in inputs], ("message", "m"), ("python", "def f(a):\n    return a + 1"))
    assert reasons(family.propose([texts[0], own], [identity, identity])) == ["trivial", "valid"]
    math_family = make_family("math_induction", verifiers=verifiers, rails=LOOSE)
    prompt = math_family.proposer_prompt([], random.Random(0))
    proposals = [
        format_answer(*[("input", x) for x in inputs], ("message", "m"), ("expression", expression))
        for expression in ("x", "2*x")
    ]
    assert reasons(math_family.propose(proposals, [prompt, prompt])) == ["trivial", "valid"]


# -------------------------------------------------------------------------------------- the rails' quota


def test_one_structure_may_not_take_more_than_its_share_of_the_buffer(verifiers):
    rails = Rails.from_dict({"max_structure_share": 0.5})
    family = make_family("code_deduction", verifiers=verifiers, rails=rails)
    first, second = code("def f(a):\n    return a + 1", "5"), code("def f(a):\n    return a + 2", "5")
    other = code("def f(a):\n    return [a] * 2", "5")
    assert program_structure("def f(a):\n    return a + 1") == program_structure("def f(b):\n    return b + 2")
    assert reasons(gated(family, [second], stored=[first])) == [STRUCTURE_QUOTA]
    assert reasons(gated(family, [other], stored=[first])) == ["valid"]
    loose = make_family("code_deduction", verifiers=verifiers, rails=LOOSE)
    assert reasons(gated(loose, [second], stored=[first])) == ["valid"]


# ------------------------------------------------------------------------------------------- rewards


def test_a_duplicate_never_earns_more_than_an_invalid_or_a_new_task(verifiers):
    family = make_family("code_deduction", verifiers=verifiers, rails=LOOSE)
    store = TaskStore(":memory:")
    gate = Gate(family, store.buffer(family.name, 100))
    prompt = family.proposer_prompt([], random.Random(0))
    text = code("def f(a):\n    return a * 3", "2")
    rewards = RewardConfig(duplicate_penalty=0.5)
    rewards.validate()
    scored = []
    for _ in range(2):  # the same proposal in two steps: new, then a duplicate of the buffer's task
        proposals = validate_proposals(
            {family.name: family}, [(family.name, prompt)] * 2, [text, "junk"], gates={family.name: gate}
        )
        score_proposals({family.name: family}, proposals, rewards, lambda prompts, n: ["nothing"] * len(prompts) * n, 2)
        gate.admit([p.task for p in proposals if p.task is not None])
        scored.append([(p.result.reason if p.task is None else "valid", p.reward) for p in proposals])
    assert scored[0] == [("valid", 0.0), ("parse_error", -1.0)]
    assert scored[1] == [(DUPLICATE, -1.5), ("parse_error", -1.0)]
    with pytest.raises(ValueError, match="duplicate_penalty"):
        RewardConfig(duplicate_penalty=-0.1).validate()


def test_the_propose_environment_applies_the_gate(verifiers):
    env = gymnasium.make("flywheel/CodeDeduction-Propose-v0", verifiers=verifiers)
    text = code("def f(a):\n    return a * 3 + 1", "2")
    infos = []
    for seed in (0, 1):
        env.reset(seed=seed)
        _, reward, _, _, info = env.step(text)
        infos.append((info["valid"], info["reason"], reward))
    env.close()
    assert infos == [(True, "", 0.0), (False, DUPLICATE, -1.0)]


def test_seeds_pass_validation_but_not_the_gate(verifiers):
    """AZR's identity seed starts a buffer; proposed by the model, it is trivial."""
    family = make_family("code_deduction", verifiers=verifiers, rails=LOOSE)
    seed = family.seed_tasks()[0]
    assert family.validate_proposals([{"program": seed.payload["program"], "input": seed.payload["input"]}]) == [seed]
    prompt = Prompt(family.proposer_prompt([], random.Random(0)).text)
    assert reasons(family.propose([code(seed.payload["program"], seed.payload["input"])], [prompt])) == ["trivial"]
