"""The GPU path, measured: self-play vs plain TRL GRPO throughput, a LoRA run and peak GPU memory.

    python benchmarks/gpu_check.py                       # on a GPU: Qwen2.5-0.5B's shape, bf16 (~5 min on one H200)
    python benchmarks/gpu_check.py --shape tiny --steps 1 # on a CPU: the same code paths, fp32, GPU parts skipped

The model is built locally with random weights (no hub): Qwen2.5-0.5B's shape (24 layers, hidden 896, 14/2
heads, 151,936-entry embedding) with the tiny local tokenizer (its ids are a subset of the embedding). Three
runs of `--steps` measured steps (after one warm-up step each), on the same weights, prompts and generation
counts: the self-play step (`FlywheelTrainer`), plain TRL GRPO on the same rendered prompts, and the
self-play step training a LoRA adapter. Printed per run: seconds per step, trained tokens (prompt +
completion) per second and peak GPU memory; then the throughput ratio self-play / TRL (target >= 0.8). A
random model writes no valid proposal, so no solve-rate samples are drawn and both trainers generate the
same number of tokens. Whatever cannot run (a missing package, no CUDA) is printed as SKIPPED with the
reason, and the exit status is 0 only if every run ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import fmean
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 4096,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
    },
}
NEEDED = ("trl", "datasets", "gymnasium", "sympy", "latex2sympy2_extended", "peft", "flywheel.train")
"""Imported by the runs. pyseccomp is optional: without it the sandbox runs without its seccomp filter (and says so)."""


def missing_packages() -> list[str]:
    """Packages the self-play runs import that this Python cannot find."""
    missing = []
    for name in NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package (flywheel) is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def build_model(shape: str, dtype: Any, device: str) -> tuple[Any, Any]:
    """A randomly initialised Qwen2 of `shape` and the tiny local tokenizer, seeded."""
    import torch
    from flywheel.agents import build_tiny_model, load_tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_tokenizer(build_tiny_model())
    config = Qwen2Config(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPES[shape],
    )
    with torch.random.fork_rng(devices=[]), torch.device(device):  # initialised where it runs: faster on a GPU
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


class Run:
    """One trainer's measurement: step time, trained tokens per second, peak GPU memory (None on CPU)."""

    def __init__(self, name: str, history: list[dict[str, float]], peak_bytes: int | None) -> None:
        steps = [row["step_time"] for row in history if "step_time" in row]
        tokens = [row["num_tokens"] for row in history if "num_tokens" in row]
        measured = steps[1:] or steps
        self.name = name
        self.step_time = fmean(measured)
        # num_tokens is cumulative: tokens of the measured steps over their time.
        self.tokens_per_second = (tokens[-1] - tokens[0]) / sum(steps[1:]) if len(tokens) > 1 else tokens[0] / steps[0]
        self.peak_gib = None if peak_bytes is None else peak_bytes / 2**30

    def line(self) -> str:
        memory = "n/a (CPU)" if self.peak_gib is None else f"{self.peak_gib:.1f} GiB"
        return (
            f"{self.name:22s} {self.step_time:8.2f} s/step  {self.tokens_per_second:10.0f} tokens/s  peak GPU {memory}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--steps", type=int, default=2, help="measured steps per run (plus one warm-up step)")
    parser.add_argument("--batch", type=int, default=8, help="proposer and solver prompts per family")
    parser.add_argument("--num_generations", type=int, default=8)
    parser.add_argument("--length", type=int, default=256, help="completion tokens (both roles)")
    parser.add_argument("--micro_batches", type=int, default=8, help="gradient accumulation steps per step")
    parser.add_argument("--families", nargs="+", default=["code_deduction", "math_deduction"])
    options = parser.parse_args()

    missing = missing_packages()
    if missing:
        print(f"SKIPPED all runs: missing packages {', '.join(missing)} (see docs/real_model.md, 'GPU check')")
        return 1
    if importlib.util.find_spec("pyseccomp") is None:
        print("note: pyseccomp is missing, so sandboxed programs run without the seccomp filter")
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        print(f"device: {torch.cuda.get_device_name(0)}, bf16, shape {options.shape}")
    else:
        print(f"SKIPPED bf16 and peak GPU memory: no CUDA device; running the {options.shape} shape in fp32 on CPU")
    dtype = torch.bfloat16 if cuda else torch.float32
    device = "cuda" if cuda else "cpu"
    if not cuda:
        from flywheel.agents import configure_threads

        configure_threads()

    work = Path(tempfile.mkdtemp(prefix="flywheel-gpu-check-"))
    common = {
        "num_generations": options.num_generations,
        "learning_rate": 1e-6,
        "beta": 0.0,
        "gradient_checkpointing": cuda,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "max_steps": options.steps + 1,
        "seed": 0,
        "disable_tqdm": True,
        "bf16": cuda,
        "gradient_accumulation_steps": options.micro_batches,
    }
    model, tokenizer = build_model(options.shape, dtype, device)
    start_weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    runs: list[Run] = []

    flywheel, prompts = selfplay_run(model, tokenizer, options, work / "selfplay", common, use_peft=False)
    runs.append(measure("self-play", flywheel, cuda))
    del flywheel
    model.load_state_dict(start_weights)
    runs.append(measure("plain TRL GRPO", trl_run(model, tokenizer, prompts, options, work / "trl", common), cuda))
    model.load_state_dict(start_weights)
    lora, _ = selfplay_run(model, tokenizer, options, work / "lora", common, use_peft=True)
    runs.append(measure("self-play + LoRA", lora, cuda))

    rows = len(prompts) * options.num_generations
    print(f"rollouts per step: {rows} ({len(prompts)} prompts x {options.num_generations}), {options.length} tokens")
    for run in runs:
        print(run.line())
    ratio = runs[0].tokens_per_second / runs[1].tokens_per_second
    print(f"throughput ratio self-play / TRL: {ratio:.3f} (target >= 0.8)")
    return 0 if cuda else 1


