"""Format warm-up: a short supervised stage before self-play that teaches the answer format.

A randomly initialised model never writes a parseable proposal or answer, so every self-play reward is
the same and every advantage is zero: nothing can be learned. The warm-up trains on (prompt, target)
pairs of every played family and role, rendered by the `Agent` exactly as self-play renders them:

* solve   — ``family.solver_prompt(task)`` -> ``family.reference_answer(task)``;
* propose — ``family.proposer_prompt(K references, rng)`` -> a ``family.warmup_proposal`` text that
  ``family.propose`` accepted, so every proposer target is a task the sandbox or SymPy validated.

The tasks are the family's seeds plus its accepted warm-up proposals, which (like the buffer in self-play)
also serve as the references of later proposer prompts. A family without a generator (the default
`TaskFamily.warmup_proposal`) contributes solver examples of its seed tasks only.

Training is a plain PyTorch loop (AdamW, cross-entropy on the target tokens and EOS only): the batches are
a few short sequences, and TRL's ``SFTTrainer`` would add a second trainer, its own output directory and
dataset preprocessing for no gain here.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from flywheel.agents import Agent
from flywheel.envs.base import ROLES, Prompt, Task, TaskFamily
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from flywheel.train.config import FlywheelConfig

PROPOSAL_BATCH = 16
"""Warm-up proposals validated per `family.propose` call."""
MAX_ATTEMPTS_PER_EXAMPLE = 4
"""Generated proposals per wanted proposer example before a family's generator is given up on."""


@dataclass(frozen=True)
class WarmupExample:
    """One supervised pair: the rendered model input and the completion the model should generate, with
    the family prompt it renders and the task it solves or proposes (to re-check it)."""

    family: str
    role: str
    prompt: str
    completion: str
    source: Prompt
    task: Task


def family_examples(
    family: TaskFamily, agent: Agent, per_role: int, k_references: int, rng: random.Random
) -> list[WarmupExample]:
    """Up to `per_role` proposer and exactly `per_role` solver examples of one family (see module doc)."""
    pool: list[Task] = family.seed_tasks()
    known = {task.task_id for task in pool}
    proposer: list[WarmupExample] = []
    attempts = 0
    while len(proposer) < per_role and attempts < MAX_ATTEMPTS_PER_EXAMPLE * per_role:
        prompts = [
            family.proposer_prompt(rng.sample(pool, min(k_references, len(pool))), rng) for _ in range(PROPOSAL_BATCH)
        ]
        texts = [family.warmup_proposal(prompt, rng) for prompt in prompts]
        if any(text is None for text in texts):
            break  # the family has no generator
        attempts += len(texts)
        for prompt, text, result in zip(prompts, texts, family.propose(texts, prompts), strict=True):
            if isinstance(result, Task) and result.task_id not in known and len(proposer) < per_role:
                known.add(result.task_id)
                pool.append(result)
                rendered = agent.render(prompt, "propose")
                proposer.append(
                    WarmupExample(family.name, "propose", rendered, agent.raw_completion(text), prompt, result)
                )
    order = rng.sample(pool, len(pool))
    solver = []
    for task in (order[i % len(order)] for i in range(per_role)):
        prompt = family.solver_prompt(task)
        target = agent.raw_completion(family.reference_answer(task))
        solver.append(WarmupExample(family.name, "solve", agent.render(prompt, "solve"), target, prompt, task))
    return proposer + solver


