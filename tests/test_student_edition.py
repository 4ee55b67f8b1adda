"""The student edition of the notebooks reads well in plain Jupyter and runs to the end when partly solved.

Plain JupyterLab and Notebook render Markdown and math but not MyST: the student notebooks carry no directive, role or
target, every cross-reference and citation is resolved to text, each figure's caption is a markdown cell after it,
and each checker cell prints its verdict instead of stopping the run.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import nbformat
import pytest

from icl_course.exercises import REGISTRY, all_exercises
from icl_course.exercises.edition import (
    _run_on,
    book_references,
    check_calls,
    plain_markdown,
    solution_cells,
    write_student_edition,
)

BOOK = Path(__file__).resolve().parent.parent / "book"
MYST = [(r"^[ \t]*(`{3,}|:{3,})\{[\w:-]+\}", "a directive"), (r"\{[\w:-]+\}`", "a role"),
        (r"^\([\w:.-]+\)=\s*$", "a target")]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {p.stem: nbformat.read(p, as_version=4) for p in write_student_edition(BOOK, out)}


def test_no_myst_is_left(student):
    for name, nb in student.items():
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            for pattern, what in MYST:
                m = re.search(pattern, cell.source, re.M)
                assert m is None, f"{name}: {what} is left: {cell.source[max(0, m.start() - 60):m.end() + 60]!r}"


def test_references_and_citations_are_resolved(student):
    refs = book_references(BOOK)
    keys = set(refs["bib"])
    chapters = set(student)
    for name, nb in student.items():
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert "n.d." not in text
        left = [k for k in keys if re.search(rf"\b{re.escape(k)}\b", text)]
        assert not left, f"{name}: raw citation keys {left}"
        for target in re.findall(r"\]\(([\w]+)\.ipynb\)", text):
            assert target in chapters, f"{name}: link to a notebook that does not exist: {target}"
        anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
        for ex in re.findall(r":label: (ex-[\w-]+)", "\n".join(
                c.source for c in nbformat.read(BOOK / f"{name}.ipynb", as_version=4).cells
                if c.cell_type == "markdown")):
            assert ex in anchors, f"{name}: exercise {ex} lost its anchor"


def test_known_rewrites():
    refs = {"bib": {"vonoswald2022transformers": ("von Oswald et al.", "2022"), "dai2022why": ("Dai et al.", "2022")},
            "titles": {"part3_one_layer_one_step": "One layer, one step", "differences": "Differences from the papers"},
            "labels": {"fig-a": ("page", "Figure 2", "2"), "prop-one-step": ("part3_one_layer_one_step",
                                                                           "Proposition (One step)", "")}}
    cases = {
        "{cite:t}`vonoswald2022transformers`": "von Oswald et al. (2022)",
        "{cite:p}`vonoswald2022transformers,dai2022why`": "(von Oswald et al., 2022; Dai et al., 2022)",
        "{doc}`part3_one_layer_one_step`": "[One layer, one step](part3_one_layer_one_step.ipynb)",
        "{doc}`the paper's differences <differences>`": "*the paper's differences* (in the online book)",
        "{numref}`fig-a`": "Figure 2",
        "{numref}`Panel %s <fig-a>`": "Panel 2",
        "{prf:ref}`prop-one-step`": "Proposition (One step) of [One layer, one step](part3_one_layer_one_step.ipynb)",
        "```{prf:proof}\nBecause.\n```": "*Proof.* Because. ∎",
        "````{exercise} Title\n:label: ex-t\n\nDo it.\n````": '<a id="ex-t"></a>**Exercise (Title).**\n\nDo it.',
        "```{admonition} Note\n:class: tip\nRead.\n```": "> **Note**\n>\n> Read.",
        "(sec-x)=\n## Head": '<a id="sec-x"></a>\n## Head',
    }
    for source, expected in cases.items():
        assert plain_markdown(source, refs, "page") == expected, source


def test_figure_captions_follow_their_figures(student):
    for name, nb in student.items():
        full = nbformat.read(BOOK / f"{name}.ipynb", as_version=4)
        captions = [c for c in full.cells if c.cell_type == "code"
                    and c.metadata.get("mystnb", {}).get("figure", {}).get("caption")]
        after = [nb.cells[i + 1].source for i, c in enumerate(nb.cells[:-1]) if c.cell_type == "code"
                 and c.metadata.get("mystnb", {}).get("figure", {}).get("caption")]
        assert len(after) == len(captions)
        assert all(re.match(r'<a id="[^"]+"></a>\*\*Figure \d+\.\*\* ', s) for s in after), after[:2]


def test_solutions_are_still_found(student):
    all_exercises()
    for name, nb in student.items():
        found = solution_cells(nb)
        assert len(found) == len(solution_cells(nbformat.read(BOOK / f"{name}.ipynb", as_version=4)))
        assert all(nb.cells[i].source == REGISTRY[k].stub_source.rstrip("\n") for i, k in found)


def test_checker_cells_print_the_verdict_and_run_on():
    all_exercises()
    key = next(iter(REGISTRY))
    ex = REGISTRY[key]
    source = _run_on(f"from icl_course.exercises.{ex.part} import check_{ex.name}\ncheck_{ex.name}({ex.name})",
                     ex.name)

    def run(fn) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(source, "<checker cell>", "exec"), {ex.name: fn})  # noqa: S102 - our own cell
        return out.getvalue()

    assert run(ex.stub()).startswith(f"⏳ {ex.name}: not attempted yet") and "Hint" not in run(ex.stub())
    assert run(lambda *a, **k: None).startswith("❌ ")
    assert "passed" in run(ex.solution)


@pytest.mark.slow
def test_an_untouched_student_notebook_runs_to_the_end(student, tmp_path):
    """nbconvert's plain "execute" (no --allow-errors) runs a student notebook through; each checker reports."""
    from nbclient import NotebookClient

    nb = student["part2_dual_form"]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    verdicts = ["".join(o.get("text", "") for o in nb.cells[i].outputs) for i in check_calls(nb)]
    assert len(verdicts) == 5 and all(v.startswith("⏳ ") for v in verdicts), verdicts
