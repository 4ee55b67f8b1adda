"""Check a built HTML book in headless Chromium, offline.

The published book loads MathJax, require.js and the Jupyter widget manager from CDNs. Here every such URL is routed
to a copy of the same npm package fetched from the npm registry (``npm pack``) into the course cache, and the pages are
served from a local HTTP server that strips ``integrity`` attributes (the local copies are not byte-identical to the
CDN's). Any other request that leaves 127.0.0.1 is blocked and reported.

Per page it records: uncaught JavaScript errors and console errors, math elements and how many MathJax typeset (and
any ``merror``), internal links and images that do not resolve, exercise solutions that do not open on click, saved
widgets that render no slider or no image, and launch buttons that point at a notebook the repository does not have.
Chromium comes from Debian (``/usr/bin/chromium``) and is driven by Python ``playwright``; no browser is downloaded.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("ICL_CHROMIUM", "/usr/bin/chromium")  # Debian's; another Chromium or Chrome by path
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
WINDOW = {"width": 1280, "height": 900}
PAGE_TIMEOUT_MS = 120_000
"""How long a page may take to load and go quiet: playwright's default 30 s ran out once in CI while the other
worker built a book (a page with saved widgets, on two busy cores)."""
# CDN prefixes the book's pages load scripts from, and how an URL below each maps to an npm package and a file in it.
JSDELIVR = "https://cdn.jsdelivr.net/npm/"
CDNJS_REQUIRE = re.compile(r"https://cdnjs\.cloudflare\.com/ajax/libs/require\.js/([\d.]+)/require(?:\.min)?\.js")
NPM_SPEC = re.compile(r"^((?:@[^/@]+/)?[^/@]+)@([^/]+)/(.*)$")
INTEGRITY = re.compile(rb'\s+integrity="[^"]*"')


def missing_requirements() -> str | None:
    """Why the browser check cannot run here, or None when it can."""
    if not Path(CHROMIUM).exists():
        return (f"Chromium is not installed at {CHROMIUM} (Debian: `apt-get install chromium`; or name another "
                "Chromium or Chrome with ICL_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python `playwright` is not installed (it is in the `test` extra: `make setup`)"
    if shutil.which("npm") is None:
        return "npm is not installed (the check fetches MathJax and the widget manager from the npm registry)"
    return None


# --------------------------------------------------------------------------------------------- npm copies of the CDNs
def cdn_specs(html_dir: Path) -> set[str]:
    """Every ``name@version`` the pages load from a CDN (jsDelivr's npm mirror or cdnjs's require.js)."""
    specs = set()
    for page in html_dir.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        for url in re.findall(r'(?:src|data-jupyter-widgets-cdn)="([^"]+)"', text):
            if url.startswith(JSDELIVR) and (m := NPM_SPEC.match(url[len(JSDELIVR):])):
                specs.add(f"{m[1]}@{m[2]}")
            elif m := CDNJS_REQUIRE.match(url):
                specs.add(f"requirejs@{m[1]}")
    return specs


def fetch_npm(specs: set[str], cache: Path) -> dict[str, Path]:
    """``npm pack`` each spec once into ``cache`` and unpack it; maps each spec to its unpacked package folder.

    Safe for parallel test workers: each unpacks into a folder of its own and renames it into place; a worker that
    finds the place taken uses what is there.
    """
    cache.mkdir(parents=True, exist_ok=True)
    folders = {}
    for spec in sorted(specs):
        folder = cache / re.sub(r"[^\w.@-]", "_", spec)
        if folder.exists() and not (folder / "package" / "package.json").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a broken copy (an interrupted unpack): fetch it again
        if not (folder / "package" / "package.json").exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache))
            try:
                out = subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", str(tmp)],
                                     capture_output=True, text=True, timeout=300)
                if out.returncode != 0:
                    raise RuntimeError(f"npm pack {spec} failed: {out.stderr[-2000:]}")
                (tarball,) = tmp.glob("*.tgz")
                with tarfile.open(tarball) as tar:
                    tar.extractall(tmp, filter="data")
                tarball.unlink()
                try:
                    tmp.rename(folder)
                except OSError:  # another worker got there first
                    pass
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        folders[spec] = folder / "package"
    return folders


def local_file(url: str, folders: dict[str, Path]) -> Path | None:
    """The npm copy of a CDN URL, or None when the URL is not one of the CDNs' or the file is not in the copy."""
    url = url.split("?")[0].split("#")[0]
    if m := CDNJS_REQUIRE.match(url):
        name, version, rest = "requirejs", m[1], "require.js"
    elif url.startswith(JSDELIVR) and (m := NPM_SPEC.match(url[len(JSDELIVR):])):
        name, version, rest = m[1], m[2], m[3]
    else:
        return None
    for spec, folder in folders.items():
        if spec == f"{name}@{version}":
            path = folder / rest
            return path if path.is_file() else None
    return None


