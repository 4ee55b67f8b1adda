"""The browser check can fail: on a small made-up site, each kind of page problem it looks for is reported, and a
clean page gets no report. (Saved widgets need the widget manager and a saved state; the book's own widget pages
exercise that check.)"""

from __future__ import annotations

from .conftest import NPM_CACHE, require_browser
from .sitecheck import check_site

MATHJAX = '<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
GOOD = f"""<html><head>{MATHJAX}</head><body><p id="here">fine</p>
<span class="math">\\(x^2\\)</span><a href="bad.html">next</a><a href="#here">up</a></body></html>"""
BAD = f"""<html><head>{MATHJAX}<script src="https://example.org/tracker.js"></script></head><body>
<script>throw new Error("boom");</script>
<span class="math">\\(\\frac{{1}}{{\\)</span><span class="math">\\(\\nosuchmacro\\)</span>
<span class="math">\\(x^2^3\\)</span>
<a href="missing.html">gone</a><a href="good.html#nowhere">no anchor</a>
<img src="nothing.png" alt="missing">
<div class="solution dropdown admonition"><section><p>answer</p></section></div>
<a href="https://colab.research.google.com/github/o/r/blob/main/book/good.ipynb">launch</a>
<p class="logo__title" style="position:absolute;top:200px;left:10px;width:300px;height:30px">Title</p>
<div style="position:fixed;top:180px;left:0;width:400px;height:100px;background:#fff">a box over it</div>
<header id="pst-header"><div><button class="search-button-field">Search</button></div></header>
</body></html>"""


def test_sitecheck_reports_each_kind_of_problem(tmp_path):
    require_browser()
    (tmp_path / "good.html").write_text(GOOD, encoding="utf-8")
    (tmp_path / "bad.html").write_text(BAD, encoding="utf-8")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "good.ipynb").write_text("{}")
    reports = {r.page: r for r in check_site(tmp_path, tmp_path, NPM_CACHE, notebook_pages={"good", "bad"})}
    assert reports["good.html"].errors == ["chapter has no launch buttons"], reports["good.html"].errors
    assert reports["good.html"].formulas == 1 and reports["good.html"].links == 2
    errors = "\n".join(reports["bad.html"].errors)
    for expected in ("uncaught JS error: boom", "blocked request to https://example.org/tracker.js",
                     "MathJax did not typeset", "MathJax: undefined macro \\nosuchmacro",
                     "MathJax error: 'Double exponent", "broken link 'missing.html'", "no element with id 'nowhere'",
                     "image does not load", "solution 1", "launch button opens book/good.ipynb, not this page's",
                     "the book's title is covered by <div", "the header strip above the sidebar shows <button"):
        assert expected in errors, f"{expected!r} not reported; got:\n{errors}"
