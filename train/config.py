"""`FlywheelConfig`: TRL's `GRPOConfig` plus the self-play settings, parsed from a YAML recipe.

Every field carries ``metadata={"help": ...}`` so ``flywheel train --help`` documents it. The batch TRL
trains on is derived from the self-play settings (see `rollouts_per_step`), so ``per_device_train_batch_size``
is computed here rather than set by hand.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from flywheel.agents.agent import TEMPLATES
from flywheel.envs.rails import Rails
from flywheel.envs.rewards import RewardConfig
from flywheel.train.advantages import ESTIMATORS
from flywheel.train.guards import GuardsConfig
from flywheel.verifiers.sandbox.config import SandboxConfig
from trl import GRPOConfig

ROLES = ("propose", "solve")
POSITIVE_FIELDS = frozenset(
    {
        "lora_r",
        "lora_alpha",
        "proposer_batch_size",
        "solver_batch_size",
        "n_solver_samples",
        "buffer_capacity",
        "max_proposer_completion_length",
        "max_solver_completion_length",
        "warm_start_examples",
        "warm_start_batch_size",
        "torch_threads",
        "sandbox_workers",
        "eval_max_new_tokens",
        "eval_samples",
        "diversity_window",
    }
)
"""Integer fields that must be at least 1 (the others must be at least 0)."""


@dataclass
class FlywheelConfig(GRPOConfig):
    """Self-play training settings. TRL's own fields (learning rate, `num_generations`, `beta`,
    `num_iterations`, `use_vllm`, `save_steps`, ...) keep their meaning; see TRL's GRPOConfig."""

    _VALID_DICT_FIELDS: ClassVar[list[str]] = [*GRPOConfig._VALID_DICT_FIELDS, "family_configs", "rails", "guards"]

    # --- model ---------------------------------------------------------------------------------------
    model_name_or_path: str = field(
        default="flywheel/tiny",
        metadata={"help": "Policy: 'flywheel/tiny' (built locally, no hub), a local directory or a hub id."},
    )
    template: str = field(
        default="auto",
        metadata={
            "help": "Prompt template: 'r1' (plain text, ends with 'Assistant: <think>'), 'plain' (r1 without "
            "the R1 instruction, for small models trained from scratch), 'chat' (the tokenizer's chat "
            "template) or 'auto' (chat when the tokenizer has one, else r1)."
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
        default=4,
        metadata={"help": "Proposer prompts per family per step and process (each sampled num_generations times)."},
    )
    solver_batch_size: int = field(
        default=4,
        metadata={"help": "Solver tasks per family per step and process (each sampled num_generations times)."},
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

    # --- warm start: supervised stage before self-play (flywheel.train.warmup) -----------------------------
    # Not `warmup_*`: transformers reads `warmup_steps` as the learning-rate warm-up of the scheduler.
    warm_start_steps: int = field(
        default=0,
        metadata={
            "help": "Supervised warm start before self-play: optimizer steps on reference answers and valid "
            "proposals of the played families (0: none). Runs once, at the start of a fresh run."
        },
    )
    warm_start_examples: int = field(
        default=512, metadata={"help": "Warm-start examples, split evenly over families x roles."}
    )
    warm_start_batch_size: int = field(default=8, metadata={"help": "Warm-start examples per optimizer step."})
    warm_start_learning_rate: float = field(
        default=3e-3, metadata={"help": "Warm-start AdamW learning rate (constant)."}
    )

    # --- rewards (flattened RewardConfig) -------------------------------------------------------------
    solver_correct: float = field(default=1.0, metadata={"help": "Solver reward for a verified correct answer."})
    solver_wrong: float = field(default=-0.5, metadata={"help": "Solver reward for a well-formed wrong answer."})
    solver_format_error: float = field(default=-1.0, metadata={"help": "Solver reward when the answer cannot be read."})
    proposer_invalid: float = field(default=-1.0, metadata={"help": "Proposer reward for an invalid proposal."})
    duplicate_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Subtracted from proposer_invalid for a proposal the data gate rejects as a duplicate of a "
            "buffer task (after normalisation); at least 0, so a duplicate never beats an invalid or a new task."
        },
    )
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

    # --- held-out evaluation and real data (flywheel.train.evaluate, docs/evaluation.md) -----------------
    eval_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Held-out task files (JSONL: Flywheel tasks, CRUXEval/AZR code rows, MATH or GSM8K rows), "
            "evaluated at step 0, every eval_every steps and at the end; reported as eval/{file name}/..."
        },
    )
    heldout_per_family: int = field(
        default=0,
        metadata={
            "help": "Tasks per played family in the built-in held-out set (flywheel.envs.heldout, generated at run "
            "time from templates and seeds training does not use), reported as eval/heldout/... (0: none)."
        },
    )
    eval_every: int = field(
        default=0,
        metadata={"help": "Evaluate the held-out sets every N self-play steps too (0: only at step 0 and the end)."},
    )
    eval_samples: int = field(
        default=1, metadata={"help": "Answers per held-out task; above 1 needs eval_temperature above 0."}
    )
    eval_temperature: float = field(
        default=0.0, metadata={"help": "Sampling temperature of held-out answers (0: greedy decoding)."}
    )
    eval_max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "Most new tokens per held-out answer (default: max_solver_completion_length)."},
    )
    real_task_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Task files (same formats as eval_files) whose tasks join the solver batches of their families, "
            "which must be played."
        },
    )
    real_task_share: float = field(
        default=0.0,
        metadata={
            "help": "Share, in [0, 1], of each step's solver tasks per family drawn from real_task_files instead "
            "of the buffer, for families with real tasks (0: off)."
        },
    )
    # --- diversity and guards (flywheel.train.guards, docs/training.md "Guards") ------------------------
    diversity_window: int = field(
        default=64,
        metadata={
            "help": "Newest proposed buffer tasks counted by selfplay/{family}/diversity/recent_distinct_structures."
        },
    )
    guards: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Guards, {triggers: [{metric, above|below|drop, window, action}], max_rollbacks, rollback_to, "
            "best_metric, temperature_step, temperature_max, duplicate_penalty_step, duplicate_penalty_max} (JSON "
            "on the command line); actions warn, adjust, rollback, stop. Default: warn when a family's "
            "duplicate_rate exceeds 0.9. See docs/training.md, Guards."
        },
    )
    # --- rails: what the run must never change (flywheel.envs.rails) ---------------------------------
    rails: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Rails fixed for the whole run, {setting: value} (JSON on the command line): allowed_imports, "
            "sandbox_timeout_s, sandbox_memory_mb, math_timeout_s, max_program_chars, max_program_nodes, "
            "max_expression_nodes, max_degree, max_digits, math_operations, max_structure_share. See docs/ledger.md."
        },
    )
    override_rails: bool = field(
        default=False,
        metadata={
            "help": "With --resume: continue under this recipe's rails even if they differ from the checkpoint's "
            "(logged in the ledger and TensorBoard). Without it, such a resume is refused."
        },
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue the latest checkpoint in output_dir (same run dir and step)."}
    )
    sandbox_workers: int | None = field(
        default=None,
        metadata={
            "help": "Sandbox child slots of each process (default: two per core, shared by the processes that "
            "run on one machine)."
        },
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

    def _check_field_types(self) -> None:
        """Each Flywheel field holds its declared type (YAML values reach the config unconverted), numbers are
        finite and integers at least 0 (at least 1 for `POSITIVE_FIELDS`)."""
        for name, annotation in inspect.get_annotations(FlywheelConfig).items():
            kind = annotation.removesuffix(" | None")
            value = getattr(self, name)
            if kind not in {"int", "float", "bool", "str", "list[str]"} or (value is None and kind != annotation):
                continue
            if kind == "list[str]":
                if isinstance(value, str):
                    raise ValueError(f"{name} must be a list, e.g. [{value}], not the string {value!r}")
                if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                    raise ValueError(f"{name} must be a list of strings, not {value!r}")
            elif kind in {"int", "float"}:
                integer = isinstance(value, int) and not isinstance(value, bool)
                if kind == "int" and not integer:
                    raise ValueError(f"{name} must be an integer, not {value!r}")
                if not integer and (not isinstance(value, float) or not math.isfinite(value)):
                    raise ValueError(f"{name} must be a finite number, not {value!r}")
                least = 1 if name in POSITIVE_FIELDS else 0
                if kind == "int" and value < least:
                    raise ValueError(f"{name} must be at least {least}, not {value}")
            elif not isinstance(value, bool if kind == "bool" else str):
                raise ValueError(f"{name} must be a {'boolean' if kind == 'bool' else 'string'}, not {value!r}")

    def _family_configs(self, known: list[str]) -> dict[str, Any]:
        """`family_configs` as a mapping (JSON text on the command line), each entry valid for its family."""
        from flywheel.envs import get_family_class

        values = self.family_configs
        if isinstance(values, str):
            try:
                values = json.loads(values)
            except json.JSONDecodeError as error:
                raise ValueError(f"family_configs is not valid JSON: {error}") from None
        values = values or {}
        if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
            raise ValueError(f"family_configs must map family names to settings, not {self.family_configs!r}")
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"family_configs names unknown families: {unknown}")
        for name, settings in values.items():
            try:
                get_family_class(name).config_class.from_dict(settings)
            except (TypeError, ValueError) as error:
                raise ValueError(f"family_configs[{name}]: {error}") from None
        return values

    def _check_selfplay(self) -> None:
        from flywheel.envs import family_names, get_family_class, load_plugins

        self._check_field_types()
        load_plugins()
        known = family_names()
        if not self.families:
            raise ValueError("families is empty; choose from " + ", ".join(known))
        unknown = [name for name in self.families if name not in known]
        if unknown:
            raise ValueError(f"unknown families {unknown}; registered: {', '.join(known)}")
        if len(set(self.families)) != len(self.families):
            raise ValueError(f"families lists a family twice: {self.families}")
        # Settings of registered families that are not played are dropped, so `--families` can narrow a recipe.
        self.family_configs = {k: v for k, v in self._family_configs(known).items() if k in self.families}
        bad_roles = [role for role in self.roles if role not in ROLES]
        if bad_roles or not self.roles:
            raise ValueError(f"roles must be a non-empty subset of {ROLES}, not {self.roles}")
        solve_only = [name for name in self.families if "propose" not in get_family_class(name).roles]
        if solve_only and "propose" in self.roles:
            raise ValueError(f"{solve_only} are solve-only (tasks from task files); play them with roles: [solve]")
        if self.advantage_estimator not in ESTIMATORS:
            raise ValueError(f"advantage_estimator must be one of {ESTIMATORS}, not {self.advantage_estimator!r}")
        if self.template not in TEMPLATES:
            raise ValueError(f"template must be one of {TEMPLATES}, not {self.template!r}")
        self.guards_config()
        if self.warm_start_learning_rate <= 0:
            raise ValueError(f"warm_start_learning_rate must be above 0, not {self.warm_start_learning_rate}")
        if self.sandbox_workers is not None:
            try:
                SandboxConfig(workers=self.sandbox_workers)
            except ValueError as error:
                raise ValueError(f"sandbox_workers: {error}") from None
        for entry in self.seed_files:
            family, sep, _ = entry.partition("=")
            if not sep or family not in self.families:
                raise ValueError(f"seed_files entry {entry!r} must be FAMILY=PATH with FAMILY in families")
        if self.use_vllm and self.vllm_importance_sampling_correction:
            # The self-play batch is built outside TRL's scoring path, which applies this correction.
            self.vllm_importance_sampling_correction = False
        if self.eval_samples > 1 and self.eval_temperature <= 0:
            raise ValueError("eval_samples above 1 needs eval_temperature above 0 (greedy answers are all the same)")
        if not 0.0 <= self.real_task_share <= 1.0:
            raise ValueError(f"real_task_share must be in [0, 1], not {self.real_task_share}")
        if self.real_task_share > 0 and not self.real_task_files:
            raise ValueError("real_task_share > 0 needs real_task_files")
        self.reward_config().validate()
        rails = self.rails_config()
        if not isinstance(self.family_configs, str):
            from flywheel.envs import make_family

            for name in self.families:  # each family's settings, and its bounds against the rails
                make_family(name, (self.family_configs or {}).get(name), rails=rails)

    @property
    def rollouts_per_step(self) -> int:
        """Trained rollouts per self-play step (the estimation samples are not trained on)."""
        per_family = (self.proposer_batch_size if "propose" in self.roles else 0) + (
            self.solver_batch_size if "solve" in self.roles else 0
        )
        return len(self.families) * per_family * self.num_generations

    def rails_config(self) -> Rails:
        """The run's rails (validated); raises ValueError on unknown or impossible settings."""
        values = json.loads(self.rails) if isinstance(self.rails, str) else self.rails
        if values is not None and not isinstance(values, dict):
            raise ValueError(f"rails must be a mapping of settings, not {self.rails!r}")
        return Rails.from_dict(values)

    def guards_config(self) -> GuardsConfig:
        """The run's guards (validated); raises ValueError on unknown or impossible settings."""
        values = self.guards
        if isinstance(values, str):
            try:
                values = json.loads(values)
            except json.JSONDecodeError as error:
                raise ValueError(f"guards is not valid JSON: {error}") from None
        if values is not None and not isinstance(values, dict):
            raise ValueError(f"guards must be a mapping of settings, not {self.guards!r}")
        return GuardsConfig.from_dict(values)

    def reward_config(self) -> RewardConfig:
        return RewardConfig(**{f.name: getattr(self, f.name) for f in fields(RewardConfig)})

    def selfplay_fields(self) -> dict[str, Any]:
        """The fields FlywheelConfig declares itself (not those it inherits from GRPOConfig) with their values,
        for the TensorBoard recipe panel."""
        own = inspect.get_annotations(FlywheelConfig)
        return {f.name: getattr(self, f.name) for f in sorted(fields(self), key=lambda f: f.name) if f.name in own}