# ------------------------------------------------------------------------------------------------------- the server
class _Handler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):  # strip integrity attributes from the HTML pages
        path = Path(self.translate_path(self.path))
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = INTEGRITY.sub(b"", path.read_bytes())
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io

        return io.BytesIO(body)

    def log_message(self, *args):  # quiet
        pass


class Server:
    """Serves a folder on 127.0.0.1 (a free port) in a background thread; use as a context manager."""

    def __init__(self, root: Path):
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> Server:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------------- page checks
@dataclass
class PageReport:
    page: str
    errors: list[str] = field(default_factory=list)
    formulas: int = 0
    links: int = 0
    images: int = 0
    solutions: int = 0
    widgets: int = 0
    launch: list[str] = field(default_factory=list)


_PAGE_FACTS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const math = [...document.querySelectorAll('.math, span.math, div.math')];
  const untypeset = math.filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 80));
  // a TeX error renders as merror; an undefined macro as red text (MathJax's noundefined extension)
  const merror = [...document.querySelectorAll('mjx-merror')].map(el => el.getAttribute('data-mjx-error') ||
      el.textContent.slice(0, 80));
  const undefinedMacros = [...document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]')]
      .map(el => el.textContent.slice(0, 80));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const images = [...document.querySelectorAll('img')].map(img => ({src: img.currentSrc || img.src,
      ok: img.complete && img.naturalWidth > 0}));
  const launch = [...document.querySelectorAll('a[href*="colab.research.google.com"], a[href*="mybinder.org"]')]
      .map(a => a.href);
  const ids = [...document.querySelectorAll('[id]')].map(el => el.id);
  // the book's title in the sidebar must be the topmost element at its own centre (nothing floats over it)
  const title = document.querySelector('.logo__title, .navbar-brand');
  let covered = null;
  if (title) {
    const box = title.getBoundingClientRect();
    const top = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
    if (box.width > 0 && top && !title.contains(top) && !top.contains(title)) {
      covered = top.outerHTML.slice(0, 120);
    }
  }
  // the theme's own header strip must stay empty at this window size (its search box clashed with the sidebar's)
  const header = document.querySelector('#pst-header');
  const strip = header ? [...header.querySelectorAll('*')].filter(el => {
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    return el.children.length === 0 && box.width > 0 && box.height > 0 && style.visibility !== 'hidden';
  }).map(el => el.outerHTML.slice(0, 120)) : [];
  return {math: math.length, untypeset, merror, undefinedMacros, links, images, launch, ids, covered, strip};
}"""

_WIDGETS = """() => {
  // what each saved view must show, read from the saved widget state: a slider if its model tree holds one, an image
  // if it holds an Output widget with a PNG or an Image widget
  const state = {};
  for (const s of document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]')) {
    Object.assign(state, JSON.parse(s.textContent).state);
  }
  function walk(id, seen) {
    if (!state[id] || seen.has(id)) { return seen; }
    seen.add(id);
    for (const v of Object.values(state[id].state || {})) {
      for (const ref of [].concat(v)) {
        if (typeof ref === 'string' && ref.startsWith('IPY_MODEL_')) { walk(ref.slice(10), seen); }
      }
    }
    return seen;
  }
  return [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')].map(s => {
    const models = [...walk(JSON.parse(s.textContent).model_id, new Set())].map(id => state[id]);
    const box = s.parentElement;
    return {
      wantSlider: models.some(m => /Slider/.test(m.model_name)),
      wantImage: models.some(m => m.model_name === 'ImageModel' || (m.model_name === 'OutputModel' &&
          (m.state.outputs || []).some(o => o.data && o.data['image/png']))),
      slider: !!box.querySelector('.widget-slider, input[type=range], .slider, .noUi-target'),
      image: [...box.querySelectorAll('img')].some(img => img.complete && img.naturalWidth > 0),
      rendered: !!box.querySelector('.jupyter-widgets, .widget-box, .lm-Widget'),
      known: models.length > 0};
  });
}"""


def _ids_of(path: Path, cache: dict) -> set[str]:
    if path not in cache:
        cache[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8", errors="replace")))
    return cache[path]


def check_links(report: PageReport, page: str, facts: dict, root: Path, id_cache: dict) -> None:
    """Every internal link's file exists under ``root`` and its ``#anchor`` names an element of that page."""
    own = set(facts["ids"])
    for href in facts["links"]:
        parts = urllib.parse.urlsplit(href)
        if parts.scheme or href.startswith("//"):
            continue
        report.links += 1
        target = (root / page).parent / urllib.parse.unquote(parts.path) if parts.path else root / page
        if target.is_dir():
            target = target / "index.html"
        if not target.resolve().is_file():
            report.errors.append(f"broken link {href!r}")
            continue
        if parts.fragment and target.suffix == ".html":
            ids = own if not parts.path else _ids_of(target.resolve(), id_cache)
            if urllib.parse.unquote(parts.fragment) not in ids:
                report.errors.append(f"link {href!r}: no element with id {parts.fragment!r}")


