"""Sandboxed execution of untrusted Python programs: see docs/sandbox.md for the layers and trust model."""

from flywheel.verifiers.sandbox.client import Sandbox, check_deterministic, run_deterministic
from flywheel.verifiers.sandbox.config import DEFAULT_ALLOWED_IMPORTS, CallResult, Job, SandboxConfig, Status

__all__ = [
    "DEFAULT_ALLOWED_IMPORTS",
    "CallResult",
    "Job",
    "Sandbox",
    "SandboxConfig",
    "Status",
    "check_deterministic",
    "run_deterministic",
]
