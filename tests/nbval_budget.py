"""Kernel CPU-time budget of each notebook under strict nbval (each notebook declares its budget in its metadata).

After a notebook's last cell, and before nbval shuts its kernel down, the kernel's CPU time is read, a calibration
workload is timed, and the CPU time is converted to reference seconds with the median of the samples taken so far
(:func:`icl_course.notebooks.reference_seconds`); the notebook fails if that exceeds 1.5× the budget declared in
its metadata (``metadata.icl_course.budget_seconds``), and the session fails if the whole book passes
:data:`~icl_course.notebooks.BOOK_CPU_LIMIT_S` (35 minutes since Part I; the whole CI run, on two cores, stays
under its 60 minutes). This is the only timed check of the suite: it measures CPU time against a yardstick timed
beside it, not wall time, so neither a busy nor a slower 2-core machine makes it flaky.

Under pytest-xdist (``-n 2 --dist loadfile``) each worker measures its own notebooks and sends them to the
controller, which judges the book's total.
"""

from __future__ import annotations

import json

import nbval.plugin
import pytest

from icl_course import runtime
from icl_course.notebooks import (
    BOOK_CPU_LIMIT_S,
    DEFAULT_BUDGET_S,
    calibration_seconds,
    kernel_cpu_seconds,
    machine_calibration,
    reference_seconds,
)

OUTPUT_TIMEOUT_S = 60
"""nbval waits only 5 s for a cell's outputs after the kernel's reply; on a loaded 2-core machine running two
notebooks at once that wait has run out on a cell that had finished, so it is raised (cells still time out after
``--nbval-cell-timeout``)."""
_cell_init = nbval.plugin.IPyNbCell.__init__


def _patient_cell_init(self, *args, **kwargs):
    _cell_init(self, *args, **kwargs)
    self.output_timeout = max(self.output_timeout, OUTPUT_TIMEOUT_S)


nbval.plugin.IPyNbCell.__init__ = _patient_cell_init

BUDGET_FACTOR = 1.5
BOOK_LIMIT_S = BOOK_CPU_LIMIT_S
_MEASURED: dict[str, dict] = {}
_KEY = pytest.StashKey[dict]()


def _notebook(item):
    parent = getattr(item, "parent", None)
    if parent is None or not str(getattr(parent, "path", "")).endswith(".ipynb"):
        return None
    return parent if getattr(parent, "kernel", None) is not None else None


def measure(cpu: float, samples: list[float], calibration: float, budget: float) -> dict:
    """One notebook's record: kernel CPU here, the calibration samples taken before and after it, the machine's
    calibration (median of every sample so far) and the CPU time in reference seconds."""
    return {"cpu_seconds": round(cpu, 1), "calibration_samples": [round(v, 3) for v in samples],
            "reference_seconds": round(reference_seconds(cpu, calibration), 1), "budget_seconds": budget}


def over_budget(result: dict) -> bool:
    """Whether a notebook's reference CPU time exceeds :data:`BUDGET_FACTOR` times its declared budget."""
    return result["reference_seconds"] > BUDGET_FACTOR * result["budget_seconds"]


def book_total(measured: dict[str, dict]) -> float:
    """The whole book's kernel CPU time in reference seconds, with the median of every calibration sample of the run
    as the machine's calibration."""
    calibration = machine_calibration(v for r in measured.values() for v in r["calibration_samples"])
    return sum(reference_seconds(r["cpu_seconds"], calibration) for r in measured.values())


_SAMPLES: list[float] = []
"""Every calibration sample this process took: one before each notebook's first cell, one after its last."""
_BEFORE: dict[str, float] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    parent = getattr(item, "parent", None)
    path = str(getattr(parent, "path", ""))
    if path.endswith(".ipynb") and path not in _BEFORE:  # before nbval starts the notebook's kernel
        _BEFORE[path] = calibration_seconds()
        _SAMPLES.append(_BEFORE[path])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    nb_file = _notebook(item)
    if nb_file is not None and (nextitem is None or nextitem.parent is not nb_file) and nb_file.kernel.is_alive():
        cpu = kernel_cpu_seconds(nb_file.kernel.km.provisioner.pid)
        budget = nb_file.nb.metadata.get("icl_course", {}).get("budget_seconds", DEFAULT_BUDGET_S)
        after = calibration_seconds()
        _SAMPLES.append(after)
        own = [v for v in (_BEFORE.get(str(nb_file.path)), after) if v is not None]
        result = measure(cpu, own, machine_calibration(_SAMPLES), budget)
        _MEASURED[str(nb_file.path)] = result
        item.stash[_KEY] = result
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    result = item.stash.get(_KEY, None)
    if call.when == "teardown" and result is not None:
        report = outcome.get_result()
        if over_budget(result):
            report.outcome = "failed"
            report.longrepr = (f"{item.parent.path.name}: kernel CPU time {result['cpu_seconds']} s here, "
                               f"{result['reference_seconds']} s on the reference machine, exceeds {BUDGET_FACTOR} × "
                               f"its budget of {result['budget_seconds']} s")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Controller side of pytest-xdist: collect what a worker measured."""
    _MEASURED.update(getattr(node, "workeroutput", {}).get("nbval_cpu", {}))


def pytest_sessionfinish(session, exitstatus):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports and judges
        workeroutput["nbval_cpu"] = dict(_MEASURED)
        return
    if not _MEASURED:
        return
    (runtime.cache_dir() / "nbval_cpu_seconds.json").write_text(json.dumps(_MEASURED, indent=1))
    total = book_total(_MEASURED)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        samples = [v for r in _MEASURED.values() for v in r["calibration_samples"]]
        calibration = machine_calibration(samples)
        lines = [f"  {p}: {r['cpu_seconds']} s CPU here, {reference_seconds(r['cpu_seconds'], calibration):.1f} s "
                 f"reference (calibration samples {r['calibration_samples']} s; budget {r['budget_seconds']} s)"
                 for p, r in sorted(_MEASURED.items())]
        reporter.write_line("notebook kernel CPU time:\n" + "\n".join(lines) + f"\n  total {total:.1f} s reference "
                            f"(calibration {calibration:.3f} s here, median of {len(samples)} samples)")
    if total > BOOK_LIMIT_S:
        if reporter is not None:
            reporter.write_line(f"the book's notebooks take {total:.0f} s of reference CPU, over the {BOOK_LIMIT_S} s "
                                "limit")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
