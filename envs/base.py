"""The task-family contract shared by every domain (code, math, plug-ins) and mode.

A *family* is one kind of self-proposed task, such as code deduction. It knows how to
ask the model for a new task (proposer prompt), how to read and validate a proposal,
how to pose the task to a solver and how to verify the solver's answer. It knows nothing
about environments, buffers or training; those are built on this contract.

Everything a family hands out is plain data: a `Task` payload is JSON-serialisable, so
buffers store it in SQLite and the audit ledger can print it.
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

MODES = ("deduction", "abduction", "induction")
ROLES = ("propose", "solve")


@dataclass(frozen=True)
class Task:
    """A validated task: everything needed to pose it and verify answers, gold included."""

    family: str
    payload: Mapping[str, Any]
    task_id: str

    def to_json(self) -> str:
        return json.dumps({"family": self.family, "task_id": self.task_id, "payload": self.payload}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Task:
        row = json.loads(text)
        return cls(family=row["family"], payload=row["payload"], task_id=row["task_id"])


@dataclass(frozen=True)
class Prompt:
    """A prompt for the model plus the context its parser needs (e.g. the program an induction
    proposal is about). `context` is JSON-serialisable."""

    text: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    """Why a proposal did not become a task. `reason` is a short key used as a TensorBoard tag
    (`parse_error`, `static_check`, `timeout`, `nondeterministic`, `output_too_long`, ...)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    """The verification result of one solver answer."""

    status: Literal["correct", "wrong", "format_error"]
    reason: str = ""

    @property
    def correct(self) -> bool:
        return self.status == "correct"


