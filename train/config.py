"""`FlywheelConfig`: TRL's `GRPOConfig` plus the self-play settings, parsed from a YAML recipe.

Every field carries ``metadata={"help": ...}`` so ``flywheel train --help`` documents it. The batch TRL
trains on is derived from the self-play settings (see `rollouts_per_step`), so ``per_device_train_batch_size``
is computed here rather than set by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from flywheel.envs.rewards import RewardConfig
from flywheel.train.advantages import ESTIMATORS
from trl import GRPOConfig

ROLES = ("propose", "solve")
TEMPLATES = ("auto", "r1", "chat")


@dataclass
class FlywheelConfig(GRPOConfig):
    """Self-play training settings. TRL's own fields (learning rate, `num_generations`, `beta`,
    `num_iterations`, `use_vllm`, `save_steps`, ...) keep their meaning; see TRL's GRPOConfig."""

    _VALID_DICT_FIELDS: ClassVar[list[str]] = [*GRPOConfig._VALID_DICT_FIELDS, "family_configs"]

    # --- model ---------------------------------------------------------------------------------------
    model_name_or_path: str = field(
        default="flywheel/tiny",
        metadata={"help": "Policy: 'flywheel/tiny' (built locally, no hub), a local directory or a hub id."},
    )
    template: str = field(
        default="auto",
        metadata={
            "help": "Prompt template: 'r1' (plain text, ends with 'Assistant: <think>'), 'chat' (the "
            "tokenizer's chat template) or 'auto' (chat when the tokenizer has one, else r1)."
        },
    )
    use_peft: bool = field(
        default=False, metadata={"help": "Train a LoRA adapter (needs peft) instead of all weights."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (with use_peft)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (with use_peft)."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "Modules that get LoRA adapters (with use_peft)."},
    )

    # --- the game ------------------------------------------------------------------------------------
    families: list[str] = field(
        default_factory=lambda: ["code_deduction", "code_abduction", "code_induction"],
        metadata={"help": "Task families (family x mode) played each step, e.g. code_deduction math_induction."},
    )
    family_configs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Per-family settings, {family: {setting: value}} (JSON on the command line)."},
    )
    roles: list[str] = field(
        default_factory=lambda: list(ROLES),
        metadata={
            "help": "Roles played and trained: 'propose' and/or 'solve'. Solve-only trains on the seed "
            "(and seed-file) tasks alone."
        },
    )
    proposer_batch_size: int = field(
        default=4, metadata={"help": "Proposer prompts per family per step (each sampled num_generations times)."}
    )
    solver_batch_size: int = field(
        default=4, metadata={"help": "Solver tasks per family per step (each sampled num_generations times)."}
    )
    k_references: int = field(
        default=6, metadata={"help": "K: buffer tasks shown as references in each proposer prompt (AZR uses 6)."}
    )
    n_solver_samples: int = field(
        default=8,
        metadata={"help": "n: solver samples used to estimate each new task's solve rate (generated, not trained)."},
    )
    buffer_capacity: int = field(
        default=4096, metadata={"help": "Most tasks kept per family buffer (the oldest are evicted)."}
    )
    seed_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra seed tasks as FAMILY=PATH (AZR seed JSONL, validated by the family's sandbox)."},
    )
    max_proposer_completion_length: int = field(
        default=512, metadata={"help": "Most new tokens in a proposer completion."}
    )
    max_solver_completion_length: int = field(default=512, metadata={"help": "Most new tokens in a solver completion."})
    advantage_estimator: str = field(
        default="trr++",
        metadata={
            "help": "'grpo': normalise within each prompt's num_generations rollouts; 'trr++': AZR's "
            "task-relative REINFORCE++, whiten per family x mode x role over the batch."
        },
    )

    # --- format warm-up (flywheel.train.warmup) ------------------------------------------------------
    warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Supervised format warm-up before self-play: optimizer steps on reference answers and valid "
            "proposals of the played families (0: none). Runs once, at the start of a fresh run."
        },
    )
    warmup_examples: int = field(
        default=512, metadata={"help": "Warm-up examples, split evenly over families x roles."}
    )
    warmup_batch_size: int = field(default=8, metadata={"help": "Warm-up examples per optimizer step."})
    warmup_learning_rate: float = field(default=3e-3, metadata={"help": "Warm-up AdamW learning rate (constant)."})

    # --- rewards (flattened RewardConfig) -------------------------------------------------------------
    solver_correct: float = field(default=1.0, metadata={"help": "Solver reward for a verified correct answer."})
    solver_wrong: float = field(default=-0.5, metadata={"help": "Solver reward for a well-formed wrong answer."})
    solver_format_error: float = field(default=-1.0, metadata={"help": "Solver reward when the answer cannot be read."})
    proposer_invalid: float = field(default=-1.0, metadata={"help": "Proposer reward for an invalid proposal."})
    learnability: str = field(
        default="azr",
        metadata={
            "help": "Proposer reward from the estimated solve rate p: 'azr' = 1-p (0 when p is 0 or 1), "
            "'peaked' = 4p(1-p)."
        },
    )

    # --- monitoring and hooks -------------------------------------------------------------------------
    text_log_every: int = field(
        default=10,
        metadata={"help": "Write sample proposals and answers to TensorBoard text every N steps (0: never)."},
    )
    eval_file: str | None = field(
        default=None,
        metadata={"help": "JSONL of real tasks for periodic evaluation, read by step hooks (see docs/training.md)."},
    )
    eval_every: int = field(default=0, metadata={"help": "Run evaluation hooks every N self-play steps (0: never)."})
    diversity_alarm_duplicate_rate: float = field(
        default=0.9,
        metadata={"help": "Diversity alarm: warn when a family's duplicate rate of valid proposals exceeds this."},
    )
    diversity_alarm_valid_rate: float = field(
        default=0.0, metadata={"help": "Diversity alarm: warn when a family's proposal valid rate falls below this."}
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue the latest checkpoint in output_dir (same run dir and step)."}
    )
    torch_threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU threads for torch (default: $FLYWHEEL_TORCH_THREADS or 1; 1 is fastest on small "
            "machines where verifiers share the cores)."
        },
    )

    def __post_init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            # GRPOConfig turns bf16 on by default, which fails without a GPU.
            self.use_cpu = True
            self.bf16 = False
            self.fp16 = False
        self._check_selfplay()
        rows = self.rollouts_per_step
        steps = self.gradient_accumulation_steps
        if rows % steps != 0:
            raise ValueError(
                f"a self-play step makes {rows} trained rollouts (families x roles x batch size x num_generations), "
                f"which gradient_accumulation_steps={steps} does not divide"
            )
        # TRL's generation batch is exactly one self-play step; its placeholder rows drive the loop.
        self.per_device_train_batch_size = rows // steps
        self.steps_per_generation = None
        self.generation_batch_size = None
        super().__post_init__()

    def _check_selfplay(self) -> None:
        from flywheel.envs import family_names, load_plugins

        load_plugins()
        known = family_names()
        if not self.families:
            raise ValueError("families is empty; choose from " + ", ".join(known))
        unknown = [name for name in self.families if name not in known]
        if unknown:
            raise ValueError(f"unknown families {unknown}; registered: {', '.join(known)}")
        if len(set(self.families)) != len(self.families):
            raise ValueError(f"families lists a family twice: {self.families}")
        unknown_configs = set(self.family_configs or {}) - set(known)
        if unknown_configs:
            raise ValueError(f"family_configs names unknown families: {sorted(unknown_configs)}")
        # Settings of registered families that are not played are dropped, so `--families` can narrow a recipe.
        if isinstance(self.family_configs, dict):
            self.family_configs = {k: v for k, v in self.family_configs.items() if k in self.families}
        bad_roles = [role for role in self.roles if role not in ROLES]
        if bad_roles or not self.roles:
            raise ValueError(f"roles must be a non-empty subset of {ROLES}, not {self.roles}")
        if self.advantage_estimator not in ESTIMATORS:
            raise ValueError(f"advantage_estimator must be one of {ESTIMATORS}, not {self.advantage_estimator!r}")
        if self.template not in TEMPLATES:
            raise ValueError(f"template must be one of {TEMPLATES}, not {self.template!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be at least 0, not {self.warmup_steps}")
        for name in (
            "proposer_batch_size",
            "solver_batch_size",
            "n_solver_samples",
            "buffer_capacity",
            "warmup_examples",
            "warmup_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.k_references < 0:
            raise ValueError(f"k_references must be at least 0, not {self.k_references}")
        for entry in self.seed_files:
            family, sep, _ = entry.partition("=")
            if not sep or family not in self.families:
                raise ValueError(f"seed_files entry {entry!r} must be FAMILY=PATH with FAMILY in families")
        if self.use_vllm and self.vllm_importance_sampling_correction:
            # The self-play batch is built outside TRL's scoring path, which applies this correction.
            self.vllm_importance_sampling_correction = False
        self.reward_config().validate()

    @property
    def rollouts_per_step(self) -> int:
        """Trained rollouts per self-play step (the estimation samples are not trained on)."""
        per_family = (self.proposer_batch_size if "propose" in self.roles else 0) + (
            self.solver_batch_size if "solve" in self.roles else 0
        )
        return len(self.families) * per_family * self.num_generations

    def reward_config(self) -> RewardConfig:
        return RewardConfig(**{f.name: getattr(self, f.name) for f in fields(RewardConfig)})

    def selfplay_fields(self) -> dict[str, Any]:
        """The Flywheel fields (not TRL's) with their values, for the TensorBoard recipe panel."""
        own = {f.name for f in fields(FlywheelConfig)} - {f.name for f in fields(GRPOConfig)}
        return {name: getattr(self, name) for name in sorted(own)}
