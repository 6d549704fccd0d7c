"""`FlywheelTrainer`: TRL's GRPOTrainer whose batch is one self-play step (AZR Algorithm 1).

TRL's training loop, loss (GRPO/DAPO/PPO-clip via ``num_iterations``), optimizer, checkpointing and
logging are used as they are. Only the batch-building step, `_generate_and_score_completions`, is
replaced: the train dataset is a stream of step placeholders and each call plays one step:

1. propose   — for every family, `proposer_batch_size` prompts with K buffer references, each sampled
               `num_generations` times (TRL's `_generate`, so vLLM and model unwrapping keep working);
2. validate  — `family.propose` turns texts into tasks or rejections (the sandbox computes gold answers);
3. estimate  — every valid task is attempted `n_solver_samples` times by the current policy (generated,
               not trained on); its solve rate gives the proposer reward (`RewardConfig.proposer_reward`),
               an invalid proposal gets `proposer_invalid`; valid tasks enter the family buffer;
4. solve     — `solver_batch_size` tasks per family (this step's new tasks first, then random buffer
               tasks), each sampled `num_generations` times, verified by `family.verify`;
5. update    — advantages (GRPO groups or TRR++ per family x role) over both roles; TRL does the rest.

This override is written against trl==1.16.0 (pinned in pyproject); tests/test_train_trl_contract.py
fails loudly if the contract it relies on changes.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather, gather_object
from datasets import Dataset
from flywheel.agents import Agent
from flywheel.envs.base import Prompt, Task
from flywheel.train.advantages import compute_advantages, no_signal_share
from flywheel.train.config import FlywheelConfig
from flywheel.train.metrics import SelfPlayProgress, SelfPlayTensorBoard, StepRecord
from flywheel.train.selfplay import Answer, Proposal, SelfPlay
from transformers import ProgressCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad, use_adapter

StepHook = Callable[["FlywheelTrainer", "StepReport"], None]
"""Called after every self-play step's optimizer update; see docs/training.md ("Hooks")."""


@dataclass
class StepReport:
    """What a step hook sees: the self-play step, TRL's global step and the step's scalar metrics."""

    step: int
    global_step: int
    metrics: dict[str, float]
    record: StepRecord


