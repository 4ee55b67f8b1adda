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
def test_stub_is_told_what_is_expected_never_the_hint(ex):
    """A stub run says what the function must return (the stub's docstring: shapes and meaning); the hint, which
    may hold the formula, is kept for a wrong answer."""
    with pytest.raises(NotAttempted, match="not attempted") as info:
        ex.check(ex.stub())
    assert len(ex.expects()) > 20, f"{ex.name}'s stub needs a docstring saying what is expected"
    assert ex.expects() in str(info.value)
    assert ex.hint not in str(info.value) and "Hint" not in str(info.value)


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
    assert "Hint: " in str(info.value) or "Diagnosis: " in str(info.value)


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


DIAGNOSED = {"sign": "has the wrong sign", "transpose": "is transposed"}
"""The mutations a failure must name (the checker's diagnosis), not just reject."""

_PRODUCTS = "W_Q, W_K and W_V, P flip together: the products W_KᵀW_Q and P W_V, all the layer uses, are unchanged"
EQUIVALENT = {
    ("proposition1_weights", "sign"): _PRODUCTS,
    ("gdpp_weights", "sign"): _PRODUCTS,
    ("feature_gd_layer", "sign"): _PRODUCTS,
    ("input_copy_weights", "sign"): _PRODUCTS,
    ("causal_gd_weights", "sign"): _PRODUCTS.replace("P W_V", "W_O W_V").replace("P flip", "W_O flip"),
}
"""Mutations that give an equivalent answer, with the reason; every other one must be rejected."""

UNDIAGNOSED_FACTOR = {
    "expand_kv_heads": "a copy, checked bit for bit: multiplying back by 9 after dividing by 9 is not exact in "
                       "floating point, so the factor cannot be confirmed (the answer is still rejected)",
}
"""Exercises whose checker rejects an answer off by a factor without naming it, with the reason."""


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
        assert not isinstance(e, NotAttempted) and ("Hint: " in str(e) or "Diagnosis: " in str(e))
        if kind in DIAGNOSED:
            assert DIAGNOSED[kind] in str(e), f"{ex.name}: the {kind} mutant is not named: {e}"
        assert (ex.name, kind) not in EQUIVALENT, f"{ex.name}: {kind} is declared equivalent but was rejected"
        return
    if not any(changed):
        pytest.skip(f"{kind} leaves {ex.name}'s answers unchanged on the checker's inputs")
    assert (ex.name, kind) in EQUIVALENT, f"{ex.name}'s checker accepts the {kind} mutant of the solution"


def _factor_source(args: tuple) -> tuple[int, bool] | None:
    """Which size of the first call an answer could be off by: (position, is a tensor's last axis) of the first int
    argument above 1, else of the first tensor argument whose last axis is above 1; later calls use the same one."""
    for i, a in enumerate(args):
        if isinstance(a, int) and not isinstance(a, bool) and a > 1:
            return i, False
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor) and a.ndim >= 1 and a.shape[-1] > 1:
            return i, True
    return None


@pytest.mark.parametrize("power", [1, -1], ids=["spare", "missing"])
@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.name)
def test_a_factor_off_is_named(ex, power):
    """An answer multiplied (or divided) by one of the call's sizes — the missing or spare N of the usual slip — is
    told which factor it has spare or lacks."""
    source, changed = [], []

    def wrong(*args, **kwargs):
        out = ex.solution(*args, **kwargs)
        if not source:
            source.append(_factor_source(args))
        if source[0] is None:
            return out
        i, axis = source[0]
        c = float(args[i].shape[-1] if axis else args[i])
        bad = _scale(out, c**power) if c else out
        changed.append(not _same(out, bad))
        return bad

    try:
        ex.check(wrong)
    except ExerciseFailed as e:
        if any(changed) and ex.name not in UNDIAGNOSED_FACTOR:
            told = "has a spare factor" if power == 1 else "lacks a factor"
            assert told in str(e), f"{ex.name}: the answer off by a factor is not named: {e}"
            wanted = _source_name(ex, *source[0])
            assert wanted in str(e).split("Diagnosis:")[1], (
                f"{ex.name}: the factor named is not the one the answer is off by ({wanted}): {e}")
        return
    if not any(changed):
        pytest.skip(f"{ex.name}: no size of the checker's calls changes its answers (none, or the answer is an int)")
    assert (ex.name, "factor") in EQUIVALENT, f"{ex.name}'s checker accepts an answer off by a factor"