def measure(name: str, trainer: Any, cuda: bool) -> Run:
    import torch
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    print(f"{name}: {time.perf_counter() - start:.0f} s for {trainer.state.global_step} steps", flush=True)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    run = Run(name, trainer.state.log_history, peak)
    if hasattr(trainer, "game"):
        trainer.game.close()
    return run


def selfplay_run(
    model: Any, tokenizer: Any, options: argparse.Namespace, output: Path, common: dict[str, Any], *, use_peft: bool
) -> tuple[Any, list[str]]:
    """A `FlywheelTrainer` on fresh buffers, and the rendered prompts of one step (for the TRL baseline)."""
    from flywheel.envs import make_family
    from flywheel.envs.buffer import TaskStore
    from flywheel.train.config import FlywheelConfig
    from flywheel.train.selfplay import SelfPlay
    from flywheel.train.trainer import FlywheelTrainer

    config = FlywheelConfig(
        output_dir=str(output),
        families=options.families,
        proposer_batch_size=options.batch,
        solver_batch_size=options.batch,
        n_solver_samples=options.num_generations,
        k_references=2,
        max_proposer_completion_length=options.length,
        max_solver_completion_length=options.length,
        template="r1",
        use_peft=use_peft,
        **common,
    )
    families = {name: make_family(name) for name in options.families}
    output.mkdir(parents=True)
    game = SelfPlay(
        families,
        TaskStore(output / "tasks.sqlite"),
        config.reward_config(),
        buffer_capacity=1000,
        k_references=2,
        seed=0,
    )
    game.seed_buffers()
    peft_config = None
    if use_peft:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            target_modules=config.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    trainer = FlywheelTrainer(model, config, game, tokenizer, peft_config=peft_config)
    prompts = [
        trainer.agent.render(p, "propose") for name in families for p in game.proposer_prompts(name, options.batch)
    ]
    prompts += [
        trainer.agent.render(families[name].solver_prompt(task), "solve")
        for name in families
        for task in game.solver_tasks(name, options.batch, fresh=0)
    ]
    return trainer, prompts


def trl_run(
    model: Any, tokenizer: Any, prompts: list[str], options: argparse.Namespace, output: Path, common: dict[str, Any]
) -> Any:
    """Plain TRL GRPO on the same prompts and generation counts, with a length reward (no verifier)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    def length_reward(completions: list[str], **_: object) -> list[float]:
        return [len(text) / 100 for text in completions]

    config = GRPOConfig(
        output_dir=str(output),
        per_device_train_batch_size=len(prompts) * options.num_generations // options.micro_batches,
        max_completion_length=options.length,
        use_cpu=not common["bf16"],
        **common,
    )
    return GRPOTrainer(
        model,
        reward_funcs=length_reward,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
    )


if __name__ == "__main__":
    sys.exit(main())
