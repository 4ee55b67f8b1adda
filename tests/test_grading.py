"""The grader an instructor can trust: a simulated class graded through the command line, bad inputs, and every
chapter gradable through the registry.

The class is one chapter (Part II's dual form, the quickest to run): an untouched student edition, a correct
submission (the chapter itself), a submission that tries everything — a wrong answer, a deleted solution cell, a
package function imported in place of a solution, a syntax error, one correct answer, and every checker cell edited
to print "passed" —, one that kills its kernel, and a correct one with one solution wrapped around the registry's
reference solution (which fails it all)."""

from __future__ import annotations

import csv
import inspect
import json
import re
from pathlib import Path

import nbformat
import pytest

from icl_course.__main__ import main
from icl_course.exercises import REGISTRY, all_exercises
from icl_course.exercises.edition import check_calls, solution_cells, student_notebook
from icl_course.exercises.grading import NotASubmission, chapter_exercises, find_chapter, write_report
from icl_course.notebooks import notebook_paths

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTER = "part2_dual_form"


def _chapter() -> nbformat.NotebookNode:
    return nbformat.read(BOOK / f"{CHAPTER}.ipynb", as_version=4)


def _tampered() -> nbformat.NotebookNode:
    """Every trick at once (see the module docstring)."""
    nb = student_notebook(_chapter(), chapter=CHAPTER)
    cells = dict(solution_cells(nb))
    by_name = {REGISTRY[k].name: i for i, k in cells.items()}
    keys = {REGISTRY[k].name: k for k in cells.values()}
    nb.cells[by_name["dual_form_predict"]].source = (  # a function of the package, not defined in the notebook
        "from icl_course.meta_optimizer import gd_step_linear_layer as dual_form_predict")
    nb.cells[by_name["k_step_dual_form"]].source = "def k_step_dual_form(*args, **kwargs):\n    return None\n"
    solution = REGISTRY[keys["simaou_from_outputs"]].solution
    nb.cells[by_name["simaou_from_outputs"]].source = inspect.getsource(solution).replace(
        f"def {solution.__name__}(", "def simaou_from_outputs(")
    nb.cells[by_name["rec2ftp_by_hand"]].source = "def rec2ftp_by_hand(:\n    return 1\n"  # a syntax error
    for i in check_calls(nb):
        nb.cells[i].source = "print('✅ passed')"
    # a notebook that redefines print and shadows builtins must not fool (or break) the grader
    nb.cells.append(nbformat.v4.new_code_cell("def print(*args, **kwargs):\n    pass\n\n\nclass type:\n    pass"))
    del nb.cells[by_name["delta_w_icl"]]  # last: the indices above are taken first
    return nb


def _reaching() -> nbformat.NotebookNode:
    """The full chapter (every answer right) plus one solution wrapped around the registry's reference."""
    nb = _chapter()
    cells = dict(solution_cells(nb))
    key = next(k for k in cells.values() if REGISTRY[k].name == "k_step_dual_form")
    i = next(i for i, k in cells.items() if k == key)
    nb.cells[i].source = ("from icl_course.exercises import REGISTRY\n\n\ndef k_step_dual_form(*args, **kwargs):\n"
                          f"    return REGISTRY[{key!r}].solution(*args, **kwargs)\n")
    return nb


def _crashing() -> nbformat.NotebookNode:
    """A submission that kills its kernel half-way."""
    nb = student_notebook(_chapter(), chapter=CHAPTER)
    nb.cells.insert(3, nbformat.v4.new_code_cell("import os\nos._exit(0)"))
    return nb


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """Five students, each with the same file name in a folder of their own."""
    folder = tmp_path_factory.mktemp("class")
    for student, nb in {"ann": student_notebook(_chapter(), chapter=CHAPTER), "bob": _chapter(),
                        "cat": _tampered(), "dan": _crashing(), "eve": _reaching()}.items():
        (folder / student).mkdir()
        nbformat.write(nb, folder / student / f"{CHAPTER}.ipynb")
    return folder


