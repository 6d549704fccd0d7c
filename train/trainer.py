"""`FlywheelTrainer`: TRL's GRPOTrainer whose batch is one self-play step (AZR Algorithm 1).

TRL's training loop, loss (GRPO/DAPO/PPO-clip via ``num_iterations``), optimizer, checkpointing and
logging are used as they are. Only the batch-building step, `_generate_and_score_completions`, is
replaced: the train dataset is a stream of step placeholders and each call plays one step:

1. propose   — for every family, `proposer_batch_size` prompts with K buffer references, each sampled
               `num_generations` times (TRL's `_generate`, so vLLM and model unwrapping keep working);
2. validate  — `family.propose` turns texts into tasks or rejections (the sandbox computes gold answers),
               then the data gate rejects duplicates and over-quota structures;
3. estimate  — every valid task is attempted `n_solver_samples` times by the current policy (generated,
               not trained on); its solve rate gives the proposer reward (`RewardConfig.proposer_reward`),
               an invalid proposal gets `proposer_invalid`; valid tasks enter the family buffer;
4. solve     — `solver_batch_size` tasks per family (this step's new tasks first, then random buffer
               tasks), each sampled `num_generations` times, verified by `family.verify`;
5. update    — advantages (GRPO groups or TRR++ per family x role) over both roles; TRL does the rest.

Each phase is one method (`_propose`, `_validate`, `_estimate`, `_solve`, `_update`). Proposals and answers are
scored by `flywheel.envs.scoring`, the same functions the Gymnasium environments call.

With several processes (`accelerate launch`) the main process owns the game's store, ledger and RNG: it draws
every process's prompts and tasks and broadcasts them, validates and scores every process's proposals once,
and writes the ledger; each process generates, verifies its own answers and trains on its share (one code
path: one process is the case of a single share). See docs/training.md ("One game over several processes").

This override is written against trl==1.16.0 (pinned in pyproject); tests/test_train_trl_contract.py
fails loudly if the contract it relies on changes.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate.utils import broadcast_object_list, gather, gather_object
from datasets import Dataset
from flywheel.agents import Agent
from flywheel.envs.base import Prompt, Task, TaskFamily
from flywheel.envs.scoring import (
    Answer,
    Proposal,
    add_valid,
    estimate_prompts,
    score_answers,
    score_proposals,
    validate_proposals,
)
from flywheel.train.advantages import global_advantages, no_signal_share
from flywheel.train.config import FlywheelConfig
from flywheel.train.guards import Guards
from flywheel.train.metrics import SelfPlayProgress, SelfPlayTensorBoard, StepRecord, buffer_diversity
from flywheel.train.model_card import model_card
from flywheel.train.rundir import publish_checkpoint, rotate_checkpoints, staging_dir
from flywheel.train.selfplay import SelfPlay
from transformers import ProgressCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad, selective_log_softmax_and_entropy, use_adapter

StepHook = Callable[["FlywheelTrainer", "StepReport"], None]
"""Called after every self-play step's optimizer update; see docs/training.md ("Hooks")."""

EVAL_HISTORY_FILE = "eval_history.jsonl"
"""In the run directory: one `eval_history` entry per line, kept across resumes."""
EVAL_BATCH_SIZE = 32
"""Held-out prompts per generation call of one process (`flywheel eval`'s default batch)."""

T = TypeVar("T")
R = TypeVar("R")


