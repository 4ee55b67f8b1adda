"""Exercise registry: every exercise with its checker, stub and hint; the reference solutions live outside the package.

A chapter's exercise cell defines a function inside a gated solution block; a separate cell then calls
``icl_course.exercises.<part>.check_<name>(fn)``. Checkers are plain functions (usable from pytest, nbgrader
or Otter): they print one line on success and raise :class:`ExerciseFailed` (or :class:`NotAttempted` for a
stub) otherwise. A failure names the mistake when it is one of the usual ones — the answer's sign flipped, a matrix
transposed, a factor such as N or 1/N missing or spare — found by re-running the check on the answer with that
mistake undone (:func:`diagnose`); any other failure gets the checker's message and the exercise's hint. A stub is
told what is expected (its docstring: shapes and meaning), never the hint, which could give the answer away.
The student edition replaces each solution cell by the stub.

The reference solutions are not part of the package (a wheel has none): they are the chapters' own solution cells,
kept as modules in the checkout's ``solutions/`` folder (a test keeps the two identical), found by
:func:`solutions_folders`. An instructor's held-back exercises (checkers, stubs and their
solutions kept out of the public book) are registered by pointing ``ICL_COURSE_EXERCISES`` at their folder.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import io
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Exercise", "ExerciseFailed", "NotAttempted", "SolutionUnavailable", "REGISTRY", "exercise",
           "all_exercises", "diagnose", "solutions_folders", "PARTS"]

from ..parts import PARTS, part_named


class ExerciseFailed(AssertionError):
    """The submitted function gave a wrong answer (the message holds the diagnosis or the hint)."""


class NotAttempted(ExerciseFailed):
    """The submitted function is still the stub (it raised ``NotImplementedError``)."""


class SolutionUnavailable(LookupError):
    """The reference solution of an exercise is not on this machine (it is not part of the installed package)."""


SOLUTIONS_ENV = "ICL_COURSE_SOLUTIONS"
EXERCISES_ENV = "ICL_COURSE_EXERCISES"
_CHECKOUT_SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"


def _env_folders(variable: str) -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(variable, "").split(os.pathsep) if p.strip()]


def solutions_folders() -> list[Path]:
    """Where reference solutions are looked for, first match wins: the folders in ``ICL_COURSE_SOLUTIONS``
    (``os.pathsep``-separated), then the checkout's ``solutions/`` (a checkout has ``pyproject.toml`` beside it; an
    installed wheel has neither). A solution of part ``p``'s chapter module ``m`` is the function of the exercise's
    name in ``<folder>/<p>/<m>.py``."""
    checkout = _CHECKOUT_SOLUTIONS.is_dir() and (_CHECKOUT_SOLUTIONS.parent / "pyproject.toml").is_file()
    return [*_env_folders(SOLUTIONS_ENV), *([_CHECKOUT_SOLUTIONS] if checkout else [])]


@functools.cache
def _solution_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"_icl_course_solutions.{path.parent.name}.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Exercise:
    """One registered exercise. ``module`` is its chapter's module name (``one_layer_one_step``), ``chapter`` the
    chapter notebook's name (``part3_one_layer_one_step``)."""

    part: str
    name: str
    title: str
    difficulty: str
    minutes: int
    hint: str
    stub_source: str
    check: Callable[[Callable], None]
    module: str
    given_solution: Callable | None = field(default=None, repr=False)

    @property
    def chapter(self) -> str:
        return f"{part_named(self.part).prefix}{self.module}"

    @property
    def solution(self) -> Callable:
        """The reference solution: given at registration (a held-back exercise), else found in
        :func:`solutions_folders`; :class:`SolutionUnavailable` if neither has it."""
        if self.given_solution is not None:
            return self.given_solution
        for folder in solutions_folders():
            path = folder / self.part / f"{self.module}.py"
            if path.is_file() and callable(fn := getattr(_solution_module(path.resolve()), self.name, None)):
                return fn
        raise SolutionUnavailable(
            f"the reference solution of {self.part}.{self.name} is not on this machine: it is not part of the "
            f"installed package; use a checkout of the course (its solutions/ folder) or set {SOLUTIONS_ENV}")

    def stub(self) -> Callable:
        """The stub as a function (it raises ``NotImplementedError``)."""
        namespace: dict = {}
        exec(compile(self.stub_source, f"<stub {self.name}>", "exec"), namespace)  # noqa: S102 - our own source
        return namespace[self.name]

    def expects(self) -> str:
        """What the stub says is expected (its docstring, on one line): shapes and meaning, not the formula."""
        tree = next((n for n in ast.parse(self.stub_source).body if isinstance(n, ast.FunctionDef)
                     and n.name == self.name), None)
        doc = (ast.get_docstring(tree) if tree is not None else None) or ""
        return " ".join(doc.split())