def check_solutions(page, report: PageReport) -> None:
    """Each exercise solution (a sphinx-togglebutton dropdown) is hidden, and shows its body when clicked."""
    solutions = page.locator("div.solution.dropdown")
    report.solutions = solutions.count()
    for i in range(report.solutions):
        box = solutions.nth(i)
        body = box.locator("section").first
        if body.count() == 0:
            report.errors.append(f"solution {i + 1}: no body")
            continue
        if body.is_visible():
            report.errors.append(f"solution {i + 1} is open before a click")
        button = box.locator("button.toggle-button").first
        if button.count() == 0:
            report.errors.append(f"solution {i + 1}: no toggle button")
            continue
        button.click()
        try:
            body.wait_for(state="visible", timeout=3000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; the failure is what we report
            report.errors.append(f"solution {i + 1} does not open on click")


def check_page(page, url: str, name: str, root: Path, repo_notebooks: Path, id_cache: dict,
               screenshot: Path | None) -> PageReport:
    report = PageReport(name)
    page.goto(url + name, wait_until="load")
    page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
    facts = page.evaluate(_PAGE_FACTS)
    report.formulas = facts["math"]
    report.errors += [f"MathJax did not typeset {t!r}" for t in facts["untypeset"]]
    report.errors += [f"MathJax error: {t!r}" for t in facts["merror"]]
    report.errors += [f"MathJax: undefined macro {t}" for t in facts["undefinedMacros"]]
    if facts["strip"]:
        report.errors.append(f"the header strip above the sidebar shows {facts['strip'][0]}")
    if facts["covered"]:
        report.errors.append(f"the book's title is covered by {facts['covered']}")
    check_links(report, name, facts, root, id_cache)
    for image in facts["images"]:
        report.images += 1
        if not image["ok"]:
            report.errors.append(f"image does not load: {image['src']}")
    for i, widget in enumerate(page.evaluate(_WIDGETS)):
        report.widgets += 1
        if not widget["known"]:
            report.errors.append(f"saved widget {i + 1}: its model is not in the saved widget state")
        wanted = {"rendered": True, "slider": widget["wantSlider"], "image": widget["wantImage"]}
        for part, want in wanted.items():
            if want and not widget[part]:
                report.errors.append(f"saved widget {i + 1} renders no {part}")
    report.launch = sorted(set(facts["launch"]))
    own = f"book/{name.removesuffix('.html')}.ipynb"
    for link in report.launch:
        notebook = re.search(r"(?:blob/[^/]+/|urlpath=tree/)(.+\.ipynb)$", link)
        if notebook is None or not (repo_notebooks / notebook[1]).is_file():
            report.errors.append(f"launch button points at a notebook the repository lacks: {link}")
        elif notebook[1] != own:
            report.errors.append(f"launch button opens {notebook[1]}, not this page's {own}: {link}")
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    check_solutions(page, report)
    return report


def check_site(html_dir: Path, repo_root: Path, npm_cache: Path, screenshots: Path | None = None,
               notebook_pages: set[str] | None = None, only: set[str] | None = None,
               launch_buttons: bool = True) -> list[PageReport]:
    """Open every page of the built book ``html_dir`` and report on each (see the module docstring).

    ``notebook_pages`` are the chapters: with ``launch_buttons`` each must have launch buttons that open its own
    notebook in the repository; without (the student edition), no page may have any. ``screenshots``, when given,
    receives a PNG of each chapter's first screen.
    """
    from playwright.sync_api import sync_playwright

    folders = fetch_npm(cdn_specs(html_dir), npm_cache)
    pages = sorted(p.name for p in html_dir.glob("*.html") if only is None or p.stem in only)
    if screenshots is not None:  # only this run's pictures: an old one must not stand in for a missing one
        shutil.rmtree(screenshots, ignore_errors=True)
        screenshots.mkdir(parents=True)
    reports, id_cache = [], {}
    with Server(html_dir) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=WINDOW)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        problems: list[str] = []

        def route(r):
            url = r.request.url
            if url.startswith(server.url):
                return r.continue_()
            path = local_file(url, folders)
            if path is None:
                problems.append(f"blocked request to {url}")
                return r.abort()
            return r.fulfill(path=str(path))

        context.route("**/*", route)
        page = context.new_page()
        page.on("pageerror", lambda e: problems.append(f"uncaught JS error: {e}"))
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
        for name in pages:
            problems.clear()
            stem = name.removesuffix(".html")
            shot = screenshots / f"{stem}.png" if screenshots is not None and stem in (notebook_pages or ()) else None
            report = check_page(page, server.url, name, html_dir, repo_root, id_cache, shot)
            report.errors = problems[:] + report.errors
            if not launch_buttons and report.launch:
                report.errors.append(f"launch buttons in an edition that must have none: {report.launch}")
            elif launch_buttons and notebook_pages is not None and stem in notebook_pages and not report.launch:
                report.errors.append("chapter has no launch buttons")
            reports.append(report)
        browser.close()
    return reports


if __name__ == "__main__":  # python tests/browser/site.py HTML_DIR: print every page's problems
    import sys

    html = Path(sys.argv[1])
    root = Path(__file__).resolve().parents[2]
    chapters = {p.stem for p in (root / "book").glob("part*.ipynb")}
    out = check_site(html, root, root / ".cache" / "npm", Path(os.environ.get("SHOTS", "/tmp/shots")), chapters,
                     set(sys.argv[2:]) or None)
    for r in out:
        print(r.page, r.formulas, r.links, r.images, r.solutions, r.widgets, len(r.launch))
        for e in r.errors[:15]:
            print("   ", e)
