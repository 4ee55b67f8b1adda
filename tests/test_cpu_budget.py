"""The notebooks' CPU budgets in reference seconds: the calibration yardstick, the conversion, the per-notebook and
whole-book verdicts of the nbval plugin, and the hand-over of measurements from xdist workers to the controller."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from icl_course import notebooks
from icl_course.notebooks import (
    MAX_SLOWDOWN,
    calibration_seconds,
    machine_calibration,
    reference_calibration_seconds,
    reference_seconds,
    slowdown,
)
from tests import nbval_budget


def test_the_reference_says_how_it_was_measured():
    data = json.loads(notebooks.REFERENCE_FILE.read_text(encoding="utf-8"))
    assert data["calibration_seconds"] == reference_calibration_seconds() > 0
    assert len(data["how"]) > 80, "say which machine and which notebooks the reference comes from"


def test_calibration_is_positive_and_leaves_the_thread_count_alone():
    before = torch.get_num_threads()
    assert 0 < calibration_seconds(repeats=1, steps=5) < 60
    assert torch.get_num_threads() == before


def test_reference_seconds_divide_by_the_slowdown():
    ref = reference_calibration_seconds()
    assert slowdown(2 * ref) == pytest.approx(2.0)
    assert reference_seconds(100.0, 2 * ref) == pytest.approx(50.0)  # a machine twice as slow: half the seconds
    assert reference_seconds(100.0, ref / 2) == pytest.approx(200.0)  # twice as fast: the budget tightens too


def test_the_machine_calibration_is_the_median_of_its_samples():
    assert machine_calibration([0.9]) == 0.9
    assert machine_calibration([0.6, 0.95, 0.62]) == 0.62  # one slow sample does not move it
    assert machine_calibration([0.6, 0.7, 0.9, 0.62]) == pytest.approx(0.66)
    with pytest.raises(ValueError, match="samples"):
        machine_calibration([])


def _nb(start: str, stop: str) -> dict:
    """A notebook whose cells ran from ``start`` to ``stop`` (ISO times), as the executor records them."""
    return {"cells": [{"metadata": {"execution": {"iopub.execute_input": start, "shell.execute_reply": start}}},
                      {"metadata": {"execution": {"iopub.execute_input": stop, "shell.execute_reply": stop}}},
                      {"metadata": {}}]}


def test_execution_window_reads_the_cells_timestamps():
    start, stop = notebooks.execution_window(_nb("2026-12-01T08:00:00.5Z", "2026-12-01T08:02:00Z"))
    assert (stop - start).total_seconds() == pytest.approx(119.5)
    assert notebooks.execution_window({"cells": [{"metadata": {}}]}) is None


def test_each_notebook_is_judged_by_the_calibration_of_its_own_run():
    w = lambda a, b: notebooks.execution_window(_nb(a, b))  # noqa: E731
    books = {
        "fast1": ([0.41, 0.42], w("2026-12-01T08:00:00Z", "2026-12-01T08:02:00Z")),
        "fast2": ([0.40, 0.43], w("2026-12-01T08:02:05Z", "2026-12-01T08:05:00Z")),  # back to back: same run
        "fast3": ([0.40, 0.41], w("2026-12-01T08:01:00Z", "2026-12-01T08:04:00Z")),  # the second stream
        "slow1": ([0.55, 0.60], w("2026-12-03T09:00:00Z", "2026-12-03T09:03:00Z")),  # two days later: its own run
        "slow2": ([0.52, 0.58], w("2026-12-03T09:03:10Z", "2026-12-03T09:06:00Z")),
        "untimed": ([0.9], None),
    }
    cal = notebooks.run_calibrations(books)
    assert cal["fast1"] == cal["fast2"] == cal["fast3"] == pytest.approx(machine_calibration(
        [0.41, 0.42, 0.40, 0.43, 0.40, 0.41]))
    assert cal["slow1"] == cal["slow2"] == pytest.approx(0.565)
    every = [v for samples, _ in books.values() for v in samples]
    assert cal["untimed"] == pytest.approx(machine_calibration(every))
    # a gap longer than RUN_GAP_S starts a new run
    far = dict(books, slow2=([0.52, 0.58], w("2026-12-03T10:00:00Z", "2026-12-03T10:03:00Z")))
    cal = notebooks.run_calibrations(far)
    assert cal["slow1"] == pytest.approx(0.575) and cal["slow2"] == pytest.approx(0.55)


def test_a_bad_or_absurd_calibration_is_refused():
    with pytest.raises(ValueError, match="calibration"):
        slowdown(0.0)
    with pytest.raises(RuntimeError, match="slower than the reference"):
        slowdown(1.01 * MAX_SLOWDOWN * reference_calibration_seconds())


def test_budget_verdicts_use_reference_seconds():
    ref = reference_calibration_seconds()
    slow_but_fine = nbval_budget.measure(cpu=2 * 170.0, samples=[3 * ref], calibration=2 * ref, budget=120)
    assert slow_but_fine["reference_seconds"] == pytest.approx(170.0, abs=0.1)  # the median, not its own sample
    assert slow_but_fine["calibration_samples"] == [round(3 * ref, 3)]
    assert not nbval_budget.over_budget(slow_but_fine)  # 170 reference s ≤ 1.5 × 120
    grown = nbval_budget.measure(cpu=2 * 190.0, samples=[2 * ref], calibration=2 * ref, budget=120)
    assert nbval_budget.over_budget(grown)  # 190 reference s > 1.5 × 120


def test_the_book_total_uses_the_median_calibration():
    ref = reference_calibration_seconds()
    rows = {name: {"cpu_seconds": 200.0, "calibration_samples": [c * ref, 2.0 * ref], "budget_seconds": 180}
            for name, c in (("a", 1.0), ("b", 3.5), ("c", 3.9))}
    assert nbval_budget.book_total(rows) == pytest.approx(300.0)  # 3 × 200 s at the median slowdown 2 of six


def test_worker_measurements_reach_the_controller(monkeypatch):
    monkeypatch.setattr(nbval_budget, "_MEASURED", {})
    ref = reference_calibration_seconds()
    row = nbval_budget.measure(cpu=10.0, samples=[ref, ref], calibration=ref, budget=120)
    worker = SimpleNamespace(config=SimpleNamespace(workeroutput={}))
    nbval_budget._MEASURED["book/a.ipynb"] = row
    nbval_budget.pytest_sessionfinish(worker, 0)
    assert worker.config.workeroutput["nbval_cpu"] == {"book/a.ipynb": row}
    nbval_budget._MEASURED.clear()
    nbval_budget.pytest_testnodedown(SimpleNamespace(workeroutput=worker.config.workeroutput), None)
    assert nbval_budget._MEASURED == {"book/a.ipynb": row}


def test_the_whole_book_over_its_limit_fails_the_session(monkeypatch, tmp_path):
    monkeypatch.setattr(nbval_budget.runtime, "cache_dir", lambda: tmp_path)
    ref = reference_calibration_seconds()
    n_over = int(nbval_budget.BOOK_LIMIT_S // 170) + 1  # notebooks of 170 reference s each, one too many
    monkeypatch.setattr(nbval_budget, "_MEASURED", {
        f"book/{i}.ipynb": nbval_budget.measure(cpu=2 * 170.0, samples=[2 * ref], calibration=2 * ref, budget=180)
        for i in range(n_over)})
    plugins = SimpleNamespace(get_plugin=lambda name: None)
    session = SimpleNamespace(config=SimpleNamespace(pluginmanager=plugins), exitstatus=0)
    nbval_budget.pytest_sessionfinish(session, 0)
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    session.exitstatus = 0
    nbval_budget._MEASURED.popitem()  # within the limit
    nbval_budget.pytest_sessionfinish(session, 0)
    assert session.exitstatus == 0
