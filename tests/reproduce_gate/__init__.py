"""Gate 6 — ``python -m icl_course reproduce --quick --seed 1`` — one test file per part, so that ``pytest -n 2
--dist loadfile`` can run two parts at once and hand the notebooks out around them."""

from __future__ import annotations

import json
import subprocess
import sys

from icl_course import __version__, reproduce

KEYS = {"id", "chapter", "claim", "reference", "value", "tolerance", "status", "passed", "reason", "seed", "quick",
        "seconds", "torch", "version"}
ORDER = ("mesa", "meta_optimizer", "gd_transformer", "basics")
"""The parts by the time their quick claims take (longest first: about 12.5, 5, 4 and 3 min, measured one at a time
on the 2-core CI machine), the order in which ``tests/conftest.py`` hands the gate's files to the workers."""


def run_part(part: str) -> None:
    """Run one part's claims at ``--quick --seed 1`` in a fresh process; every claim must be present and none FAIL."""
    out = subprocess.run([sys.executable, "-m", "icl_course", "reproduce", "--quick", "--seed", "1", "--part", part,
                          "--json"], capture_output=True, text=True, timeout=3600)
    assert out.stdout.strip(), out.stderr[-3000:]
    rows = json.loads(out.stdout)
    assert {r["id"] for r in rows} == {c.id for c in reproduce.REGISTRY.values() if c.part == part}
    assert all(set(r) == KEYS for r in rows)
    assert all(r["seed"] == 1 and r["quick"] and r["version"] == __version__ for r in rows)
    failed = [(r["id"], r["value"], r["reason"]) for r in rows if r["status"] == "FAIL"]
    assert not failed and out.returncode == 0, failed
