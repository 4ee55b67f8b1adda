"""Static checks of the committed chapter notebooks: executed in order, fresh, within budget, with the structure the
exercise tools and strict nbval rely on."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import nbformat
import pytest

from icl_course._provenance import code_hash
from icl_course.exercises import REGISTRY, all_exercises
from icl_course.exercises.edition import check_calls, solution_cells
from icl_course.notebooks import execution_window, notebook_paths, reference_seconds, run_calibrations
from icl_course.parts import part_of_notebook

BOOK = Path(__file__).resolve().parent.parent / "book"
NOTEBOOKS = notebook_paths(BOOK)


def _load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _run_calibrations() -> dict[Path, float]:
    """Each committed notebook's machine calibration: the median of the samples of the run that executed it."""
    books = {p: _load(p) for p in NOTEBOOKS}
    return run_calibrations({p: (nb.metadata.get("icl_course", {}).get("calibration_samples", []),
                                 execution_window(nb)) for p, nb in books.items()})


RUN_CALIBRATION = _run_calibrations()


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_the_book_has_notebooks():
    assert NOTEBOOKS, "no chapter notebooks found under book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order_from_a_fresh_kernel(path):
    counts = [c.execution_count for c in _code_cells(_load(path))]
    assert None not in counts, f"{path.name}: some code cells were never executed (strict nbval skips them)"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: re-execute from a fresh kernel (make notebooks)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_not_stale(path):
    """The staleness guard: figures are not compared by nbval, so outputs must come from the current code."""
    meta = _load(path).metadata.get("icl_course", {})
    current = code_hash(part_of_notebook(path).name)
    assert meta.get("code_hash") == current, (
        f"{path.name} was executed with other package code (hash {meta.get('code_hash')} vs {current}): "
        "run `make notebooks`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_budget_declared_and_met(path):
    meta = _load(path).metadata.get("icl_course", {})
    budget = meta.get("budget_seconds")
    assert budget is not None and 0 < budget <= 180, f"{path.name}: declare budget_seconds (≤ 180) in its metadata"
    if budget > 120:
        assert meta.get("budget_reason"), f"{path.name}: a budget above 120 s needs a budget_reason"
    cpu = meta.get("cpu_seconds")
    assert cpu is not None and meta.get("calibration_samples"), f"{path.name}: run `make notebooks` to record its CPU"
    ref = reference_seconds(cpu, RUN_CALIBRATION[path])
    assert ref <= budget, f"{path.name}: recorded {cpu} s here, {ref:.1f} s on the reference machine, > {budget} s"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_sets_up_and_is_hidden(path):
    first = _code_cells(_load(path))[0]
    assert "hide-input" in first.metadata.get("tags", [])
    assert "runtime.setup(seed=0)" in first.source and "google.colab" in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tags_not_comment_markers_and_trained_cells_have_verdicts(path):
    nb = _load(path)
    for cell in _code_cells(nb):
        assert "# NBVAL" not in cell.source.upper(), "use cell tags, not nbval comment markers"
    verdict_cells = [c for c in _code_cells(nb) if "reproduce.verdicts(" in c.source]
    assert len(verdict_cells) == 1 and "nbval-ignore-output" not in verdict_cells[0].metadata.get("tags", []), (
        "the strictly compared verdict cell must exist and must not ignore its output")


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", "") if out.get("output_type") == "stream" else
                     out.get("data", {}).get("text/plain", ""))
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def _reports_fail(line: str) -> bool:
    """A verdict line ``ID: STATUS[: reason]`` is judged by its status; any other line (a table row) by its last
    column."""
    verdict = re.match(r"\s*\w+: (PASS|FAIL|KNOWN_GAP)\b", line)
    return verdict.group(1) == "FAIL" if verdict else line.rstrip().endswith(" FAIL")


