"""FlywheelTrainer overrides GRPOTrainer._generate_and_score_completions and calls TRL's private
generation helpers; this pins the contract it was written against (trl==1.16.0). If TRL is upgraded,
these tests fail first: re-read grpo_trainer.py and adapt flywheel/train/trainer.py."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import trl
from flywheel.train.run import main
from flywheel.train.trainer import FlywheelTrainer
from trl import GRPOTrainer

REPO = Path(__file__).resolve().parents[1]


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_trl_version_is_the_pinned_one() -> None:
    assert trl.__version__ == "1.16.0", "FlywheelTrainer is written against trl==1.16.0 (see pyproject.toml)"


def test_private_methods_we_use_keep_their_signatures() -> None:
    assert parameters(GRPOTrainer._generate_and_score_completions) == ["self", "inputs"]
    assert parameters(GRPOTrainer._generate) == ["self", "prompts"]
    assert parameters(GRPOTrainer._tokenize_prompts) == ["self", "prompts"]
    assert parameters(GRPOTrainer._generate_single_turn)[:5] == [
        "self",
        "prompt_ids",
        "images",
        "multimodal_fields",
        "num_generations",
    ]
    assert parameters(GRPOTrainer._get_per_token_logps_and_entropies)[:6] == [
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
    ]
    assert FlywheelTrainer._generate_and_score_completions is not GRPOTrainer._generate_and_score_completions
    # The keys our batch provides are the ones TRL's loss reads.
    loss_source = inspect.getsource(GRPOTrainer._compute_loss)
    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages"):
        assert f'inputs["{key}"]' in loss_source, key
    for key in ("old_per_token_logps", "ref_per_token_logps", "num_items_in_batch"):
        assert f'"{key}"' in loss_source, key
    # _generate returns 8 values, the 4th being the decoded completions.
    assert "return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images" in (
        inspect.getsource(GRPOTrainer._generate)
    )


def test_one_real_step_with_ppo_clip_and_kl(tmp_path: Path) -> None:
    """num_iterations=2 (PPO-clip: old log-probs) and beta>0 (reference log-probs) through TRL's loss."""
    run = tmp_path / "run"
    # fmt: off
    status = main([
        "--config", str(REPO / "recipes" / "laptop.yaml"),
        "--output_dir", str(run),
        "--families", "code_deduction",
        "--proposer_batch_size", "1", "--solver_batch_size", "1", "--num_generations", "2",
        "--k_references", "1", "--n_solver_samples", "2",
        "--max_proposer_completion_length", "8", "--max_solver_completion_length", "8",
        "--num_iterations", "2", "--beta", "0.1", "--advantage_estimator", "grpo",
        "--max_steps", "2", "--save_steps", "2", "--report_to", "none", "--warm_start_steps", "0",
    ])
    # fmt: on
    assert status == 0
    assert json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    # Two optimizer steps reuse one self-play batch.
    assert json.loads((run / "checkpoint-2" / "selfplay_state.json").read_text())["step"] == 1


def test_cpu_log_probs_equal_trls_fused_head() -> None:
    """On CPU FlywheelTrainer computes only the completion logits; values must equal TRL's fused LM head
    (which scores every position there), with a temperature and left padding."""
    from types import SimpleNamespace

    import torch
    from accelerate import Accelerator
    from flywheel.agents import load_policy
    from trl.trainer.utils import add_fused_lm_head

    model, _ = load_policy("flywheel/tiny", device="cpu")
    stub = SimpleNamespace(accelerator=Accelerator(cpu=True), temperature=0.7)
    add_fused_lm_head(model, temperature=stub.temperature, cast_lm_head_to_fp32=False, outputs=("log_probs", "entropy"))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, model.config.vocab_size, (4, 30), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :5] = 0
    attention_mask[3, -4:] = 0  # a completion shorter than the others (right padding)
    args = (model, input_ids, attention_mask, 12, 3, True)
    ours = FlywheelTrainer._get_per_token_logps_and_entropies(stub, *args)
    trls = GRPOTrainer._get_per_token_logps_and_entropies(stub, *args)
    mask = attention_mask[:, -12:].bool()
    assert torch.allclose(ours[0][mask], trls[0][mask], atol=1e-5)
    assert torch.allclose(ours[1][mask], trls[1][mask], atol=1e-5)