def split_like(values: Sequence[T], shares: Sequence[Sequence[Any]]) -> list[list[T]]:
    """`values` cut into consecutive lists as long as each of `shares`."""
    if len(values) != sum(len(share) for share in shares):
        raise ValueError(f"{len(values)} values for shares of {[len(share) for share in shares]}")
    cuts, start = [], 0
    for share in shares:
        cuts.append(list(values[start : start + len(share)]))
        start += len(share)
    return cuts


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

    def score(self, rewards: Sequence[float], families: Sequence[str], role: str, num_generations: int) -> None:
        """Set the rewards, the prompt groups (each prompt's `num_generations` rollouts, in order) and the
        family x role keys the advantage estimators baseline over."""
        self.rewards = list(rewards)
        self.groups = [(role, i // num_generations) for i in range(len(self.rewards))]
        self.keys = [f"{family}/{role}" for family in families]


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
        eval_sets: Mapping[str, Sequence[Task]] | None = None,
        eval_families: Mapping[str, TaskFamily] | None = None,
        real_tasks: Mapping[str, Sequence[Task]] | None = None,
        guards: Guards | None = None,
    ) -> None:
        """`eval_sets` ({source: tasks}) are evaluated at step 0, every `eval_every` steps and at the end, with
        `eval_families` for families not played; `real_tasks` ({family: tasks}) supply `real_task_share` of
        that family's solver tasks (docs/evaluation.md). `guards` check every step after its evaluation
        (`flywheel.train.guards`)."""
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
        if game.holds_store != self.accelerator.is_main_process:
            raise ValueError("the main process's game must hold the task store and no other process's may")
        self.game = game
        self.agent = Agent(self.model, self.processing_class, template=args.template)
        self.hooks = list(hooks)
        self.eval_sets = {source: list(tasks) for source, tasks in (eval_sets or {}).items()}
        self.eval_families = {**(eval_families or {}), **game.families}
        self.eval_history: list[dict[str, Any]] = []
        """Held-out results, oldest first: ``{"step": self-play step, "metrics": {"eval/{source}/accuracy": ...}}``."""
        self.real_tasks = {name: list(tasks) for name, tasks in (real_tasks or {}).items() if tasks}
        self.last_record: StepRecord | None = None
        self.known_reasons: dict[str, set[str]] = {}
        """Per family, the rejection reasons seen so far in this session (logged as 0 at steps without them)."""
        self.tensorboard: SelfPlayTensorBoard | None = None
        if self.pop_callback(TensorBoardCallback) is not None:
            self.tensorboard = SelfPlayTensorBoard(Path(args.output_dir) / "runs" / "selfplay", args)
            self.add_callback(self.tensorboard)
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(SelfPlayProgress())
        self.add_callback(StepHooks(self))
        if self.eval_sets:
            self.add_callback(HeldOutEvaluation(self))
        self.guards = guards
        if guards is not None:
            guards.attach(self)
            self.add_callback(guards)

    # --- one self-play step: propose, validate, estimate, solve, update --------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor | Any]:
        """One self-play step (AZR Algorithm 1); `inputs` are step placeholders. Scoring goes through
        `flywheel.envs.scoring`, the path the Gymnasium environments use too. With several processes, the main
        process draws, validates, scores proposals and records for all of them; each process generates and
        verifies its own share (docs/training.md, "One game over several processes")."""
        self.game.step += 1
        record = StepRecord(step=self.game.step, families=list(self.game.families), known_reasons=self.known_reasons)
        batches: list[Rollouts] = []
        if "propose" in self.args.roles:
            proposed, asked = self._propose(record)
            per_process = self._per_process(list(zip(asked, proposed.texts, strict=True)))
            proposals = None
            if self.accelerator.is_main_process:
                rows = [row for share in per_process for row in share]
                proposals = self._validate([a for a, _ in rows], [text for _, text in rows], record)
            self._estimate(proposals, record)
            shares = split_like([p.reward for p in proposals], per_process) if proposals is not None else None
            proposed.score(self._own_share(shares), [name for name, _ in asked], "propose", self.num_generations)
            batches.append(proposed)
        if "solve" in self.args.roles:
            batches.append(self._solve(record))
        return self._update(batches, record)

    def _propose(self, record: StepRecord) -> tuple[Rollouts, list[tuple[str, Prompt]]]:
        """1. Propose: per family, `proposer_batch_size` prompts showing K buffer references, each sampled
        `num_generations` times. The main process draws every process's prompts. Returns this process's rollouts
        and, per rollout, its family and prompt."""
        args, game = self.args, self.game
        drawn = None
        if self.accelerator.is_main_process:
            drawn = [
                [(name, p) for name in game.families for p in game.proposer_prompts(name, args.proposer_batch_size)]
                for _ in range(self.accelerator.num_processes)
            ]
        prompts = self._own_share(drawn)
        with record.timed("generate_propose"):
            proposed = self._rollouts(
                [self.agent.render(p, "propose") for _, p in prompts], args.max_proposer_completion_length
            )
        return proposed, [item for item in prompts for _ in range(args.num_generations)]

    def _validate(
        self, asked: Sequence[tuple[str, Prompt]], texts: Sequence[str], record: StepRecord
    ) -> list[Proposal]:
        """2. Validate (main process, every process's proposals): each family parses its texts and computes gold
        answers in its verifier; the data gate turns duplicates and over-quota structures into rejections."""
        return validate_proposals(self.game.families, asked, texts, record.timed, self.game.gates)

    def _estimate(self, proposals: Sequence[Proposal] | None, record: StepRecord) -> None:
        """3. Estimate: every valid task is attempted `n_solver_samples` times by the current policy (not trained
        on); its solve rate sets the proposer reward. Valid tasks then enter their family's buffer. Every process
        calls it and samples a share of the attempts; the main process passes the `proposals` (the others None),
        scores them and writes the ledger."""
        game, n = self.game, self.args.n_solver_samples
        prompts = self.from_main(estimate_prompts(game.families, proposals) if proposals is not None else None)
        texts: list[str] = []
        if prompts:
            with record.timed("generate_estimate"):
                texts = self._split_across_processes(prompts, lambda share: self._sample_solutions(share, n), n)
        if proposals is None:
            return

        def sampled(asked: Sequence[Prompt], k: int) -> list[str]:
            """The attempts the processes sampled for `prompts` (which are `asked`: `estimate_prompts`)."""
            return texts

        estimates = score_proposals(game.families, proposals, game.rewards, sampled, n, record.timed)
        for name in game.families:
            record.added[name] = add_valid(game.gates[name], [p for p in proposals if p.family == name], game.step)
        game.record_proposals(proposals)
        game.record_answers(estimates, "estimate")
        record.proposals, record.estimates = list(proposals), estimates

    def _solve(self, record: StepRecord) -> Rollouts:
        """4. Solve: per family and process, `solver_batch_size` tasks (this step's new tasks first, then buffer
        tasks, and real tasks when given; the main process draws them for every process), each sampled
        `num_generations` times, verified and rewarded."""
        args, game = self.args, self.game
        count, processes = args.solver_batch_size, self.accelerator.num_processes
        drawn = None
        if self.accelerator.is_main_process:
            tasks = {name: self._solver_tasks(name, record, count * processes) for name in game.families}
            drawn = [
                [
                    (task, game.families[name].solver_prompt(task))
                    for name in game.families
                    for task in tasks[name][index * count : (index + 1) * count]
                ]
                for index in range(processes)
            ]
        share = self._own_share(drawn)
        with record.timed("generate_solve"):
            solved = self._rollouts(
                [self.agent.render(p, "solve") for _, p in share], args.max_solver_completion_length
            )
        n = args.num_generations
        answers = self._score_answers(
            [t for t, _ in share for _ in range(n)], [p for _, p in share for _ in range(n)], solved.texts, record
        )
        solved.score([a.reward for a in answers], [a.family for a in answers], "solve", n)
        return solved

    def _score_answers(
        self, tasks: Sequence[Task], prompts: Sequence[Prompt], texts: Sequence[str], record: StepRecord
    ) -> list[Answer]:
        """Verify and reward this process's trained solver answers (`flywheel.envs.scoring.score_answers`, with
        this process's sandbox); the main process writes every process's answers to the ledger and the record.
        Returns this process's answers."""
        answers = score_answers(self.game.families, tasks, prompts, texts, self.game.rewards, record.timed)
        everyone = [answer for share in self._per_process(answers) for answer in share]
        if self.accelerator.is_main_process:
            self.game.record_answers(everyone, "solve")
            record.answers = everyone
        return answers

    def _update(self, batches: Sequence[Rollouts], record: StepRecord) -> dict[str, torch.Tensor | Any]:
        """5. Update: advantages over both roles and all processes (GRPO prompt groups or TRR++ family x role
        keys) and the tensors TRL's loss reads; TRL's optimizer step follows."""
        batch = global_advantages(
            self.args.advantage_estimator,
            [r for b in batches for r in b.rewards],
            [g for b in batches for g in b.groups],
            [k for b in batches for k in b.keys],
            scale=self.scale_rewards,
            process_index=self.accelerator.process_index,
            gather=gather_object,
        )
        with record.timed("logps"):
            output = self._training_batch(batches, batch.local().to(self.accelerator.device))
        # The no-signal metrics count the groups the estimator baselines over: prompts (grpo) or keys (trr++).
        record.rewards, record.keys = batch.rewards, batch.keys
        record.groups = batch.groups if self.args.advantage_estimator == "grpo" else list(batch.keys)
        record.advantages = batch.advantages.tolist()
        lengths = [len(ids) for b in batches for ids in b.completion_ids]
        record.completion_lengths = [length for share in self._per_process(lengths) for length in share]
        if self.accelerator.is_main_process:
            record.buffer_sizes = {name: len(buffer) for name, buffer in self.game.buffers.items()}
            for name, buffer in self.game.buffers.items():
                record.diversity[name] = buffer_diversity(buffer, self.args.diversity_window)
                record.repeated_structures[name] = buffer.repeated_structures(self.game.step)
        self._log_step(record)
        return output

    def _solver_tasks(self, name: str, record: StepRecord, count: int) -> list[Task]:
        """`count` solver tasks of the family from the buffer, `real_task_share` of them (rounded at random, so
        the share holds on average) drawn from its real tasks instead when it has any."""
        real = self.real_tasks.get(name)
        drawn: list[Task] = []
        if real:
            expected = self.args.real_task_share * count
            whole = int(expected)
            n_real = whole + (expected > whole and self.game.rng.random() < expected - whole)
            drawn = [self.game.rng.choice(real) for _ in range(n_real)]
            record.real_task_ids[name] = {task.task_id for task in drawn}
        return self.game.solver_tasks(name, count - len(drawn), fresh=record.added_count(name)) + drawn

    # --- the processes of a multi-process run (each call is collective: every process makes it) -----
    def from_main(self, value: T) -> T:
        """`value` as the main process has it (the others pass anything, e.g. None)."""
        return broadcast_object_list([value], from_process=0)[0]

    def _own_share(self, shares: Sequence[Sequence[T]] | None) -> list[T]:
        """This process's entry of the per-process `shares` the main process made (the others pass None)."""
        return list(self.from_main(shares)[self.accelerator.process_index])  # type: ignore[index]

    def _per_process(self, local: Sequence[T]) -> list[list[T]]:
        """Every process's `local` list, in process order, on every process."""
        return gather_object([list(local)])

    def _split_across_processes(
        self, items: Sequence[T], work: Callable[[list[T]], Sequence[R]], per_item: int
    ) -> list[R]:
        """`work` over `items` (the same on every process), split across the processes: each does a contiguous
        share (the first items repeated at the end so every share has the same size, as ZeRO-3 and TRL's vLLM
        modes need) and the `per_item` results of each item come back in item order on every process."""
        if not items:
            return []
        processes, index = self.accelerator.num_processes, self.accelerator.process_index
        size = -(-len(items) // processes)
        padded = [items[i % len(items)] for i in range(size * processes)]
        done = self._per_process(work(padded[index * size : (index + 1) * size]))
        return [result for share in done for result in share][: per_item * len(items)]

    # --- generation through TRL ------------------------------------------------------------------
    def _rollouts(self, texts: Sequence[str], max_tokens: int) -> Rollouts:
        """`num_generations` completions per rendered prompt via TRL's `_generate` (trained rollouts)."""
        repeated = [text for text in texts for _ in range(self.num_generations)]
        with self._completion_budget(max_tokens):
            prompt_ids, completion_ids, _, completions, *_ = self._generate(repeated)
        return Rollouts(prompt_ids, completion_ids, [self.agent.completion_text(c) for c in completions])

    def _sample_solutions(self, prompts: Sequence[Prompt], n: int) -> list[str]:
        """The current policy as a `flywheel.envs.scoring.Sampler`: `n` untrained solver completions per prompt,
        grouped by prompt, via TRL's `_generate_single_turn` (no training metrics)."""
        rendered = [self.agent.render(prompt, "solve") for prompt in prompts for _ in range(n)]
        prompt_ids, _, _ = self._tokenize_prompts(rendered)
        with self._completion_budget(self.args.max_solver_completion_length):
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

    # --- tensors ----------------------------------------------------------------------------------
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

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **multimodal: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """TRL's log-probs (temperature-scaled) and entropies of the last `logits_to_keep` tokens.

        On CPU, TRL's fused LM head scores every position, prompt included (it compacts to the completion
        tokens only with Triton), which made up about half of a laptop step. There the model computes only
        the `logits_to_keep` logits it needs, as `generate` does; elsewhere, and for MoE or multimodal
        inputs, TRL's path runs unchanged."""
        if input_ids.device.type != "cpu" or compute_aux_loss or any(v is not None for v in multimodal.values()):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss
            )
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids = input_ids[start : start + batch_size]
            with self.accelerator.autocast():
                logits = model(
                    input_ids=ids,
                    attention_mask=attention_mask[start : start + batch_size],
                    logits_to_keep=logits_to_keep + 1,
                ).logits[:, :-1]
            chunk_logps, chunk_entropies = selective_log_softmax_and_entropy(
                logits.float(), ids[:, -logits_to_keep:], temperature=self.temperature
            )
            logps.append(chunk_logps)
            entropies.append(chunk_entropies)
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None

    # --- logging ---------------------------------------------------------------------------------
    def _log_step(self, record: StepRecord) -> None:
        """Self-play scalars go through TRL's metric log (averaged over `logging_steps`; TensorBoard shows them as
        ``selfplay/...``), histograms and text straight to our writer."""
        metrics = self._metrics["train"]
        record.remember_reasons()
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

    # --- atomic checkpoints and the model card ----------------------------------------------------
    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: Any = None
    ) -> None:
        """``OUTPUT_DIR/README.md``: Flywheel's model card (`flywheel.train.model_card`), not TRL's generic one."""
        if self.is_world_process_zero():
            card = model_card(self.args, self.state.global_step, self.eval_history)
            card.save(Path(self.args.output_dir) / "README.md")

    def _get_output_dir(self, trial: Any) -> str:
        """TRL writes checkpoints into the staging directory; `_save_checkpoint` renames them into place."""
        return str(staging_dir(self.args.output_dir))

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """TRL's checkpoint plus the self-play state, written in staging and renamed into the run directory
        when complete, then old checkpoints rotated: a ``checkpoint-N`` is complete or absent."""
        staging = Path(self._get_output_dir(trial))
        staged = staging / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            self.game.save(staged)
            checkpoint = publish_checkpoint(staged, self.args.output_dir)
            best = self.guards.kept_checkpoint() if self.guards is not None else None
            keep = [checkpoint] if best is None else [checkpoint, best]
            rotate_checkpoints(self.args.output_dir, self.args.save_total_limit, keep=keep)
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    # --- held-out evaluation ----------------------------------------------------------------------
    def evaluate_held_out(self) -> dict[str, float]:
        """Evaluate `eval_sets` with the current policy (`eval_samples` answers per task, greedy at
        `eval_temperature` 0); append to `eval_history` and write the ``eval/`` scalars. Returns the scalars.

        Every process calls it: each generates the answers to its share of every batch of prompts, and every
        process verifies all answers, so all hold the same report; the main process writes it."""
        from flywheel.train.evaluate import agent_generator, evaluate

        args = self.args
        with unwrap_model_for_generation(
            self.model_wrapped,
            self.accelerator,
            gather_deepspeed3_params=args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
        ) as unwrapped:
            training = unwrapped.training
            unwrapped.eval()
            try:
                generate = agent_generator(
                    Agent(unwrapped, self.processing_class, template=args.template),
                    temperature=args.eval_temperature,
                    max_new_tokens=args.eval_max_new_tokens or args.max_solver_completion_length,
                    seed=args.seed + self.game.step,
                    batch_size=EVAL_BATCH_SIZE,
                )
                report = evaluate(
                    lambda prompts, samples: self._split_across_processes(
                        prompts, lambda share: generate(share, samples), 1
                    ),
                    self.eval_families,
                    self.eval_sets,
                    samples=args.eval_samples,
                    batch_size=EVAL_BATCH_SIZE,
                )
            finally:
                unwrapped.train(training)
        metrics = report.metrics()
        entry = {"step": self.game.step, "metrics": metrics}
        self.eval_history.append(entry)
        if self.accelerator.is_main_process:
            with open(Path(args.output_dir) / EVAL_HISTORY_FILE, "a", encoding="utf-8") as history:
                history.write(json.dumps(entry) + "\n")
            if self.tensorboard is not None:
                for tag, value in metrics.items():
                    self.tensorboard.scalar(tag, value, self.state.global_step)
        return metrics


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


