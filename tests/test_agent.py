"""The agent package on the real tiny model: building, tokenizer, loading, rendering, generation."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import torch
from flywheel.agents import (
    INSTRUCTION,
    TINY_MODEL,
    Agent,
    build_tiny_model,
    configure_threads,
    is_tiny_model_dir,
    load_policy,
)
from flywheel.agents.model import TAG_TOKENS, load_tokenizer
from flywheel.envs.base import Prompt
from transformers import PreTrainedTokenizerFast

SAMPLE_TEXT = (
    "def f(xs: list[int]) -> int:\n"
    "    return sum(x ** 2 for x in xs if x % 3 != 0)  # héllo ✓\n"
    "\tprint(f([1, 2, 3]), {'a': 1})\n"
    r"$\frac{1}{2} + \sqrt{x^2 + y_1} \leq \int_0^\infty e^{-t}\,dt = \boxed{42}$"
    "\n"
    "<think> 12 * 34 = 408 </think>\n<answer>\n```output\n408\n```\n</answer>"
)
SIMPLE_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread, as training uses (see docs/agent.md); restored afterwards."""
    before = torch.get_num_threads()
    configure_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def policy():
    return load_policy(TINY_MODEL, device="cpu")


@pytest.fixture
def agent(policy) -> Agent:
    model, tokenizer = policy
    return Agent(model, tokenizer, max_new_tokens=12)


def test_build_is_deterministic_and_cached(tmp_path: Path) -> None:
    first = build_tiny_model(tmp_path / "a", seed=3)
    second = build_tiny_model(tmp_path / "b", seed=3)
    assert is_tiny_model_dir(first) and is_tiny_model_dir(second)
    assert _digests(first) == _digests(second)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(_digests(first))
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    assert build_tiny_model(first, seed=3) == first  # reused, not rebuilt
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == mtimes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch dirs left
    with pytest.raises(FileExistsError):
        build_tiny_model(first, seed=4)


def test_default_build_goes_to_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_CACHE", str(tmp_path))
    path = build_tiny_model()
    assert path.parent == tmp_path and path.name.startswith("tiny-")
    assert build_tiny_model() == path


def test_tokenizer_round_trips_and_reloads_with_same_ids(policy, tmp_path: Path) -> None:
    _, tokenizer = policy
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    ids = tokenizer(SAMPLE_TEXT)["input_ids"]
    assert tokenizer.decode(ids) == SAMPLE_TEXT
    assert len(ids) < len(SAMPLE_TEXT)  # BPE merges happened
    for tag in TAG_TOKENS:
        assert len(tokenizer(tag)["input_ids"]) == 1
    assert tokenizer.pad_token and tokenizer.eos_token and tokenizer.bos_token
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}) == 3
    assert tokenizer.padding_side == "left"

    tokenizer.save_pretrained(tmp_path)  # a trainer checkpoint has no marker file
    for reloaded in (load_tokenizer(build_tiny_model()), load_tokenizer(tmp_path)):
        assert isinstance(reloaded, PreTrainedTokenizerFast)
        assert reloaded(SAMPLE_TEXT)["input_ids"] == ids
        assert reloaded.get_vocab() == tokenizer.get_vocab()


def test_render_r1_both_roles(agent: Agent) -> None:
    assert agent.template == "r1"  # the tiny tokenizer has no chat template
    for role in ("propose", "solve"):
        text = agent.render(Prompt("Write a function."), role)
        assert text.startswith("A conversation between User and Assistant.")
        assert text.endswith("User: Write a function.\nAssistant: <think>")
    assert agent.render("plain", "solve").endswith("User: plain\nAssistant: <think>")
    with pytest.raises(ValueError):
        agent.render("x", "judge")  # type: ignore[arg-type]


def test_render_plain_leaves_the_instruction_out(policy) -> None:
    model, tokenizer = policy
    agent = Agent(model, tokenizer, template="plain")
    assert agent.render(Prompt("Write a function."), "propose") == "User: Write a function.\nAssistant: <think>"
    assert agent.completion_text("a</think><answer>4</answer>") == "<think>a</think><answer>4</answer>"
    assert agent.raw_completion("<think>a</think>") == "a</think>"
    with pytest.raises(ValueError, match="'plain'"):
        Agent(model, tokenizer, template="bare")  # type: ignore[arg-type]


