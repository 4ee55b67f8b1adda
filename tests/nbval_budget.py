"""Kernel CPU-time budget of each notebook under strict nbval (each notebook declares its budget in its metadata).

After a notebook's last cell, and before nbval shuts its kernel down, the kernel's CPU time is read; the
notebook fails if it exceeds 1.5× the budget declared in its metadata (``metadata.icl_course.budget_seconds``),
and the session fails if the whole book passes 30 minutes (25 until Part II's real-LM chapters, which run a
135M-parameter model; the whole CI run stays under its 60 minutes). This is the only timed check of the suite: it
measures CPU time, not wall time, so a busy machine does not make it flaky.
"""

from __future__ import annotations

import json

import pytest

from icl_course import runtime
from icl_course.notebooks import BOOK_CPU_LIMIT_S, DEFAULT_BUDGET_S, kernel_cpu_seconds

BUDGET_FACTOR = 1.5
BOOK_LIMIT_S = BOOK_CPU_LIMIT_S
_MEASURED: dict[str, dict] = {}
_KEY = pytest.StashKey[dict]()


def _notebook(item):
    parent = getattr(item, "parent", None)
    if parent is None or not str(getattr(parent, "path", "")).endswith(".ipynb"):
        return None
    return parent if getattr(parent, "kernel", None) is not None else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    nb_file = _notebook(item)
    if nb_file is not None and (nextitem is None or nextitem.parent is not nb_file) and nb_file.kernel.is_alive():
        cpu = kernel_cpu_seconds(nb_file.kernel.km.provisioner.pid)
        budget = nb_file.nb.metadata.get("icl_course", {}).get("budget_seconds", DEFAULT_BUDGET_S)
        result = {"cpu_seconds": round(cpu, 1), "budget_seconds": budget}
        _MEASURED[str(nb_file.path)] = result
        item.stash[_KEY] = result
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    result = item.stash.get(_KEY, None)
    if call.when == "teardown" and result is not None:
        report = outcome.get_result()
        if result["cpu_seconds"] > BUDGET_FACTOR * result["budget_seconds"]:
            report.outcome = "failed"
            report.longrepr = (f"{item.parent.path.name}: kernel CPU time {result['cpu_seconds']} s exceeds "
                               f"{BUDGET_FACTOR} × its budget of {result['budget_seconds']} s")


def pytest_sessionfinish(session, exitstatus):
    if not _MEASURED:
        return
    (runtime.cache_dir() / "nbval_cpu_seconds.json").write_text(json.dumps(_MEASURED, indent=1))
    total = sum(r["cpu_seconds"] for r in _MEASURED.values())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        lines = [f"  {p}: {r['cpu_seconds']} s CPU (budget {r['budget_seconds']} s)" for p, r in _MEASURED.items()]
        reporter.write_line("notebook kernel CPU time:\n" + "\n".join(lines) + f"\n  total {total:.1f} s")
    if total > BOOK_LIMIT_S:
        if reporter is not None:
            reporter.write_line(f"the book's notebooks take {total:.0f} s of CPU, over the {BOOK_LIMIT_S} s limit")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