class HeldOutEvaluation(TrainerCallback):
    """Runs `FlywheelTrainer.evaluate_held_out` at step 0 of a fresh run (after the warm start), every
    `eval_every` self-play steps and after the last step. A resumed run first reloads the history its
    earlier sessions wrote, up to the resumed step."""

    def __init__(self, trainer: FlywheelTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        trainer = self.trainer
        path = Path(args.output_dir) / EVAL_HISTORY_FILE
        if trainer.accelerator.is_main_process:
            if trainer.game.step > 0 and path.is_file():
                entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                trainer.eval_history = [entry for entry in entries if entry["step"] <= trainer.game.step]
            path.write_text("".join(json.dumps(entry) + "\n" for entry in trainer.eval_history), encoding="utf-8")
        trainer.eval_history = trainer.from_main(trainer.eval_history)
        if trainer.game.step == 0:
            trainer.evaluate_held_out()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        trainer = self.trainer
        step = trainer.game.step
        due = args.eval_every > 0 and step % args.eval_every == 0
        done = bool(trainer.eval_history) and trainer.eval_history[-1]["step"] == step
        if (due or control.should_training_stop) and not done:
            trainer.evaluate_held_out()


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
        """Every process stops after the step in which any of them was interrupted (collective)."""
        if any(gather_object([self.requested])):
            self.requested = True
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
