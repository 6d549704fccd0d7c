"""The rails: what a self-play run must never change while it trains.

A `Rails` object holds the verifier limits (the sandbox's import allowlist, time and memory limits, the math
checker's time limit), the size and complexity bounds of proposed programs and expressions, the math
operations a proposal may use, and the largest share of a buffer any one task structure may take (enforced
by `flywheel.envs.gate.Gate`). Families read their bounds from it; a training run stores it, with its
`digest`, in every checkpoint and on every ledger row, and refuses to resume under other rails unless told
to (docs/ledger.md, "Rails").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from flywheel.verifiers.math import OPERATIONS
from flywheel.verifiers.sandbox.config import DEFAULT_ALLOWED_IMPORTS, SandboxConfig

RAILS_FILE = "rails.json"
"""The rails of a run, with their digest, in every checkpoint directory."""


@dataclass
class Rails:
    """Limits fixed for the life of a run (the `rails` section of a recipe)."""

    allowed_imports: list[str] = field(
        default_factory=lambda: sorted(DEFAULT_ALLOWED_IMPORTS),
        metadata={"help": "Modules a sandboxed program may import (the sandbox's allowlist)."},
    )
    sandbox_timeout_s: float = field(default=1.0, metadata={"help": "Wall-clock seconds one sandboxed call may take."})
    sandbox_memory_mb: int = field(default=512, metadata={"help": "Address space of a sandboxed program, in MiB."})
    math_timeout_s: float = field(
        default=2.0, metadata={"help": "Seconds the math checker may spend on one computation or comparison."}
    )
    max_program_chars: int = field(default=4000, metadata={"help": "Longest proposed program, in characters."})
    max_program_nodes: int = field(
        default=1000, metadata={"help": "Largest proposed program, in Python AST nodes (its complexity)."}
    )
    max_expression_nodes: int = field(
        default=40, metadata={"help": "Largest proposed math expression, in SymPy expression-tree nodes."}
    )
    max_degree: int = field(
        default=8,
        metadata={
            "help": "Largest integer exponent in a math proposal (as written and as SymPy reads it) and its answer."
        },
    )
    max_digits: int = field(
        default=8,
        metadata={"help": "Longest run of digits in any number of a math proposal, its parameters or answer."},
    )
    math_operations: list[str] = field(
        default_factory=lambda: list(OPERATIONS),
        metadata={"help": "Math operations any family may use; a family's `operations` setting picks among them."},
    )
    max_structure_share: float = field(
        default=0.25,
        metadata={
            "help": "Most of a buffer one task structure (the family's `structure_key`: code with names and "
            "constants abstracted, math with numbers abstracted) may take; the first task of a structure is "
            "always admitted, seed tasks do not count."
        },
    )

    def validate(self) -> None:
        """Raise ValueError on rails that cannot work."""
        self.allowed_imports = sorted(set(self.allowed_imports))
        unknown = sorted(set(self.math_operations) - set(OPERATIONS))
        self.math_operations = [name for name in OPERATIONS if name in set(self.math_operations)]
        if unknown or not self.math_operations:
            raise ValueError(f"rails.math_operations must be a non-empty subset of {OPERATIONS}; unknown: {unknown}")
        for name in ("sandbox_timeout_s", "sandbox_memory_mb", "math_timeout_s", "max_program_chars"):
            if getattr(self, name) <= 0:
                raise ValueError(f"rails.{name} must be positive, not {getattr(self, name)}")
        for name in ("max_program_nodes", "max_expression_nodes", "max_degree", "max_digits"):
            if getattr(self, name) < 1:
                raise ValueError(f"rails.{name} must be at least 1, not {getattr(self, name)}")
        if not 0.0 < self.max_structure_share <= 1.0:
            raise ValueError(f"rails.max_structure_share must be in (0, 1], not {self.max_structure_share}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Rails:
        """Rails from a recipe's `rails` mapping (missing keys take their defaults); validated."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"rails: unknown settings {unknown}; known: {sorted(known)}")
        rails = cls(**values)
        rails.validate()
        return rails

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """A short hash of the rails' values; equal rails give equal digests."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences(self, other: Rails) -> list[str]:
        """`name: mine -> other's` for every setting that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{name}: {mine[name]!r} -> {theirs[name]!r}" for name in mine if mine[name] != theirs[name]]

    def sandbox_config(self, base: SandboxConfig | None = None) -> SandboxConfig:
        """`base` (default: the sandbox's defaults) with the rails' allowlist, time and memory limits."""
        return replace(
            base or SandboxConfig(),
            allowed_imports=frozenset(self.allowed_imports),
            timeout_s=self.sandbox_timeout_s,
            memory_mb=self.sandbox_memory_mb,
        )

    def math_settings(self) -> dict[str, Any]:
        """Keyword arguments of `MathChecker` that the rails fix."""
        return {"timeout_s": self.math_timeout_s}

    def to_json(self) -> str:
        """The rails and their digest, as stored in a checkpoint's `RAILS_FILE`."""
        return json.dumps({"digest": self.digest(), "rails": self.to_dict()}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Rails:
        return cls.from_dict(json.loads(text)["rails"])
