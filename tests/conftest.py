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



def pytest_collection_modifyitems(session, config, items):
    """Hand the reproduce gate's files out first, longest first (``tests/reproduce_gate``): under ``pytest -n 2
    --dist loadfile`` files go to the workers in the order of their first item, and a long file handed out last would
    finish alone long after the other worker is idle."""
    from tests.reproduce_gate import ORDER

    def rank(item) -> int:
        stem = item.path.stem.removeprefix("test_gate_")
        return ORDER.index(stem) if item.path.parent.name == "reproduce_gate" and stem in ORDER else len(ORDER)

    items.sort(key=rank)  # stable: everything else keeps its order
