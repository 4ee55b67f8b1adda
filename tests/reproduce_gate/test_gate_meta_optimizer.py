"""Gate 6 for Part II, the meta-optimizer view:
its claims at `reproduce --quick --seed 1` (seed 0 is covered by the notebooks)."""

import pytest

from tests.reproduce_gate import run_part


@pytest.mark.slow
def test_quick_seed_1():
    run_part("meta_optimizer")