def test_role_preambles(policy) -> None:
    model, tokenizer = policy
    agent = Agent(model, tokenizer, role_preambles={"propose": "Design a new task."})
    assert "User: Design a new task.\n\nTask spec\nAssistant: <think>" in agent.render("Task spec", "propose")
    assert "User: Task spec\n" in agent.render("Task spec", "solve")
    with pytest.raises(ValueError, match="unknown roles"):
        Agent(model, tokenizer, role_preambles={"judge": "x"})


def test_render_chat_template(policy) -> None:
    model, tokenizer = policy
    chat_tokenizer = copy.deepcopy(tokenizer)
    chat_tokenizer.chat_template = SIMPLE_CHAT_TEMPLATE
    agent = Agent(model, chat_tokenizer)  # auto picks chat
    assert agent.template == "chat"
    for role in ("propose", "solve"):
        text = agent.render(Prompt("Solve 2+2."), role)
        assert text == f"<|system|>{INSTRUCTION}\n<|user|>Solve 2+2.\n<|assistant|>"
    assert agent.completion_text("<think>a</think><answer>4</answer>") == "<think>a</think><answer>4</answer>"
    assert Agent(model, chat_tokenizer, template="r1").template == "r1"
    with pytest.raises(ValueError, match="chat_template"):
        Agent(model, tokenizer, template="chat")


def test_generate_shapes_and_seed(agent: Agent) -> None:
    prompts = [agent.render("Compute 1+1.", "solve"), agent.render("Reverse a list.", "propose"), "x"]
    state = torch.random.get_rng_state()
    first = agent.generate(prompts, num_samples=3, seed=7, batch_size=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert len(first) == 3 and all(len(samples) == 3 for samples in first)
    assert all(isinstance(s, str) for samples in first for s in samples)
    assert agent.generate(prompts, num_samples=3, seed=7, batch_size=4) == first
    assert agent.generate(prompts, num_samples=3, seed=8, batch_size=4) != first


def test_greedy_generation_matches_across_batching(policy) -> None:
    model, tokenizer = policy
    agent = Agent(model, tokenizer, max_new_tokens=8, temperature=0.0)
    prompts = [agent.render("short", "solve"), agent.render("a much longer prompt with more tokens", "solve")]
    together = agent.generate(prompts, num_samples=2, batch_size=4)
    alone = [agent.generate([p], batch_size=1)[0][0] for p in prompts]
    assert [samples[0] for samples in together] == alone  # left padding does not change the output
    assert all(samples[0] == samples[1] for samples in together)


def test_completion_text_and_as_solver(agent: Agent) -> None:
    assert agent.completion_text("x</think><answer>1</answer>") == "<think>x</think><answer>1</answer>"
    solve = agent.as_solver()
    answers = solve(["What is 3*3?", "Name a prime."])
    assert len(answers) == 2 and all(a.startswith("<think>") for a in answers)


def test_load_policy_from_local_path(tmp_path: Path) -> None:
    source_model, source_tokenizer = load_policy(TINY_MODEL, device="cpu")
    source_model.save_pretrained(tmp_path / "ckpt")
    source_tokenizer.save_pretrained(tmp_path / "ckpt")
    for name in (str(tmp_path / "ckpt"), tmp_path / "ckpt"):
        model, tokenizer = load_policy(name, dtype="float32", device="cpu")
        assert isinstance(tokenizer, PreTrainedTokenizerFast)
        assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
        assert model.dtype == torch.float32
        for (key, value), (_, expected) in zip(
            model.state_dict().items(), source_model.state_dict().items(), strict=True
        ):
            assert torch.equal(value, expected), key


def test_missing_model_errors_clearly(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"cannot load model 'nobody-flywheel/no-such-model'.*HF_HUB_OFFLINE"):
        load_policy("nobody-flywheel/no-such-model", device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(str(tmp_path / "missing"), device="cpu")
