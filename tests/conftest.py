"""Shared pytest configuration: hypothesis profiles and one intra-op thread (the course's models are tiny)."""

import os

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

# --- notebook hooks below ---


def pytest_collection_modifyitems(session, config, items):
    """Run the reproduce command line's file first: at about half an hour on a slow 2-core machine it is the longest
    single test, and under ``pytest -n 2 --dist loadfile`` a file handed out last would finish alone long after the
    other worker is idle. Files are handed to workers in the order of their first item."""
    first = [item for item in items if item.path.name == "test_reproduce.py"]
    rest = [item for item in items if item.path.name != "test_reproduce.py"]
    items[:] = first + rest