def build_examples(
    families: Mapping[str, TaskFamily],
    agent: Agent,
    n_examples: int,
    k_references: int,
    seed: int,
    roles: Sequence[str] = ROLES,
) -> list[WarmupExample]:
    """About `n_examples` examples, split evenly over the families and `roles`, in a seeded shuffled order."""
    rng = random.Random(seed)
    per_role = max(1, n_examples // (len(families) * len(roles)))
    examples = [
        example
        for family in families.values()
        for example in family_examples(family, agent, per_role, k_references, rng)
        if example.role in roles
    ]
    rng.shuffle(examples)
    return examples


def _batch(tokenizer: Any, examples: Sequence[WarmupExample], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Left-padded ids of prompt + completion + EOS, their mask, and the target ids (-100 outside the
    completion) aligned with the last `width` positions, `width` being the longest completion + EOS."""
    prompts = tokenizer(text=[e.prompt for e in examples])["input_ids"]  # as TRL tokenizes prompts
    completions = [
        [*ids, tokenizer.eos_token_id]
        for ids in tokenizer(text=[e.completion for e in examples], add_special_tokens=False)["input_ids"]
    ]
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]
    length = max(map(len, rows))
    width = max(map(len, completions))
    ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, completion) in enumerate(zip(rows, completions, strict=True)):
        ids[i, length - len(row) :] = torch.tensor(row)
        mask[i, length - len(row) :] = 1
        labels[i, width - len(completion) :] = torch.tensor(completion)
    return ids.to(device), mask.to(device), labels.to(device), width


def train_format(
    model: Any,
    tokenizer: Any,
    examples: Sequence[WarmupExample],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    log: Callable[[int, float], None] | None = None,
    seconds: float | None = None,
) -> list[float]:
    """`steps` AdamW steps of next-token cross-entropy on the completions; returns the loss per step.

    Batches walk through the examples in a seeded order, reshuffled every pass. `log(step, loss)` is
    called after every step (1-based). With `seconds`, training also stops at the first step that ends
    after that much time."""
    deadline = None if seconds is None else time.monotonic() + seconds
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    was_training = model.training
    model.train()
    order: list[WarmupExample] = []
    losses: list[float] = []
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            order += rng.sample(list(examples), len(examples))
        batch, order = order[:batch_size], order[batch_size:]
        ids, mask, labels, width = _batch(tokenizer, batch, model.device)
        # Logits of the positions that predict the completion tokens only: the last `width` + 1 minus one.
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=width + 1).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if log is not None:
            log(step, losses[-1])
        if deadline is not None and time.monotonic() >= deadline:
            break
    model.train(was_training)
    return losses


def warm_up(model: Any, tokenizer: Any, families: Mapping[str, TaskFamily], config: FlywheelConfig) -> list[float]:
    """The warm-up of a fresh `flywheel train` run: build the examples, train, and log ``warm_start/loss`` to
    the run's TensorBoard directory at steps ``1 - warm_start_steps .. 0`` (so it ends where self-play's step 1
    begins, and a resume's purge of later steps never hides it). Returns the loss per step."""
    from accelerate import PartialState
    from torch.utils.tensorboard import SummaryWriter

    agent = Agent(model, tokenizer, template=config.template)
    examples = build_examples(
        families, agent, config.warm_start_examples, config.k_references, config.seed, config.roles
    )
    main = PartialState().is_main_process
    writer = None
    if "tensorboard" in config.report_to and main:
        writer = SummaryWriter(log_dir=str(Path(config.output_dir) / "runs" / "selfplay"))
    progress = tqdm(total=config.warm_start_steps, desc="warm start", dynamic_ncols=True, disable=not main)
    interrupted = False

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    def log(step: int, loss: float) -> None:
        if writer is not None:
            writer.add_scalar("warm_start/loss", loss, step - config.warm_start_steps)
        progress.update(1)
        progress.set_postfix({"loss": f"{loss:.3g}"}, refresh=False)
        if interrupted:
            raise KeyboardInterrupt

    # Ctrl-C sets a flag that ends the warm start after the current step: a KeyboardInterrupt raised where the
    # signal lands could fall in a finalizer, where Python drops it.
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, interrupt) if on_main_thread else None
    try:
        return train_format(
            model,
            tokenizer,
            examples,
            steps=config.warm_start_steps,
            batch_size=config.warm_start_batch_size,
            learning_rate=config.warm_start_learning_rate,
            seed=config.seed,
            log=log,
        )
    finally:
        if on_main_thread:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        progress.close()
        if writer is not None:
            writer.close()