def committed_failures(nb) -> list[str]:
    """Lines of a notebook's committed outputs that report a claim as FAIL (nbval only re-checks whatever was
    committed, so a FAIL executed into a notebook would otherwise pass CI)."""
    return [line.strip() for cell in _code_cells(nb) for line in _output_text(cell).splitlines()
            if _reports_fail(line)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_committed_output_reports_a_failed_claim(path):
    assert committed_failures(_load(path)) == [], f"{path.name} was committed with a failing claim"


def test_a_committed_failure_would_be_caught():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(reproduce.verdicts(rows))")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="E1: PASS\nE6: FAIL\n")]
    assert committed_failures(nb) == ["E6: FAIL"]
    nb.cells[0].outputs[0].text = "id  value  status\nE6  0.31   FAIL\nB1: KNOWN_GAP: a regression reads as FAIL\n"
    assert committed_failures(nb) == ["E6  0.31   FAIL"]  # a table row's status, not a reason's prose
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "'D6: KNOWN_GAP'"},
                                                  execution_count=1)]
    assert committed_failures(nb) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_have_caption_label_and_alt_text(path):
    nb = _load(path)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    figures = [c for c in nb.cells if c.cell_type == "code"
               and any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert figures, f"{path.name} has no figure"
    for cell in figures:
        mystnb = cell.metadata.get("mystnb", {})
        name = mystnb.get("figure", {}).get("name")
        assert name and mystnb["figure"].get("caption"), f"figure cell without caption/label:\n{cell.source[:80]}"
        assert mystnb.get("image", {}).get("alt"), f"figure {name} has no alt text"
        assert f"{{numref}}`{name}`" in text, f"figure {name} is never referenced in the text"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_cells_follow_the_three_rules(path):
    nb = _load(path)
    solutions = solution_cells(nb)
    assert 3 <= len(solutions) <= 6, f"{path.name}: a chapter has 3–6 exercises, found {len(solutions)}"
    calls = check_calls(nb)
    for index, key in solutions:
        ex = REGISTRY[key]
        # the notebook shows exactly the registered reference solution
        shown, registered = ast.parse(nb.cells[index].source), ast.parse(inspect.getsource(ex.solution))
        assert ast.dump(shown) == ast.dump(registered), f"solution cell of {ex.name} differs from the registry's"
        # (2) a separate, later cell calls the checker
        after = [i for i, name in calls.items() if name == ex.name and i > index]
        assert after, f"no check_{ex.name} call after its solution"
        # (3) no later cell uses the function (other than the checker call)
        for i, cell in enumerate(nb.cells[index + 1:], start=index + 1):
            if cell.cell_type == "code" and i not in after:
                names = {n.id for n in ast.walk(ast.parse(cell.source)) if isinstance(n, ast.Name)}
                assert ex.name not in names, f"cell {i} uses the exercise function {ex.name}"


def test_every_registered_exercise_appears_in_a_notebook():
    shown = {key for path in NOTEBOOKS for _, key in solution_cells(_load(path))}
    assert {f"{e.part}.{e.name}" for e in all_exercises()} <= shown


_TINY = __import__("re").compile(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]-(\d+)\b")


def tiny_numbers(text: str, below: float = 1e-12) -> list[str]:
    """Numbers printed in scientific notation below ``below``: float round-off, which differs between BLAS builds."""
    return [m.group(0) for m in _TINY.finditer(text) if float(m.group(0)) < below and float(m.group(0)) != 0]


def _strict_text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            out.append(o.get("data", {}).get("text/plain", ""))
    return "".join(out)


def test_tiny_number_detector_can_fail():
    assert tiny_numbers("relative error 1.5e-16 and 3e-13") == ["1.5e-16", "3e-13"]
    assert tiny_numbers("loss 0.2062, lr 1e-3, tolerance < 1e-10: True") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_strict_outputs_print_no_round_off(path):
    """Strict nbval compares these outputs exactly: round-off (AVX2 vs AVX-512) must be printed as a verdict."""
    offenders = {}
    for i, cell in enumerate(_code_cells(_load(path))):
        tags = cell.metadata.get("tags", [])
        if "nbval-ignore-output" in tags or "nbval-skip" in tags:
            continue
        if found := tiny_numbers(_strict_text(cell)):
            offenders[i] = found
    assert offenders == {}, f"{path.name}: print identities as `< 1e-10: True`, not the round-off: {offenders}"