@dataclass
class Rollouts:
    """Trained rollouts of one role: token ids, decoded texts and, once scored, rewards and group labels."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    rewards: list[float] = field(default_factory=list)
    groups: list[tuple[str, int]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


def verifier_reward(**_: Any) -> list[float]:
    """Placeholder for GRPOTrainer's required `reward_funcs`: self-play rewards come from the families'
    verifiers inside `_generate_and_score_completions`, which never calls reward functions."""
    raise RuntimeError("FlywheelTrainer scores rollouts with the task families; reward_funcs are not used")


class FlywheelTrainer(GRPOTrainer):
    args: FlywheelConfig

    def __init__(
        self,
        model: Any,
        args: FlywheelConfig,
        game: SelfPlay,
        processing_class: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        peft_config: Any = None,
        hooks: Sequence[StepHook] = (),
    ) -> None:
        placeholders = Dataset.from_dict(
            {"prompt": ["<self-play step>"] * (args.generation_batch_size // args.num_generations)}
        )
        super().__init__(
            model=model,
            reward_funcs=[verifier_reward],
            args=args,
            train_dataset=placeholders,
            processing_class=processing_class,
            callbacks=callbacks,
            peft_config=peft_config,
        )
        self.game = game
        self.agent = Agent(self.model, self.processing_class, template=args.template)
        self.hooks = list(hooks)
        self.last_record: StepRecord | None = None
        self.tensorboard: SelfPlayTensorBoard | None = None
        if self.pop_callback(TensorBoardCallback) is not None:
            self.tensorboard = SelfPlayTensorBoard(Path(args.output_dir) / "runs" / "selfplay", args)
            self.add_callback(self.tensorboard)
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(SelfPlayProgress())
        self.add_callback(SelfPlayCheckpoint(self))
        self.add_callback(StepHooks(self))

    # --- one self-play step ----------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor | Any]:
        args, game = self.args, self.game
        game.step += 1
        record = StepRecord(step=game.step, families=list(game.families))
        batches: list[Rollouts] = []

        if "propose" in args.roles:
            # 1. Propose: K references per prompt, num_generations samples per prompt.
            prompts = [
                (name, p) for name in game.families for p in game.proposer_prompts(name, args.proposer_batch_size)
            ]
            with record.timed("generate_propose"):
                proposed = self._rollouts(
                    [self.agent.render(p, "propose") for _, p in prompts], args.max_proposer_completion_length
                )
            repeated = [item for item in prompts for _ in range(args.num_generations)]

            # 2. Validate: the family parses each text and computes gold answers in its sandbox.
            proposals: list[Proposal] = []
            with record.timed("validate"):
                for name, family in game.families.items():
                    rows = [i for i, (owner, _) in enumerate(repeated) if owner == name]
                    results = family.propose([proposed.texts[i] for i in rows], [repeated[i][1] for i in rows])
                    proposals += [
                        Proposal(name, repeated[i][1], proposed.texts[i], r) for i, r in zip(rows, results, strict=True)
                    ]

            # 3. Estimate each valid task's solve rate with n samples of the current policy (not trained on).
            valid = [i for i, proposal in enumerate(proposals) if proposal.task is not None]
            estimates = self._attempt(
                [proposals[i].task for i in valid], args.n_solver_samples, record, "generate_estimate"
            )
            n = args.n_solver_samples
            solve_rates = {
                i: sum(a.verdict.correct for a in estimates[j * n : (j + 1) * n]) / n for j, i in enumerate(valid)
            }
            game.score_proposals(proposals, solve_rates)
            for name in game.families:
                record.added[name] = game.add_tasks(name, [p.task for p in proposals if p.family == name and p.task])
            game.record_proposals(proposals)
            game.record_answers(estimates, "estimate")
            record.proposals, record.estimates = proposals, estimates

            proposed.rewards = [proposal.reward for proposal in proposals]
            proposed.groups = [("propose", i // args.num_generations) for i in range(len(proposals))]
            proposed.keys = [f"{proposal.family}/propose" for proposal in proposals]
            batches.append(proposed)

        if "solve" in args.roles:
            # 4. Solve: this step's new tasks first, then random buffer tasks; verified by the family.
            tasks = [
                task
                for name in game.families
                for task in game.solver_tasks(name, args.solver_batch_size, fresh=record.added_count(name))
            ]
            solver_prompts = [game.families[task.family].solver_prompt(task) for task in tasks]
            with record.timed("generate_solve"):
                solved = self._rollouts(
                    [self.agent.render(p, "solve") for p in solver_prompts], args.max_solver_completion_length
                )
            repeated_tasks = [task for task in tasks for _ in range(args.num_generations)]
            repeated_prompts = [p for p in solver_prompts for _ in range(args.num_generations)]
            answers = self._score(repeated_tasks, repeated_prompts, solved.texts, record)
            game.record_answers(answers, "solve")
            record.answers = answers

            solved.rewards = [answer.reward for answer in answers]
            solved.groups = [("solve", i // args.num_generations) for i in range(len(answers))]
            solved.keys = [f"{answer.family}/solve" for answer in answers]
            batches.append(solved)

        # 5. Advantages over both roles, then the tensors TRL's loss expects.
        rewards = [r for b in batches for r in b.rewards]
        groups = [g for b in batches for g in b.groups]
        keys = [k for b in batches for k in b.keys]
        advantages = self._advantages(rewards, groups, keys)
        with record.timed("logps"):
            output = self._training_batch(batches, advantages)
        # The no-signal metrics count the groups the estimator baselines over: prompts (grpo) or keys (trr++).
        baseline_groups = groups if args.advantage_estimator == "grpo" else keys
        record.rewards, record.groups, record.keys = rewards, baseline_groups, keys
        record.advantages = advantages.tolist()
        record.completion_lengths = [len(ids) for b in batches for ids in b.completion_ids]
        record.buffer_sizes = {name: len(buffer) for name, buffer in game.buffers.items()}
        self._log_step(record)
        return output

    # --- generation through TRL ------------------------------------------------------------------
    def _rollouts(self, texts: Sequence[str], max_tokens: int) -> Rollouts:
        """`num_generations` completions per rendered prompt via TRL's `_generate` (trained rollouts)."""
        repeated = [text for text in texts for _ in range(self.num_generations)]
        with self._completion_budget(max_tokens):
            prompt_ids, completion_ids, _, completions, *_ = self._generate(repeated)
        return Rollouts(prompt_ids, completion_ids, [self.agent.completion_text(c) for c in completions])

    def _samples(self, texts: Sequence[str], n: int, max_tokens: int) -> list[str]:
        """`n` completions per rendered prompt via TRL's `_generate_single_turn`, without training metrics."""
        prompt_ids, _, _ = self._tokenize_prompts([text for text in texts for _ in range(n)])
        with self._completion_budget(max_tokens):
            completion_ids, _ = self._generate_single_turn(prompt_ids, None, {}, n)
        decoded = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        return [self.agent.completion_text(text) for text in decoded]

    @contextmanager
    def _completion_budget(self, max_tokens: int) -> Iterator[None]:
        """Proposer and solver completions have their own length limits; TRL's generation has one."""
        target, attribute = (
            (self.vllm_generation, "max_completion_length")
            if self.use_vllm
            else (self.generation_config, "max_new_tokens")
        )
        previous = getattr(target, attribute)
        setattr(target, attribute, max_tokens)
        try:
            yield
        finally:
            setattr(target, attribute, previous)

    def _attempt(self, tasks: Sequence[Task], n: int, record: StepRecord, timer: str) -> list[Answer]:
        """`n` untrained solver samples per task, scored; answers are grouped per task, in order."""
        if not tasks:
            return []
        prompts = [self.game.families[task.family].solver_prompt(task) for task in tasks]
        with record.timed(timer):
            texts = self._samples(
                [self.agent.render(p, "solve") for p in prompts], n, self.args.max_solver_completion_length
            )
        return self._score([t for t in tasks for _ in range(n)], [p for p in prompts for _ in range(n)], texts, record)

    def _score(
        self, tasks: Sequence[Task], prompts: Sequence[Prompt], texts: Sequence[str], record: StepRecord
    ) -> list[Answer]:
        """Verify answers family by family (one batched call each), keeping the input order."""
        answers: list[Answer | None] = [None] * len(tasks)
        with record.timed("verify"):
            for name in self.game.families:
                rows = [i for i, task in enumerate(tasks) if task.family == name]
                if rows:
                    scored = self.game.score_answers(
                        name, [tasks[i] for i in rows], [prompts[i] for i in rows], [texts[i] for i in rows]
                    )
                    for i, answer in zip(rows, scored, strict=True):
                        answers[i] = answer
        return [answer for answer in answers if answer is not None]

    # --- advantages and tensors ------------------------------------------------------------------
    def _advantages(self, rewards: list[float], groups: list[tuple[str, int]], keys: list[str]) -> torch.Tensor:
        """Advantages over the global batch (all processes), sliced back to this process's rows."""
        rank = self.accelerator.process_index
        local = [(reward, (rank, *group), key) for reward, group, key in zip(rewards, groups, keys, strict=True)]
        everything = gather_object(local)
        start = sum(gather_object([len(local)])[:rank])
        advantages = compute_advantages(
            self.args.advantage_estimator,
            torch.tensor([row[0] for row in everything], dtype=torch.float32),
            [row[1] for row in everything],
            [row[2] for row in everything],
            scale=self.scale_rewards,
        )
        return advantages[start : start + len(local)].to(self.accelerator.device)

    def _training_batch(self, batches: Sequence[Rollouts], advantages: torch.Tensor) -> dict[str, torch.Tensor | Any]:
        """Pad ids into TRL's batch dict; add old (PPO-clip) and reference (KL) log-probs when needed."""
        device = self.accelerator.device
        pad_id = self._tokenizer.pad_token_id
        prompt_list = [torch.tensor(ids) for b in batches for ids in b.prompt_ids]
        completion_list = [torch.tensor(ids, dtype=torch.long) for b in batches for ids in b.completion_ids]
        prompt_ids = pad(prompt_list, padding_value=pad_id, padding_side="left").to(device)
        prompt_mask = pad([torch.ones_like(t) for t in prompt_list], padding_value=0, padding_side="left").to(device)
        completion_ids = pad(completion_list, padding_value=pad_id, padding_side="right").to(device)
        completion_mask = pad([torch.ones_like(t) for t in completion_list], padding_value=0, padding_side="right").to(
            device
        )
        if self.mask_truncated_completions:
            stops = {*self.eos_token_ids, pad_id}
            finished = torch.tensor(
                [len(ids) > 0 and ids[-1] in stops for b in batches for ids in b.completion_ids], device=device
            )
            completion_mask = completion_mask * finished.unsqueeze(1).int()
        output: dict[str, torch.Tensor | Any] = {
            "prompt_ids": prompt_ids,
            "prompt_mask": prompt_mask,
            "completion_ids": completion_ids,
            "completion_mask": completion_mask,
            "advantages": advantages,
            "num_items_in_batch": gather(completion_mask.sum()).sum(),
        }
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        chunk = self.args.per_device_train_batch_size
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            # PPO-clip (num_iterations > 1) reuses this batch after updates: keep the sampling policy's log-probs.
            if self.args.gradient_accumulation_steps % (self.args.steps_per_generation * self.num_iterations) != 0:
                output["old_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention_mask, logits_to_keep, batch_size=chunk
                )
            if self.beta != 0.0:
                if self.ref_model is not None:
                    reference = self.ref_model
                    output["ref_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                        reference, input_ids, attention_mask, logits_to_keep, batch_size=chunk
                    )
                else:  # PEFT: the reference is the base model (adapter disabled) or the frozen "ref" adapter
                    unwrapped = self.accelerator.unwrap_model(self.model)
                    with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                        output["ref_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                            self.model, input_ids, attention_mask, logits_to_keep, batch_size=chunk
                        )
        return output

    # --- logging ---------------------------------------------------------------------------------
    def _log_step(self, record: StepRecord) -> None:
        """Self-play scalars go through TRL's metric log (-> TensorBoard `train/...`), the rest to our writer."""
        metrics = self._metrics["train"]
        for tag, value in record.scalars().items():
            metrics[tag].append(value)
        rewards = torch.tensor(record.rewards)
        metrics["reward"].append(rewards.mean().item())
        metrics["reward_std"].append(rewards.std().item() if rewards.numel() > 1 else 0.0)
        metrics["frac_reward_zero_std"].append(no_signal_share(rewards, record.groups))
        self._logs["prompt"].extend(record.prompt_texts())
        self._logs["completion"].extend(record.completion_texts())
        self._logs["rewards"]["selfplay"].extend(record.rewards)
        self._logs["advantages"].extend(record.advantages)
        if self.tensorboard is not None and self.accelerator.is_main_process:
            self.tensorboard.write_step(record, self.state.global_step + 1, self.args.text_log_every)
        self.last_record = record

    def sample_answers(self, tasks: Sequence[Task], n: int = 1) -> list[Answer]:
        """`n` scored solver answers per task from the current policy, for evaluation hooks."""
        record = StepRecord(step=self.game.step, families=list(self.game.families))
        return self._attempt(tasks, n, record, "generate_eval")


