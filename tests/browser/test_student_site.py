"""The student edition of the book (``make student-book``): it builds with zero warnings, shows no solution, and every
page of it works in a browser (the same check as the full book's, with no launch buttons allowed)."""

from __future__ import annotations

import html as htmllib
import re

import nbformat
import pytest

from icl_course.exercises import REGISTRY
from icl_course.exercises.edition import _WITHHELD, _solution_markdown, solution_cells, write_student_book

from .conftest import ROOT, build_book, chapters, check_edition

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    source = write_student_book(ROOT, tmp_path_factory.mktemp("student") / "src")
    return build_book(source, tmp_path_factory.mktemp("student-html"))


def _text(path) -> str:
    """A page's visible text: tags stripped (highlighted code is split into spans), entities decoded."""
    return htmllib.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def test_student_book_shows_no_solution(html):
    checked = discussions = 0
    for name in sorted(chapters()):
        nb = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
        page, download = _text(html / f"{name}.html"), (html / "_sources" / f"{name}.ipynb").read_text("utf-8")
        for i, key in solution_cells(nb):
            stub = REGISTRY[key].stub_source
            lines = [ln.strip() for ln in nb.cells[i].source.splitlines()]
            telling = [ln for ln in lines if len(ln) > 24 and ln not in stub and not ln.startswith(("#", '"""'))]
            assert telling, f"{name}: solution {key} has no line to look for"
            for line in telling:
                assert line not in page, f"{name}.html shows a line of the solution of {key}: {line!r}"
                assert json_escaped(line) not in download, f"{name}.ipynb holds the solution of {key}: {line!r}"
            checked += 1
        for i in _solution_markdown(nb):
            words = max(re.findall(r"[A-Za-z][A-Za-z ,;'-]{24,}", nb.cells[i].source), key=len)  # no math in it
            assert words.strip() not in page, f"{name}.html shows a solution's written discussion: {words!r}"
            discussions += 1
    assert checked == len(REGISTRY) and discussions > 0
    assert _WITHHELD.strip("*") in _text(html / "part4_causal_gd.html")


def json_escaped(line: str) -> str:
    import json

    return json.dumps(line, ensure_ascii=False)[1:-1]  # as nbformat writes it: UTF-8, not \u escapes


def test_pages_for_instructors_are_left_out(html):
    from icl_course.exercises.edition import INSTRUCTOR_PAGES

    assert INSTRUCTOR_PAGES and not any((html / f"{page}.html").exists() for page in INSTRUCTOR_PAGES)
    links = "".join(p.read_text(encoding="utf-8") for p in html.glob("*.html"))
    assert not any(f'href="{page}.html' in links for page in INSTRUCTOR_PAGES)


def test_footer_says_student_edition(html):
    text = (html / "intro.html").read_text(encoding="utf-8")
    assert "student edition · icl-course" in text and "(student edition)" in text


def test_student_edition_works_in_a_browser(html):
    check_edition(html, "student", "student edition", launch_buttons=False)