@dataclass
class FamilyConfig:
    """Base for per-family settings; subclasses add fields with `metadata={"help": ...}`."""

    terse_prompts: bool = field(
        default=False,
        kw_only=True,
        metadata={
            "help": "Leave the instructions out of the prompts (`TaskFamily.instructions`): the task, its blocks "
            "and the answer skeleton stay. For a small model trained from scratch, which learns the format in "
            "its warm start and would spend most of its compute on instruction tokens."
        },
    )

    def validate(self) -> None:
        """Raise ValueError on settings that cannot work. Subclasses extend this."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FamilyConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InductionConfig(FamilyConfig):
    """Settings every induction mode shares; a domain's config subclasses it."""

    n_inputs: int = field(
        default=10, metadata={"help": "Induction: inputs the proposer is asked for (and the most accepted)."}
    )
    min_inputs: int = field(
        default=4,
        metadata={"help": "Induction: fewest distinct inputs accepted (at least 2: one visible, one hidden)."},
    )
    max_message_chars: int = field(default=1000, metadata={"help": "Induction: longest accepted message."})

    def validate(self) -> None:
        super().validate()
        for name in ("n_inputs", "max_message_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if not 2 <= self.min_inputs <= self.n_inputs:
            raise ValueError(f"need 2 <= min_inputs <= n_inputs, got {self.min_inputs} and {self.n_inputs}")


def stable_hash(*parts: str) -> str:
    """A short content hash used for task ids and deduplication."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class TaskFamily(ABC):
    """One kind of self-proposed task. Subclass, set the class attributes, implement the
    abstract methods and decorate with `@register_family` (see docs/new_family.md).

    All verification methods take batches so a family can send one batched request to its
    verifier (the sandbox or the math checker) for a whole vector of environments.
    """

    name: ClassVar[str]
    """Registry key, e.g. ``code_deduction``."""
    env_name: ClassVar[str]
    """CamelCase stem of the Gymnasium ids, e.g. ``CodeDeduction`` -> ``flywheel/CodeDeduction-Solve-v0``."""
    domain: ClassVar[str]
    mode: ClassVar[str]
    roles: ClassVar[tuple[str, ...]] = ROLES
    """The roles the family plays; a solve-only family (tasks from files, every proposal rejected) sets
    ``("solve",)``."""
    config_class: ClassVar[type[FamilyConfig]] = FamilyConfig

    def __init__(self, config: FamilyConfig | None = None, verifiers: Any = None, rails: Any = None) -> None:
        """`verifiers` is a `flywheel.envs.resources.SharedVerifiers` giving lazy access to the
        sandbox and the math checker; families that need one create it through it (by default with the
        rails' limits). `rails` (`flywheel.envs.rails.Rails`, default: the default rails) holds the size
        bounds a family enforces on proposals."""
        from flywheel.envs.rails import Rails
        from flywheel.envs.resources import SharedVerifiers

        self.rails: Rails = rails if rails is not None else Rails()
        self.config = config if config is not None else self.config_class()
        self.config.validate()
        self.verifiers = (
            verifiers
            if verifiers is not None
            else SharedVerifiers(self.rails.sandbox_config(), self.rails.math_settings())
        )

    def instructions(self, text: str, end: str = "\n\n") -> str:
        """Prose in a prompt that tells the model what to do, followed by `end`; nothing when the config
        sets `terse_prompts`. Prompt builders wrap every such paragraph in it and write the task itself
        (its code, expression, pairs and answer skeleton) around it."""
        return "" if self.config.terse_prompts else text + end

    # --- proposer side -----------------------------------------------------------------
    @abstractmethod
    def seed_tasks(self) -> list[Task]:
        """Zero-data seeds that start a buffer (e.g. the identity function)."""

    @abstractmethod
    def proposer_prompt(self, references: Sequence[Task], rng: random.Random) -> Prompt:
        """Ask for a new task, showing `references` (K tasks from the buffer) as examples."""

    @abstractmethod
    def parse_proposal(self, text: str, prompt: Prompt) -> Mapping[str, Any] | Rejection:
        """Read a proposal from model text. Never raises on malformed text."""

    @abstractmethod
    def validate_proposals(self, proposals: Sequence[Mapping[str, Any]]) -> list[Task | Rejection]:
        """Turn parsed proposals into tasks (computing gold answers) or rejections, batched."""

    def propose(self, texts: Sequence[str], prompts: Sequence[Prompt]) -> list[Task | Rejection]:
        """Parse and validate a batch of proposer outputs, one result per text."""
        parsed = [self.parse_proposal(text, prompt) for text, prompt in zip(texts, prompts, strict=True)]
        valid_index = [i for i, item in enumerate(parsed) if not isinstance(item, Rejection)]
        validated = self.validate_proposals([parsed[i] for i in valid_index]) if valid_index else []
        results: list[Task | Rejection] = list(parsed)  # type: ignore[arg-type]
        for i, item in zip(valid_index, validated, strict=True):
            results[i] = item if isinstance(item, Rejection) else (self.triviality(item) or item)
        return results

    def example_proposals(self) -> list[tuple[Prompt, str]]:
        """Proposer prompts, each with a well-formed output that `propose` turns into a task: the family's own
        examples of valid proposals (a prompt usually shows the seed tasks). `flywheel.envs.testing.check_family`
        checks that they validate and that their tasks verify; it fails for a proposing family that declares
        none."""
        return []

    def warmup_proposal(self, prompt: Prompt, rng: random.Random) -> str | None:
        """A random well-formed proposer output for `prompt`, for the format warm-up (docs/training.md).

        It need not be valid: the warm-up keeps only texts that `propose` turns into tasks. The default,
        None, means the family has no generator; the warm-up then trains only its solver role, on its seeds.
        """
        return None

    # --- solver side -------------------------------------------------------------------
    @abstractmethod
    def solver_prompt(self, task: Task) -> Prompt:
        """Pose `task` to the solver. Deterministic given the task."""

    @abstractmethod
    def verify(self, tasks: Sequence[Task], answers: Sequence[str]) -> list[Verdict]:
        """Score solver outputs against their tasks, batched. Never raises on malformed text."""

    @abstractmethod
    def reference_answer(self, task: Task) -> str:
        """A well-formed solver output that answers `task` correctly."""

    @abstractmethod
    def wrong_answer(self, task: Task) -> str:
        """A well-formed solver output that answers `task` incorrectly."""

    # --- bookkeeping -------------------------------------------------------------------
    @abstractmethod
    def dedup_key(self, payload: Mapping[str, Any]) -> str:
        """Normalised content that identifies duplicates (e.g. an AST dump of the program)."""

    def triviality(self, task: Task) -> Rejection | None:
        """A ``trivial`` rejection when a validated proposal gives its answer away (an output equal to an
        input, a constant function); part of the data gate (`flywheel.envs.gate`), checked by `propose` (not
        by `validate_proposals`, so seeds such as AZR's identity function stay valid). Default: never."""
        return None

    def structure_key(self, payload: Mapping[str, Any]) -> str:
        """The task's shape with its details abstracted (code: the program with names and constants
        normalised; math: the expression with numbers abstracted); the gate bounds each structure's share of
        a buffer (`Rails.max_structure_share`). The default is the dedup key (every task its own structure)."""
        return self.dedup_key(payload)

    @abstractmethod
    def complexity(self, task: Task) -> int:
        """A size measure logged to TensorBoard (AST nodes, expression nodes)."""

    def make_task(self, payload: Mapping[str, Any]) -> Task:
        return Task(family=self.name, payload=dict(payload), task_id=stable_hash(self.name, self.dedup_key(payload)))


class InductionFamily(TaskFamily):
    """What induction modes share: a task holds input/output pairs, half of them shown to the solver
    (``payload["visible"]``) and half hidden, split by a generator seeded with the task id so the split is
    the same wherever the task is rebuilt. Subclass before the domain base: ``class X(InductionFamily, CodeFamily)``.
    """

    def make_task(self, payload: Mapping[str, Any]) -> Task:
        task = super().make_task(payload)
        order = list(range(len(payload["inputs"])))
        random.Random(task.task_id).shuffle(order)
        visible = sorted(order[: len(order) // 2])
        return Task(family=task.family, payload={**task.payload, "visible": visible}, task_id=task.task_id)

    @staticmethod
    def split(task: Task) -> tuple[list[int], list[int]]:
        """Indices of the visible and the hidden pairs."""
        visible = list(task.payload["visible"])
        return visible, [i for i in range(len(task.payload["inputs"])) if i not in visible]