@pytest.mark.slow
def test_a_simulated_class(classroom, tmp_path, capsys):
    (tmp_path / "empty.ipynb").write_text("")
    out, kept = tmp_path / "grades.csv", tmp_path / "feedback"
    code = main(["grade", str(classroom), str(tmp_path / "empty.ipynb"), "--csv", "--out", str(out),
                 "--keep", str(kept), "--timeout", "120"])
    assert code == 2, "an input that is not a submission makes the exit status 2"
    assert capsys.readouterr().err.strip().splitlines() == [
        f"not a submission: {tmp_path / 'empty.ipynb'}: not a readable notebook (Notebook does not appear to be "
        "JSON: '')"]
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    names = [REGISTRY[k].name for k in chapter_exercises(CHAPTER)]
    status = {(r["file"].split("/")[0], r["exercise"]): r["status"] for r in rows}
    hints = {(r["file"].split("/")[0], r["exercise"]): r["hint"] for r in rows}
    assert len(rows) == 5 * len(names) and set(rows[0]) == {"file", "chapter", "exercise", "status", "points",
                                                            "max_points", "hint"}
    assert {r["file"] for r in rows} == {f"{s}/{CHAPTER}.ipynb" for s in ("ann", "bob", "cat", "dan", "eve")}
    assert all(status["ann", n] == "not attempted" for n in names)
    assert all(status["bob", n] == "passed" for n in names)
    assert {n: status["cat", n] for n in names} == {
        "dual_form_predict": "failed", "delta_w_icl": "missing", "k_step_dual_form": "failed",
        "simaou_from_outputs": "passed", "rec2ftp_by_hand": "failed"}
    assert "not a function defined in this notebook" in hints["cat", "dual_form_predict"]
    # one cell that reaches into the registry fails the whole notebook, the right answers included
    assert all(status["eve", n] == "failed" and "reaches into the course's exercise registry" in hints["eve", n]
               for n in names)
    assert "raised SyntaxError" in hints["cat", "rec2ftp_by_hand"]
    assert all(status["dan", n] == "failed" and "could not be run to the end" in hints["dan", n] for n in names)
    assert "Hint" not in hints["ann", "dual_form_predict"], "a stub's report must not give the answer"
    points = {s: sum(int(r["points"]) for r in rows if r["file"].startswith(s)) for s in ("bob", "cat")}
    total = sum(int(r["max_points"]) for r in rows if r["file"].startswith("bob"))
    assert points["bob"] == total > points["cat"] > 0
    # the executed notebooks are kept in the same layout, each with the grader's report at the end
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*.ipynb")) == [
        f"{s}/{CHAPTER}.ipynb" for s in ("ann", "bob", "cat", "dan", "eve")]
    report = nbformat.read(kept / "cat" / f"{CHAPTER}.ipynb", as_version=4).cells[-1].source
    assert report.startswith("## Grader's report:") and "missing" in report


@pytest.mark.slow
@pytest.mark.parametrize("student,code", [("bob", 0), ("ann", 1)])
def test_exit_status_and_json(classroom, student, code, capsys):
    assert main(["grade", str(classroom / student / f"{CHAPTER}.ipynb"), "--fast", "--json"]) == code
    rows = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in rows} == ({"passed"} if code == 0 else {"not attempted"})


