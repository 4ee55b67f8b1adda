"""Exercise registry: every exercise with its checker, reference solution and stub.

A chapter's exercise cell defines a function inside a gated solution block; a separate cell then calls
``icl_course.exercises.<part>.check_<name>(fn)``. Checkers are plain functions (usable from pytest, nbgrader
or Otter): they print one line on success and raise :class:`ExerciseFailed` (or :class:`NotAttempted` for a
stub) with a targeted hint otherwise. The student edition replaces each solution cell by the stub.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Exercise", "ExerciseFailed", "NotAttempted", "REGISTRY", "exercise", "all_exercises", "PARTS"]

from ..parts import PARTS


class ExerciseFailed(AssertionError):
    """The submitted function gave a wrong answer (the message holds the hint)."""


class NotAttempted(ExerciseFailed):
    """The submitted function is still the stub (it raised ``NotImplementedError``)."""


@dataclass(frozen=True)
class Exercise:
    """One registered exercise."""

    part: str
    name: str
    title: str
    difficulty: str
    minutes: int
    hint: str
    solution: Callable
    stub_source: str
    check: Callable[[Callable], None]

    def stub(self) -> Callable:
        """The stub as a function (it raises ``NotImplementedError``)."""
        namespace: dict = {}
        exec(compile(self.stub_source, f"<stub {self.name}>", "exec"), namespace)  # noqa: S102 - our own source
        return namespace[self.name]


REGISTRY: dict[str, Exercise] = {}


def exercise(*, part: str, name: str, title: str, difficulty: str, minutes: int, hint: str,
             solution: Callable, stub: str) -> Callable[[Callable], Callable]:
    """Register the decorated checker ``check(fn)`` and wrap it with uniform pass/fail reporting."""

    def wrap(check: Callable[[Callable], None]) -> Callable[[Callable], None]:
        @functools.wraps(check)
        def checker(fn: Callable) -> None:
            if not callable(fn):
                raise ExerciseFailed(f"{name}: pass your function itself, got {type(fn).__name__}")
            try:
                check(fn)
            except NotImplementedError as e:
                raise NotAttempted(f"{name}: not attempted yet ({e}). Hint: {hint}") from None
            except ExerciseFailed:
                raise
            except AssertionError as e:
                raise ExerciseFailed(f"{name}: {e}\nHint: {hint}") from None
            except Exception as e:  # noqa: BLE001 - a learner's bug becomes a failed check with the hint
                raise ExerciseFailed(f"{name}: your function raised {type(e).__name__}: {e}\nHint: {hint}") from e
            print(f"✅ {title}: passed")

        key = f"{part}.{name}"
        if key in REGISTRY:
            raise ValueError(f"exercise {key} registered twice")
        clash = [k for k, ex in REGISTRY.items() if ex.name == name]
        if clash:  # notebooks and the grader find an exercise by its function's name
            raise ValueError(f"exercise name {name!r} of part {part!r} is already used by {clash[0]}")
        REGISTRY[key] = Exercise(part, name, title, difficulty, minutes, hint, solution, stub, checker)
        return checker

    return wrap


def all_exercises() -> list[Exercise]:
    """Every registered exercise (importing each part's module registers its exercises)."""
    for part in PARTS:
        if importlib.util.find_spec(f"{__name__}.{part.name}") is not None:  # a part may have no exercises yet
            importlib.import_module(f"{__name__}.{part.name}")
    return list(REGISTRY.values())
