"""The family registry: built-in families register on import of `flywheel.envs`, third-party
ones through the ``flywheel.families`` entry-point group (see docs/new_family.md)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from flywheel.envs.base import MODES, FamilyConfig, TaskFamily

ENTRY_POINT_GROUP = "flywheel.families"
_FAMILIES: dict[str, type[TaskFamily]] = {}
FamilyT = TypeVar("FamilyT", bound=type[TaskFamily])


def register_family(cls: FamilyT) -> FamilyT:
    """Class decorator: add a family to the registry and register its Gymnasium ids."""
    for attribute in ("name", "env_name", "domain", "mode"):
        if not isinstance(getattr(cls, attribute, None), str):
            raise TypeError(f"{cls.__name__} must set the class attribute {attribute!r} (a string)")
    if cls.mode not in MODES:
        raise ValueError(f"{cls.__name__}.mode must be one of {MODES}, not {cls.mode!r}")
    existing = _FAMILIES.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"family {cls.name!r} is already registered by {existing.__module__}.{existing.__name__}")
    _FAMILIES[cls.name] = cls
    from flywheel.envs.gym_envs import register_family_envs

    register_family_envs(cls)
    return cls


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def get_family_class(name: str) -> type[TaskFamily]:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r}; registered: {family_names()}") from None


def make_family(
    name: str, config: FamilyConfig | Mapping[str, Any] | None = None, verifiers: Any = None, rails: Any = None
) -> TaskFamily:
    """The family `name` with `config` (a mapping or its config class), `verifiers` and `rails` (`Rails`)."""
    cls = get_family_class(name)
    if isinstance(config, Mapping):
        config = cls.config_class.from_dict(config)
    return cls(config, verifiers, rails)


def load_plugins() -> list[str]:
    """Import every module named in the entry-point group; a broken plug-in is a warning, not a crash."""
    loaded = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:  # a third-party import error must not take training down
            warnings.warn(f"flywheel plug-in {entry_point.name!r} failed to load: {error!r}", stacklevel=2)
            continue
        loaded.append(entry_point.name)
    return loaded
