"""Self-play task families and their Gymnasium environments.

Importing this package registers the built-in families (code and math, three modes each),
their environment ids under ``flywheel/``, and any plug-ins in the ``flywheel.families``
entry-point group.
"""

from flywheel.envs.base import MODES, ROLES, FamilyConfig, Prompt, Rejection, Task, TaskFamily, Verdict
from flywheel.envs.registry import family_names, get_family_class, load_plugins, make_family, register_family

__all__ = [
    "MODES",
    "ROLES",
    "FamilyConfig",
    "Prompt",
    "Rejection",
    "Task",
    "TaskFamily",
    "Verdict",
    "family_names",
    "get_family_class",
    "load_plugins",
    "make_family",
    "register_family",
]
import flywheel.envs.answer_tasks
import flywheel.envs.code_tasks
import flywheel.envs.math_tasks  # noqa: F401  (registers the math families)

load_plugins()
