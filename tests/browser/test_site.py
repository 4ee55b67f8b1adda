"""Gates 3 and 4: the book builds with zero warnings, and every page of it works in a browser.

One build (``jupyter-book build book --all -W --keep-going``) serves both checks. The browser check opens every page
in headless Chromium with the CDN scripts routed to npm copies (``sitecheck``); it prints its counts and saves a
screenshot of each chapter's first screen into ``_build/screenshots/``.
"""

from __future__ import annotations

import re

import pytest

from icl_course import __version__

from .conftest import ROOT, build_book, chapters, check_edition

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    return build_book(ROOT / "book", tmp_path_factory.mktemp("book"))


def test_book_builds_without_warnings(html):
    for page in chapters() | {"intro", "notation", "differences", "reproducibility", "api", "bibliography",
                              "instructors", "troubleshooting"}:
        assert (html / f"{page}.html").exists(), f"{page}.html was not built"
    chapter = (html / "part3_one_layer_one_step.html").read_text(encoding="utf-8")
    assert "prop-one-step" in chapter and "ex-gd-step" in chapter and "E9: PASS" in chapter
    copy = (html / "part3_standard_tokens.html").read_text(encoding="utf-8")
    assert "prop-copy" in copy and "E12a: PASS" in copy
    sine = (html / "part3_nonlinear_features.html").read_text(encoding="utf-8")
    assert "prop-features" in sine and "E8u: KNOWN_GAP" in sine


def test_footer_names_the_package_version(html):
    for page in ("intro", "part3_one_layer_one_step"):
        text = (html / f"{page}.html").read_text(encoding="utf-8")
        found = re.findall(r'class="version">([^<]+)<', text)
        assert found == [__version__], f"{page}: footer version {found}, package {__version__}"


def test_every_page_works_in_a_browser(html):
    check_edition(html, "book", "book")
