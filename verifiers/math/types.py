"""Public value types of the math checker (no SymPy import: safe to load in the caller process)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

OPERATIONS = (
    "evaluate",
    "simplify",
    "expand",
    "factor",
    "differentiate",
    "integrate",
    "limit",
    "solve",
    "series_coefficient",
    "sum",
)

VerdictKind = Literal["equal", "not_equal", "parse_error", "timeout"]
ComputeStatus = Literal["ok", "parse_error", "timeout", "error"]


@dataclass(frozen=True)
class MathVerdict:
    """Outcome of comparing a gold answer with a prediction; `reason` says why, in words."""

    verdict: VerdictKind
    reason: str

    @property
    def equal(self) -> bool:
        return self.verdict == "equal"


@dataclass(frozen=True)
class ComputeRequest:
    """One SymPy operation on `expression` (plain text or LaTeX); see OPERATIONS for `params`."""

    operation: str
    expression: str
    variable: str = "x"
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ComputeResult:
    """`value` is plain text (SymPy `str`) that MathChecker parses back to the same expression.

    `size` is the node count (preorder traversal length) of the parsed input expression.
    """

    status: ComputeStatus
    value: str | None = None
    reason: str = ""
    size: int = 0