class SelfPlayCheckpoint(TrainerCallback):
    """Adds the self-play state (counters, RNG, task store copy) to every TRL checkpoint."""

    def __init__(self, trainer: FlywheelTrainer) -> None:
        self.trainer = trainer

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.trainer.game.save(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


class StepHooks(TrainerCallback):
    """Calls the trainer's step hooks after each optimizer step that followed a new self-play step."""

    def __init__(self, trainer: FlywheelTrainer) -> None:
        self.trainer = trainer
        self.reported = -1

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        record = self.trainer.last_record
        if record is None or record.step == self.reported:
            return
        self.reported = record.step
        report = StepReport(record.step, state.global_step, record.scalars(), record)
        for hook in self.trainer.hooks:
            hook(self.trainer, report)


class GracefulInterrupt(TrainerCallback):
    """First Ctrl-C: finish the current step, save a checkpoint and stop. Second Ctrl-C: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nflywheel: interrupt received; saving a checkpoint after this step (Ctrl-C again to abort)", flush=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def diversity_alarm(duplicate_rate: float, valid_rate: float) -> StepHook:
    """A step hook that warns when a family's proposals collapse (mostly duplicates, or rarely valid)."""
    from transformers.utils import logging

    logger = logging.get_logger("flywheel.train")

    def hook(trainer: FlywheelTrainer, report: StepReport) -> None:
        for name in trainer.game.families:
            duplicates = report.metrics.get(f"selfplay/{name}/propose/duplicate_rate")
            valid = report.metrics.get(f"selfplay/{name}/propose/valid_rate")
            if duplicates is not None and duplicates > duplicate_rate:
                logger.warning(f"diversity alarm at step {report.step}: {name} duplicate rate {duplicates:.2f}")
            if valid is not None and valid < valid_rate:
                logger.warning(f"diversity alarm at step {report.step}: {name} valid rate {valid:.2f}")

    return hook


def periodic_eval(tasks: Sequence[Task], every: int) -> StepHook:
    """A step hook that samples one answer per real task every `every` self-play steps and writes
    ``eval/{family}/accuracy`` to TensorBoard."""

    def hook(trainer: FlywheelTrainer, report: StepReport) -> None:
        if report.step % every != 0:
            return
        correct: dict[str, list[float]] = defaultdict(list)
        for answer in trainer.sample_answers(tasks):
            correct[answer.family].append(float(answer.verdict.correct))
        if trainer.tensorboard is not None and trainer.accelerator.is_main_process:
            for name, values in correct.items():
                trainer.tensorboard.scalar(f"eval/{name}/accuracy", sum(values) / len(values), report.global_step)

    return hook
