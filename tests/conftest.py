"""Shared pytest configuration: hypothesis profiles and one intra-op thread (the course's models are tiny)."""

import os
from pathlib import Path

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile("dev" if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else "ci")

# Register every part's claims in the order of icl_course.parts.PARTS before any test module imports one part's claims
# module on its own: the registry keeps registration order, and the generated Reproducibility page follows it.
from icl_course.reproduce import _load_claims  # noqa: E402

_load_claims()



def _recorded_cpu(path) -> float:
    """A notebook's kernel CPU time as recorded by its last execution (0 if none)."""
    import json

    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["metadata"]["icl_course"]["cpu_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


SLOW_FILES = {"browser/test_student_site.py": 200.0, "browser/test_site.py": 170.0, "test_grading.py": 190.0,
              "browser/test_jupyterlab.py": 110.0}
"""Wall seconds of the slowest test files (the browser checks build a book and visit every page; the grader's
tests run a simulated class and every chapter in fast mode), measured on the 2-core CI machine; they are ordered
among the notebooks by these."""


def pytest_collection_modifyitems(session, config, items):
    """Order the files longest first for ``pytest -n 2 --dist loadfile --no-loadscope-reorder`` (files go to the
    workers in the order of their first item; xdist's default reorder would put the files with the most *tests*
    first, and the reproduce gate's one-test files last): the gate's files by their measured time
    (``tests/reproduce_gate``), then the notebooks by their recorded CPU time and the slowest test files by
    :data:`SLOW_FILES`, then the other test files."""
    from tests.reproduce_gate import ORDER

    cpu: dict = {}

    def rank(item) -> tuple[int, float]:
        path = item.path
        stem = path.stem.removeprefix("test_gate_")
        if path.parent.name == "reproduce_gate" and stem in ORDER:
            return 0, ORDER.index(stem)
        if path.suffix == ".ipynb":
            return 1, -cpu.setdefault(path, _recorded_cpu(path))
        slow = path.relative_to(Path(__file__).parent).as_posix() if path.is_relative_to(Path(__file__).parent) else ""
        if slow in SLOW_FILES:
            return 1, -SLOW_FILES[slow]
        return 2, 0.0

    items.sort(key=rank)  # stable: a file's items keep their order


_SESSION_START = [0.0]


def pytest_sessionstart(session):
    import time

    _SESSION_START[0] = time.time()


def pytest_terminal_summary(terminalreporter):
    """Print the browser check's counts (tests/browser writes them beside its screenshots; under pytest-xdist a
    worker's own output does not reach the terminal)."""
    from pathlib import Path

    counts = [p for p in (Path(__file__).resolve().parent.parent / "_build" / "screenshots").glob("*/counts.txt")
              if p.stat().st_mtime >= _SESSION_START[0]]
    if counts:
        terminalreporter.section("browser check")
        for path in sorted(counts):
            terminalreporter.write_line(path.read_text(encoding="utf-8").strip())
