"""Renamed public names stay importable for one release, with a warning naming the new name (QuantEcon-style)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any


def module_getattr(module: str, renamed: dict[str, tuple[str, Any]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that serves ``renamed`` (old name → (new name, object)) with a
    ``DeprecationWarning`` and raises ``AttributeError`` for anything else."""

    def __getattr__(name: str) -> Any:
        if name in renamed:
            new, obj = renamed[name]
            warnings.warn(f"{module}.{name} is deprecated and will be removed in the next release; use {new}",
                          DeprecationWarning, stacklevel=2)
            return obj
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