def test_grade_refuses_a_bad_output_place(classroom, tmp_path, capsys):
    assert main(["grade", str(classroom), "--keep", str(classroom / "feedback")]) == 2
    assert "lies inside the submissions folder" in capsys.readouterr().err
    assert main(["grade", str(classroom), "--out", str(tmp_path / "no" / "such" / "grades.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_inputs_get_one_line_and_exit_2(tmp_path, capsys):
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def f(x):\n    return x")])
    nbformat.write(other, tmp_path / "other_course.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "blank.ipynb")
    (tmp_path / "solution.py").write_text("def gd_step(): pass\n")
    (tmp_path / "zero.ipynb").write_bytes(b"")
    (tmp_path / "nothing_here").mkdir()
    odd = nbformat.v4.new_notebook(metadata={"icl_course": "x"})
    nbformat.write(odd, tmp_path / "odd_metadata.ipynb")
    (tmp_path / "odd_chapter.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": [],
                                                            "metadata": {"icl_course": {"chapter": ["a"]}}}))
    (tmp_path / "odd_source.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                                           "cells": [{"cell_type": "markdown", "metadata": {},
                                                                      "source": 5}]}))
    cases = {"odd_metadata.ipynb": "not a notebook of this course", "odd_chapter.ipynb": "not a notebook of",
             "odd_source.ipynb": "not a", "missing.ipynb": "no such file",
             "solution.py": "not a notebook (a submission is an .ipynb file)",
             "zero.ipynb": "not a readable notebook", "other_course.ipynb": "not a notebook of this course",
             "blank.ipynb": "not a notebook of this course", "nothing_here": "a folder with no notebook in it"}
    for name, message in cases.items():
        assert main(["grade", str(tmp_path / name)]) == 2, name
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err, (name, captured.err)
        assert main(["check", str(tmp_path / name)]) == 2
        capsys.readouterr()


def test_a_notebook_mixing_chapters_is_not_a_submission(tmp_path):
    from icl_course.exercises.grading import _read

    keys = [chapter_exercises(CHAPTER)[0], chapter_exercises("part3_one_layer_one_step")[0]]
    cells = []
    for k in keys:
        cells += [nbformat.v4.new_markdown_cell("```{solution-start} x\n```"),
                  nbformat.v4.new_code_cell(REGISTRY[k].stub_source),
                  nbformat.v4.new_markdown_cell("```{solution-end}\n```")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "mix.ipynb")
    with pytest.raises(NotASubmission, match="mixes exercises of several chapters"):
        find_chapter(_read(tmp_path / "mix.ipynb"), tmp_path / "mix.ipynb")


@pytest.mark.parametrize("path", notebook_paths(BOOK), ids=lambda p: p.name)
def test_every_chapter_is_gradable_through_the_registry(path):
    """Each chapter's exercises are found from the chapter notebook, from its student edition (metadata) and from
    its solution cells alone (a renamed file); they are exactly the functions its solution cells define."""
    all_exercises()
    nb = nbformat.read(path, as_version=4)
    assert find_chapter(nb, path) == path.stem
    student = student_notebook(nb, chapter=path.stem)
    assert find_chapter(student, Path("renamed.ipynb")) == path.stem
    assert find_chapter(nb, Path("renamed.ipynb")) == path.stem
    assert sorted(chapter_exercises(path.stem)) == sorted(k for _, k in solution_cells(nb))


def test_text_report_names_the_reason(tmp_path):
    from icl_course.exercises.grading import GradeRow

    rows = [GradeRow("a.ipynb", CHAPTER, "f", "failed", 0, 2, "f: wrong sign\nHint: look at the sign"),
            GradeRow("a.ipynb", CHAPTER, "g", "passed", 1, 1, "")]
    text = write_report(rows, "text")
    assert "a.ipynb (part2_dual_form): 1/3 points" in text and "— f: wrong sign" in text
    with pytest.raises(ValueError, match="fmt must be"):
        write_report(rows, "xml")


