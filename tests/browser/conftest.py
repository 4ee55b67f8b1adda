"""Shared by the browser checks of the two editions: build a book once per test file, skip or fail without Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .sitecheck import missing_requirements

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "_build" / "screenshots"
NPM_CACHE = ROOT / ".cache" / "npm"


def build_book(source: Path, out: Path) -> Path:
    """``jupyter-book build SOURCE --all -W --keep-going`` into ``out``; the HTML folder. Fails with the log's tail."""
    jb = Path(sys.executable).parent / "jupyter-book"
    if not jb.exists():
        pytest.fail("jupyter-book is not installed: install the `book` extra (make setup)")
    result = subprocess.run([str(jb), "build", str(source), "--all", "-W", "--keep-going", "--path-output", str(out)],
                            capture_output=True, text=True, timeout=1200, cwd=source.parent)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "_build" / "html"


def require_browser() -> None:
    """Skip (on a learner's machine) or fail (in CI, ``ICL_REQUIRE_BROWSER=1``) when the check cannot run here."""
    why = missing_requirements()
    if why is None:
        return
    if os.environ.get("ICL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ICL_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(f"browser check skipped: {why}")


def chapters() -> set[str]:
    """The chapter pages: one per notebook under book/."""
    return {p.stem for p in (ROOT / "book").glob("*.ipynb")}


def check_edition(html: Path, folder: str, edition: str, launch_buttons: bool = True) -> None:
    """Run the browser check on a built edition and assert: every page visited, no problem on any, each kind of
    check ran on something, a screenshot per chapter. The counts go to ``_build/screenshots/<folder>/counts.txt``,
    which ``tests/conftest.py`` prints at the end of the run."""
    from .sitecheck import check_site

    require_browser()
    reports = check_site(html, ROOT, NPM_CACHE, SCREENSHOTS / folder, notebook_pages=chapters(),
                         launch_buttons=launch_buttons)
    total = {k: sum(getattr(r, k) for r in reports) for k in ("formulas", "links", "images", "solutions", "widgets")}
    counts = (f"{edition}: {len(reports)} pages, {total['formulas']} formulas typeset, {total['links']} internal "
              f"links, {total['images']} images, {total['solutions']} solutions opened, {total['widgets']} saved "
              "widgets")
    (SCREENSHOTS / folder / "counts.txt").write_text(counts + "\n", encoding="utf-8")
    assert len(reports) == len(list(html.glob("*.html"))) > len(chapters())
    assert [f"{r.page}: {e}" for r in reports for e in r.errors] == []
    assert all(total[k] > 0 for k in ("formulas", "solutions", "widgets", "images"))
    assert {p.stem for p in (SCREENSHOTS / folder).glob("*.png")} == chapters()