def _source_name(ex, position: int, last_axis: bool) -> str:
    """How the diagnosis must call the size the mutant used: the argument's name, or the name the stub's docstring
    gives a tensor argument's last axis (e.g. ``dx`` of ``x (B, N, dx)``)."""
    import inspect

    from icl_course.exercises import _shape_symbols

    stub = ex.stub()
    arg = list(inspect.signature(stub).parameters)[position]
    if not last_axis:
        return arg
    names = _shape_symbols(stub).get(arg, [])
    return names[-1] if names and names[-1].isidentifier() else f"the size of {arg}'s axis"


def _scale(out, c: float):
    if isinstance(out, (tuple, list)):
        return type(out)(_scale(o, c) for o in out)
    if isinstance(out, dict):
        return {k: _scale(v, c) for k, v in out.items()}
    if (isinstance(out, torch.Tensor) and out.is_floating_point()) or isinstance(out, float):
        return out * c
    return out


def _told(key: str, fn) -> str:
    with pytest.raises(ExerciseFailed) as info:
        REGISTRY[key].check(fn)
    return str(info.value)


def test_the_walkthroughs_mistakes_get_their_own_message():
    """The slips a learner made in the walkthrough: a sign error and a missing 1/N in gd_step were told the same
    thing; a dropped minus in read_step_size was told "factors are not identifiable"; a missing read-out sign in
    implicit_model got no size. Each is now named, N by the name the stub's docstring gives it."""
    def gd_step_sign(x, y, lr):
        return -lr * (y.transpose(1, 2) @ x) / x.shape[1]

    def gd_step_no_mean(x, y, lr):
        return lr * (y.transpose(1, 2) @ x)

    sign, no_mean = _told("gd_transformer.gd_step", gd_step_sign), _told("gd_transformer.gd_step", gd_step_no_mean)
    assert "Diagnosis: your answer has the wrong sign" in sign
    assert "Diagnosis: your answer has a spare factor N (N = 6 in the first test): dividing by it passes" in no_mean
    assert REGISTRY["gd_transformer.gd_step"].hint not in sign + no_mean  # diagnosed: the formula is not handed out

    ref = REGISTRY["gd_transformer.read_step_size"].solution
    told = _told("gd_transformer.read_step_size", lambda *a: -ref(*a))
    assert "has the wrong sign" in told and "not identifiable" not in told.split("Diagnosis")[1]

    ref = REGISTRY["gd_transformer.implicit_model"].solution
    told = _told("gd_transformer.implicit_model", lambda *a: -ref(*a))
    assert "has the wrong sign" in told and "max abs error" in told


def test_a_mistake_in_one_returned_value_is_located():
    ref = REGISTRY["gd_transformer.proposition1_weights"].solution

    def p_without_one_over_n(dx, dy, n_context, lr):
        W_Q, W_K, W_V, P = ref(dx, dy, n_context, lr)
        return W_Q, W_K, W_V, P * n_context

    told = _told("gd_transformer.proposition1_weights", p_without_one_over_n)
    assert "Diagnosis: one of returned values 1, 2, 3, 4 of 4 (undoing it in any one of them passes: only their " \
           "product counts) has a spare factor n_context (n_context = 7 in the first test)" in told


def test_an_unknown_mistake_gets_the_hint():
    ex = REGISTRY["gd_transformer.optimal_step_size"]
    told = _told("gd_transformer.optimal_step_size", lambda d, n, r=1.0: 6.0 + d)
    assert "Diagnosis" not in told and f"Hint: {ex.hint}" in told
