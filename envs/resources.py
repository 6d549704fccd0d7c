"""Verifier processes shared by the families of one environment, vector env or training run.

Created lazily: a math-only run never starts the code sandbox, and the other way round.
"""

from __future__ import annotations

from typing import Any


class SharedVerifiers:
    def __init__(self, sandbox_config: Any = None, math_settings: dict[str, Any] | None = None) -> None:
        self._sandbox_config = sandbox_config
        self._math_settings = dict(math_settings or {})
        self._sandbox: Any = None
        self._math: Any = None

    @property
    def sandbox(self) -> Any:
        """The code executor (`flywheel.verifiers.sandbox.Sandbox`)."""
        if self._sandbox is None:
            from flywheel.verifiers.sandbox import Sandbox

            self._sandbox = Sandbox(self._sandbox_config)
        return self._sandbox

    @property
    def math(self) -> Any:
        """The SymPy checker (`flywheel.verifiers.math.MathChecker`)."""
        if self._math is None:
            from flywheel.verifiers.math import MathChecker

            self._math = MathChecker(**self._math_settings)
        return self._math

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedVerifiers:
        """Shared on purpose: Gymnasium deep-copies make() kwargs into the env spec."""
        return self

    def close(self) -> None:
        for name in ("_sandbox", "_math"):
            worker = getattr(self, name)
            if worker is not None:
                worker.close()
                setattr(self, name, None)

    def __enter__(self) -> SharedVerifiers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
