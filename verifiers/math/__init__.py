"""Math answer checker and SymPy compute service (parsing and SymPy run in worker processes).

Importing this package does not import SymPy; see docs/math_checker.md.
"""

from .checker import MathChecker
from .types import OPERATIONS, ComputeRequest, ComputeResult, MathVerdict

__all__ = ["OPERATIONS", "ComputeRequest", "ComputeResult", "MathChecker", "MathVerdict"]