REGISTRY: dict[str, Exercise] = {}


def exercise(*, part: str, name: str, title: str, difficulty: str, minutes: int, hint: str, stub: str,
             solution: Callable | None = None, chapter: str | None = None) -> Callable[[Callable], Callable]:
    """Register the decorated checker ``check(fn)`` and wrap it with uniform pass/fail reporting.

    ``solution``: only for an exercise whose solution is kept beside its checker (a held-back exercise outside the
    package); the course's own solutions are found in :func:`solutions_folders`. ``chapter``: the chapter's module
    name, by default the checker's module's (a held-back exercise names the chapter it adds to)."""

    def wrap(check: Callable[[Callable], None]) -> Callable[[Callable], None]:
        @functools.wraps(check)
        def checker(fn: Callable) -> None:
            if not callable(fn):
                raise ExerciseFailed(f"{name}: pass your function itself, got {type(fn).__name__}")
            try:
                check(fn)
            except NotImplementedError:
                expected = REGISTRY[key].expects()
                raise NotAttempted(f"{name}: not attempted yet (the stub still raises NotImplementedError)"
                                   + (f". Expected: {expected}" if expected else "")) from None
            except AssertionError as e:
                found = diagnose(check, fn, like=REGISTRY[key].stub())
                text = str(e).removeprefix(f"{name}: ") if isinstance(e, ExerciseFailed) else str(e)
                tail = f"Diagnosis: {found}" if found else f"Hint: {hint}"
                raise ExerciseFailed(f"{name}: {text}\n{tail}") from None
            except Exception as e:  # noqa: BLE001 - a learner's bug becomes a failed check
                if _raised_inside(e, fn):
                    raise ExerciseFailed(f"{name}: your function raised {type(e).__name__}: {e}\nHint: {hint}") from e
                expected = REGISTRY[key].expects()
                raise ExerciseFailed(f"{name}: the checker could not use your answer ({type(e).__name__}: {e}); "
                                     f"check its type, dtype and shape. Expected: {expected}") from e
            print(f"✅ {title}: passed")

        key = f"{part}.{name}"
        if key in REGISTRY:
            raise ValueError(f"exercise {key} registered twice")
        clash = [k for k, ex in REGISTRY.items() if ex.name == name]
        if clash:  # notebooks and the grader find an exercise by its function's name
            raise ValueError(f"exercise name {name!r} of part {part!r} is already used by {clash[0]}")
        part_named(part)  # an unknown part is a clear error here, not a missing chapter later
        module = chapter or check.__module__.rsplit(".", 1)[-1]
        REGISTRY[key] = Exercise(part, name, title, difficulty, minutes, hint, stub, checker, module, solution)
        return checker

    return wrap


def all_exercises() -> list[Exercise]:
    """Every registered exercise: each part's module registers its exercises on import, and every ``*.py`` in the
    folders of ``ICL_COURSE_EXERCISES`` (an instructor's held-back exercises) is imported once."""
    for part in PARTS:
        if importlib.util.find_spec(f"{__name__}.{part.name}") is not None:  # a part may have no exercises yet
            importlib.import_module(f"{__name__}.{part.name}")
    for folder in _env_folders(EXERCISES_ENV):
        if not folder.is_dir():
            raise ValueError(f"{EXERCISES_ENV} must name folders of exercise modules; {folder} is not a folder")
        for path in sorted(folder.glob("*.py")):
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]  # two folders' week2.py stay apart
            name = f"_icl_course_held_back.{path.stem}_{digest}"
            if name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
    return list(REGISTRY.values())


