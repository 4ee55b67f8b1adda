"""Exercises in both directions through the registry, the student edition, and the grader."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import torch

from icl_course.exercises import REGISTRY, ExerciseFailed, NotAttempted, all_exercises
from icl_course.exercises.edition import check_calls, solution_cells, student_notebook, write_student_edition
from icl_course.exercises.grading import grade_notebook
from icl_course.notebooks import notebook_paths

BOOK = Path(__file__).resolve().parent.parent / "book"
EXERCISES = all_exercises()


def test_registry_is_populated():
    assert len(EXERCISES) >= 4


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.name)
def test_reference_solution_passes(ex, capsys):
    ex.check(ex.solution)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.name)
def test_stub_is_not_attempted_with_hint(ex):
    with pytest.raises(NotAttempted, match="not attempted") as info:
        ex.check(ex.stub())
    assert ex.hint in str(info.value)


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.name)
def test_wrong_answers_fail_with_hint(ex):
    def zeros_like_solution(*args):
        out = ex.solution(*args)
        if isinstance(out, torch.Tensor):
            return torch.zeros_like(out) + 0.5
        if isinstance(out, (tuple, list)):
            return type(out)(m.T.contiguous() + 0.1 for m in out)
        return out * 1.1

    with pytest.raises(ExerciseFailed) as info:
        ex.check(zeros_like_solution)
    assert not isinstance(info.value, NotAttempted)
    assert "Hint" in str(info.value)


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.name)
def test_stub_defines_the_same_signature(ex):
    stub = ast.parse(ex.stub_source).body[0]
    sol = ast.parse(__import__("inspect").getsource(ex.solution)).body[0]
    assert stub.name == sol.name == ex.name
    assert [a.arg for a in stub.args.args] == [a.arg for a in sol.args.args]


def test_checker_rejects_a_non_function():
    ex = EXERCISES[0]
    with pytest.raises(ExerciseFailed, match="function"):
        ex.check(42)


@pytest.mark.parametrize("path", notebook_paths(BOOK), ids=lambda p: p.name)
def test_student_edition_is_solution_free(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    student = student_notebook(nb)
    nbformat.validate(student)
    sols = solution_cells(nb)
    assert [i for i, _ in solution_cells(student)] == [i for i, _ in sols]
    for i, key in sols:
        ex = REGISTRY[key]
        body = ast.unparse(ast.parse(nb.cells[i].source).body[0].body[-1])
        assert student.cells[i].source == ex.stub_source.rstrip("\n")
        assert "raise NotImplementedError" in student.cells[i].source
        assert body not in student.cells[i].source, f"the solution of {ex.name} leaked into the student edition"
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert check_calls(student) == check_calls(nb), "the checker cells must stay"
    assert student.metadata["icl_course"]["edition"] == "student"


def test_write_student_edition(tmp_path):
    written = write_student_edition(BOOK, tmp_path)
    assert [p.name for p in written] == [p.name for p in notebook_paths(BOOK)]
    assert all(p.exists() for p in written)


def _mini_notebook(bodies: dict[str, str]) -> nbformat.NotebookNode:
    """A small notebook with the chapter's structure for three exercises (fast to grade)."""
    cells = [nbformat.v4.new_code_cell("import torch\nfrom icl_course import gd_transformer as gt")]
    for name, body in bodies.items():
        cells += [nbformat.v4.new_markdown_cell("```{solution-start} x\n```"), nbformat.v4.new_code_cell(body),
                  nbformat.v4.new_markdown_cell("```{solution-end}\n```"),
                  nbformat.v4.new_code_cell(f"from icl_course.exercises.gd_transformer import check_{name}\n"
                                            f"check_{name}({name})")]
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                          "display_name": "Python 3"}})


@pytest.mark.slow
def test_grader_reports_passed_failed_and_not_attempted(tmp_path):
    import inspect

    ex = {e.name: e for e in EXERCISES}
    nb = _mini_notebook({
        "gd_step": inspect.getsource(ex["gd_step"].solution),
        "optimal_step_size": "def optimal_step_size(d, n, input_range=1.0):\n    return 6.0\n",
        "read_step_size": ex["read_step_size"].stub_source,
    })
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    rows = grade_notebook(path, timeout=120)
    assert {r.exercise: r.status for r in rows} == {
        "gd_step": "passed", "optimal_step_size": "failed", "read_step_size": "not attempted",
        "proposition1_weights": "missing", "implicit_model": "missing"}  # every exercise of the chapter


def test_exercise_names_are_unique_across_parts():
    from icl_course.exercises import exercise

    names = [ex.name for ex in EXERCISES]
    assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="already used"):
        exercise(part="another_part", name=EXERCISES[0].name, title="t", difficulty="★☆☆", minutes=1, hint="h",
                 solution=EXERCISES[0].solution, stub=EXERCISES[0].stub_source)(lambda fn: None)


def test_every_part_with_exercises_is_in_parts():
    from icl_course.parts import PARTS

    assert {ex.part for ex in EXERCISES} <= {p.name for p in PARTS}


def _mutate(out, kind: str):
    """The obvious wrong answers: every float negated, every matrix transposed, the first axis (tasks, or a
    matrix's rows) or the rows of each task's matrix rolled by one."""
    if isinstance(out, (tuple, list)):
        return type(out)(_mutate(o, kind) for o in out)
    if isinstance(out, dict):
        return {k: _mutate(v, kind) for k, v in out.items()}
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        if kind == "sign":
            return -out
        if kind == "transpose":
            return out.transpose(-2, -1).contiguous() if out.ndim >= 2 else out
        axis = 0 if kind == "permute" else -2
        return torch.roll(out, 1, dims=axis) if out.ndim >= abs(axis) and out.shape[axis] > 1 else out
    if isinstance(out, float) and kind == "sign":
        return -out
    return out


def _same(a, b) -> bool:
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    return a == b


_PRODUCTS = "W_Q, W_K and W_V, P flip together: the products W_KᵀW_Q and P W_V, all the layer uses, are unchanged"
EQUIVALENT = {
    ("proposition1_weights", "sign"): _PRODUCTS,
    ("gdpp_weights", "sign"): _PRODUCTS,
    ("feature_gd_layer", "sign"): _PRODUCTS,
    ("label_copy_weights", "sign"): _PRODUCTS,
    ("causal_gd_weights", "sign"): _PRODUCTS.replace("P W_V", "W_O W_V").replace("P flip", "W_O flip"),
}
"""Mutations that give an equivalent answer, with the reason; every other one must be rejected."""


@pytest.mark.parametrize("kind", ["sign", "transpose", "permute", "rows"])
@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.name)
def test_obvious_wrong_answers_fail(ex, kind):
    changed = []

    def wrong(*args, **kwargs):
        out = ex.solution(*args, **kwargs)
        bad = _mutate(out, kind)
        changed.append(not _same(out, bad))
        return bad

    try:
        ex.check(wrong)
    except ExerciseFailed as e:
        assert not isinstance(e, NotAttempted) and "Hint" in str(e)
        assert (ex.name, kind) not in EQUIVALENT, f"{ex.name}: {kind} is declared equivalent but was rejected"
        return
    if not any(changed):
        pytest.skip(f"{kind} leaves {ex.name}'s answers unchanged on the checker's inputs")
    assert (ex.name, kind) in EQUIVALENT, f"{ex.name}'s checker accepts the {kind} mutant of the solution"