@pytest.mark.parametrize("argv,message", [
    (["student", "OUT", "--book", "NOWHERE"], "book must be the course's book folder"),
    (["student-book", "OUT", "--root", "NOWHERE"], "root must be the repository root"),
])
def test_student_commands_reject_a_wrong_folder(tmp_path, capsys, argv, message):
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("NOWHERE", str(tmp_path / "nowhere")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_exercise_catalogue_is_complete_and_agrees_with_the_statements():
    from icl_course.exercises.grading import exercise_catalogue

    rows = exercise_catalogue(BOOK)
    all_exercises()
    assert sorted(r["name"] for r in rows) == sorted(ex.name for ex in REGISTRY.values())
    wrong = [(r["label"], r["shown"], (r["difficulty"], r["minutes"])) for r in rows
             if r["shown"] != (r["difficulty"], r["minutes"])]
    assert wrong == [], f"the statement shows another difficulty or time than the registry: {wrong}"
    assert all(r["asks"] and r["title"] for r in rows)


def test_instructors_page_carries_the_current_catalogue():
    from icl_course.exercises.grading import CATALOGUE_END, CATALOGUE_START, catalogue_markdown

    page = (BOOK / "instructors.md").read_text(encoding="utf-8")
    section = CATALOGUE_START + page.split(CATALOGUE_START, 1)[1].split(CATALOGUE_END, 1)[0] + CATALOGUE_END
    assert section == catalogue_markdown(BOOK), "run `python -m icl_course catalogue`"


@pytest.mark.slow
@pytest.mark.parametrize("path", notebook_paths(BOOK), ids=lambda p: p.stem)
def test_fast_mode_gives_every_chapter_full_marks(path):
    """``--fast`` runs only the set-up, solution and definition cells: each chapter's own notebook (the reference
    solutions) must still pass every exercise, so no solution depends on a cell that fast mode skips."""
    from icl_course.exercises.grading import grade_notebook

    rows = grade_notebook(path, fast=True, timeout=300)
    assert [(r.exercise, r.status) for r in rows if r.status != "passed"] == []
    assert len(rows) == len(chapter_exercises(path.stem))


_HOMEWORK = re.compile(r"((?:\{ref\}`[\w-]+`,?\s*)+)—\s*(\d+)\s+min,\s*(\d+)\s+points")
_OPTIONAL = re.compile(r"Optional\s+\((\d+)\s+min\):\s*((?:\{ref\}`[\w-]+`,?\s*)+)")


def _plan_sums(text: str) -> list[tuple[list[str], int, int | None]]:
    """Each exercise list of the course plan with the minutes (and points) it states."""
    found = [(re.findall(r"`([\w-]+)`", m[1]), int(m[2]), int(m[3])) for m in _HOMEWORK.finditer(text)]
    return found + [(re.findall(r"`([\w-]+)`", m[2]), int(m[1]), None) for m in _OPTIONAL.finditer(text)]


def test_course_plan_sums_agree_with_the_catalogue():
    """The four-week plan's homework and optional lists state the sum of their exercises' time estimates and points;
    relabelling an exercise in the registry must show up there."""
    from icl_course.exercises.grading import exercise_catalogue

    rows = {r["label"]: r for r in exercise_catalogue(BOOK)}
    sums = _plan_sums((BOOK / "course_plan.md").read_text(encoding="utf-8"))
    assert len(sums) >= 7
    for labels, minutes, points in sums:
        assert set(labels) <= set(rows), set(labels) - set(rows)
        assert minutes == sum(rows[x]["minutes"] for x in labels), (labels, minutes)
        if points is not None:
            assert points == sum(rows[x]["points"] for x in labels), (labels, points)


def test_the_instructors_page_quotes_what_the_checkers_print():
    """The page's example of a diagnosis is the checkers' real output for those two slips, not typed in."""
    from icl_course.exercises import ExerciseFailed, all_exercises

    all_exercises()
    page = (BOOK / "instructors.md").read_text(encoding="utf-8")
    gd_step, step_size = REGISTRY["gd_transformer.gd_step"], REGISTRY["gd_transformer.optimal_step_size"]
    slips = [(gd_step, lambda x, y, lr: lr * (y.transpose(1, 2) @ x)),  # the 1/N left out
             (step_size, lambda d, n, input_range=1.0: step_size.solution(d, n, 2 * input_range))]  # U(−r, r)
    for ex, wrong in slips:
        try:
            ex.check(wrong)
        except ExerciseFailed as e:
            assert str(e) in page, f"the instructors page does not quote what {ex.name}'s checker prints:\n{e}"
        else:
            raise AssertionError(f"{ex.name}'s checker accepted the slip")