# ------------------------------------------------------------------------------------------- diagnosing a mistake
def _map_floats(out, fn):
    """``out`` with ``fn`` applied to every floating tensor and float in it (through tuples, lists and dicts)."""
    import torch

    if isinstance(out, (tuple, list)):
        return type(out)(_map_floats(o, fn) for o in out)
    if isinstance(out, dict):
        return {k: _map_floats(v, fn) for k, v in out.items()}
    if (isinstance(out, torch.Tensor) and out.is_floating_point()) or (isinstance(out, float)):
        return fn(out)
    return out


def _transpose(t):
    import torch

    return t.transpose(-2, -1).contiguous() if isinstance(t, torch.Tensor) and t.ndim >= 2 else t


def _shape_symbols(fn: Callable) -> dict[str, list[str]]:
    """The axis names a stub's docstring gives its tensor arguments, e.g. ``x (B, N, dx)`` → ``{'x': ['B', 'N',
    'dx']}``, so that a missing factor can be called "N" rather than "the size of x's axis 1"."""
    doc = inspect.getdoc(fn) or ""
    found = {}
    for name in inspect.signature(fn).parameters:
        m = re.search(rf"(?<![\w.]){re.escape(name)}\s*(?::\s*)?\(([^()]*)\)", doc)
        if m and "," in m[1]:
            found[name] = [s.strip() for s in m[1].split(",")]
    return found


def _raised_inside(e: BaseException, fn: Callable) -> bool:
    """Whether ``e`` was raised while ``fn`` ran (its frame is on the traceback), not by the checker afterwards."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return True
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return True
        tb = tb.tb_next
    return False


def _factor_keys(fn: Callable, calls: list[tuple[tuple, dict]], symbols: dict) -> list[tuple[str, str, int | None]]:
    """The sizes and numbers of the checker's calls an answer could be off by: (label, argument, axis), an int above 1,
    a float other than 0 and ±1, or a tensor's axis longer than 1 in *some* call (the label quotes the first such)."""
    import torch

    found: dict[tuple[str, int | None], str] = {}
    for n, (args, kwargs) in enumerate(calls, start=1):
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs).arguments
        except (TypeError, ValueError):
            bound = {f"argument {i + 1}": a for i, a in enumerate(args)}
        where = "the first test" if n == 1 else f"test {n}"
        for arg, value in bound.items():
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value) and abs(value) not in (0.0, 1.0):
                found.setdefault((arg, None), f"{arg} = {value:g} in {where}")
            elif isinstance(value, torch.Tensor):
                names = symbols.get(arg, [])
                for axis, size in enumerate(value.shape):
                    if size > 1:
                        named = len(names) == value.ndim and names[axis].isidentifier()
                        symbol = names[axis] if named else f"the size of {arg}'s axis {axis}"
                        found.setdefault((arg, axis), f"{symbol} = {size} in {where}")
    labels, keys = set(), []
    for (arg, axis), label in found.items():
        symbol = label.split(" = ")[0]
        if symbol not in labels:  # x's axis 1 and y's axis 1 are both N: one key
            labels.add(symbol)
            keys.append((label, arg, axis))
    return keys


def _factor(fn: Callable, args: tuple, kwargs: dict, arg: str, axis: int | None) -> float:
    try:
        value = inspect.signature(fn).bind(*args, **kwargs).arguments[arg]
    except (TypeError, ValueError, KeyError):
        return 1.0
    return float(value if axis is None else value.shape[axis])


DIAGNOSIS_SECONDS = 15.0
"""How long :func:`diagnose` may re-run a check in all (a slow checker or a slow answer gets the hint instead)."""

_CONSTANTS = (2.0, 3.0, 4.0, 6.0, 12.0)
_POWERS = {1: ("lacks a factor {s}", "multiplying by it"), -1: ("has a spare factor {s}", "dividing by it"),
           2: ("lacks a factor {s}²", "multiplying by {s}²"), -2: ("has a spare factor {s}²", "dividing by {s}²")}


def diagnose(check: Callable[[Callable], None], fn: Callable, like: Callable | None = None) -> str:
    """Which usual mistake makes ``fn`` fail ``check`` (an exercise's unwrapped checker): the check is run again on
    ``fn``'s answers with one mistake undone at a time — the sign flipped back, the matrices transposed back, a
    factor of one of the calls' sizes or numbers (N, 1/N, η, r², …) put back or taken out, or a small constant
    (2, 3, 4, 6, 12) — on the whole answer or on one returned value; the first kind of change that passes is named,
    with every size that would explain it. '' if none does, if ``fn`` cannot be re-run, or after
    :data:`DIAGNOSIS_SECONDS`. ``like``: the exercise's stub, whose signature names the arguments and whose docstring
    names their axes (default: ``fn`` itself). ``fn``'s output is silenced while it is re-run."""
    like = fn if like is None else like
    calls: list[tuple[tuple, dict]] = []
    outputs: list = []
    deadline = time.perf_counter() + DIAGNOSIS_SECONDS

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        outputs.append(fn(*args, **kwargs))
        return outputs[-1]

    def passes(undo) -> bool:
        if time.perf_counter() > deadline:
            return False
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                check(lambda *a, **k: undo(fn(*a, **k), a, k))
        except Exception:  # noqa: BLE001 - any failure of a probe means "not this mistake"
            return False
        return True

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            check(recording)
    except Exception:  # noqa: BLE001 - the failure we are diagnosing
        pass
    if not outputs:
        return ""
    first = outputs[0]
    parts = len(first) if isinstance(first, (tuple, list)) and 1 < len(first) <= 6 else 0

    def on(index: int | None, f):
        """``f`` applied to the whole answer (``index`` None) or to its ``index``-th returned value only."""
        if index is None:
            return lambda out: _map_floats(out, f)
        return lambda out: type(out)(_map_floats(o, f) if i == index else o for i, o in enumerate(out))

    def located(make_undo) -> str | None:
        """Where undoing a mistake passes: the whole answer, one returned value, or any of several (the values
        enter only through their product, as a layer's weight matrices do); None if nowhere."""
        if passes(make_undo(None)):
            return "your answer"
        found = [i + 1 for i in range(parts) if passes(make_undo(i))]
        if len(found) == 1:
            return f"returned value {found[0]} of {parts}"
        if found:
            return (f"one of returned values {', '.join(map(str, found))} of {parts} (undoing it in any one of them "
                    "passes: only their product counts)")
        return None

    for undo, told in ((lambda t: -t, "has the wrong sign: with the sign flipped it passes"),
                       (_transpose, "is transposed: its transpose (last two axes swapped) passes")):
        if (where := located(lambda index, undo=undo: lambda out, a, k: on(index, undo)(out))) is not None:
            return f"{where} {told}"
    keys = _factor_keys(like, calls, _shape_symbols(like))
    for stage in ((1, -1), (2, -2)):  # a size, then a size squared: every explanation of a stage is named
        matches = []
        for power in stage:
            told, move = _POWERS[power]
            for label, arg, axis in keys:
                def make_undo(index, arg=arg, axis=axis, power=power):
                    def undo(out, a, k):
                        c = _factor(like, a, k, arg, axis)
                        c = c**power if c else 1.0  # a size of 0 in one call: nothing to put back there
                        return on(index, lambda t: t * c)(out)
                    return undo

                if (where := located(make_undo)) is not None:
                    symbol = label.split(" = ")[0]
                    matches.append(f"{where} {told.format(s=symbol)} ({label}): {move.format(s=symbol)} passes")
        if matches:
            if len(matches) == 1:
                return matches[0]
            return matches[0] + "; as would another change, equally consistent with these tests: " + "; ".join(
                m.split(" ", 2)[2] if m.startswith("your answer ") else m for m in matches[1:])
    for c in _CONSTANTS:
        for power, word in ((1, "small"), (-1, "large")):
            if (where := located(lambda index, f=c**power: lambda out, a, k: on(index, lambda t: t * f)(out))):
                verb = "multiplying" if power == 1 else "dividing"
                return f"{where} is {c:g} times too {word}: {verb} by {c:g} passes (a missing or spare constant)"
    return ""
