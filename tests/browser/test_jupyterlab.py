"""The student notebooks as students open them: every chapter in plain JupyterLab (the environment's, no MyST
extension), rendered in headless Chromium.

For each notebook: every markdown cell is rendered, MathJax (JupyterLab's own, offline) typesets every formula with
no error, and no MyST syntax is left in the text a student reads — no directive fence, no role such as ``{numref}``,
no ``:label:`` option, no target ``(label)=`` — and no unrendered TeX (a ``$`` or a backslash command outside code).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from .conftest import ROOT, SCREENSHOTS, require_browser
from .sitecheck import CHROMIUM, CHROMIUM_ARGS, WINDOW

pytestmark = pytest.mark.slow

# What the student reads, per rendered markdown cell: the text with code, math and MathJax's output removed.
_PAGE_JS = r"""() => {
  const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell')];
  const out = [];
  for (const cell of cells) {
    const md = cell.querySelector('.jp-RenderedMarkdown');
    if (!md || !cell.classList.contains('jp-mod-rendered')) { out.push({rendered: false}); continue; }
    const copy = md.cloneNode(true);
    copy.querySelectorAll('pre, code, mjx-container, .MathJax, script, style').forEach(e => e.remove());
    out.push({rendered: true, text: copy.innerText,
              math: md.querySelectorAll('mjx-container').length,
              errors: md.querySelectorAll('mjx-merror, .MathJax_Error, mjx-container [data-mjx-error]').length});
  }
  return out;
}"""
LEFTOVERS = ("```{", "::::", ":::{", "{numref}", "{ref}", "{doc}", "{prf:", "{eq}", "{cite", "{term}", ":label:",
             ":class:", ":name:", "{solution-", "{exercise", "(sec-", "(fig-")


def _raw_tex(text: str) -> str:
    """The first bit of TeX that MathJax left untypeset in a cell's text (code and typeset math removed), or ''."""
    m = re.search(r"\$|\\[()\[\]]|\\[a-zA-Z]+", text)
    return text[max(0, m.start() - 30):m.end() + 30] if m else ""


def _stop_kernels(port: int) -> None:
    base = f"http://127.0.0.1:{port}/api/sessions"
    for session in json.loads(urllib.request.urlopen(base, timeout=10).read()):
        urllib.request.urlopen(urllib.request.Request(f"{base}/{session['id']}", method="DELETE"), timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _student_notebooks(folder: Path) -> list[Path]:
    from icl_course.exercises.edition import write_student_edition

    return write_student_edition(ROOT / "book", folder)


def _start_lab(root: Path, settings: Path, port: int) -> subprocess.Popen:
    """Plain JupyterLab on 127.0.0.1 with no token, every cell rendered (no windowing: JupyterLab 4 otherwise
    renders only the cells on screen), and kernels that are never started."""
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}), encoding="utf-8")
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTER_NO_CONFIG": "1"}
    lab = Path(sys.executable).parent / "jupyter-lab"
    if not lab.exists():
        pytest.fail("JupyterLab is not installed: install the `book` extra (make setup)")
    proc = subprocess.Popen(
        [str(lab), "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
         "--ServerApp.password=", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--MappingKernelManager.default_kernel_name=none-so-no-kernel-starts", "--allow-root",
         "--LabApp.extension_manager=readonly", "--ServerApp.disable_check_xsrf=True"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                pytest.fail("JupyterLab exited before it served anything")
            time.sleep(0.5)
    proc.kill()
    pytest.fail("JupyterLab did not start within 120 s")


def test_every_student_notebook_reads_well_in_plain_jupyterlab(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    notebooks = _student_notebooks(tmp_path / "student")
    for path in notebooks:  # no kernel: the page must not wait on one, nor ask which to start
        nb = nbformat.read(path, as_version=4)
        nb.metadata.pop("kernelspec", None)
        nbformat.write(nb, path)
    port, shots = _free_port(), SCREENSHOTS / "jupyterlab"
    shots.mkdir(parents=True, exist_ok=True)
    proc = _start_lab(tmp_path / "student", tmp_path / "settings", port)
    problems, formulas, cells = [], 0, 0
    try:
        with sync_playwright() as pw:
            # nothing but 127.0.0.1 resolves: JupyterLab must render offline (routing every request through
            # playwright instead slows JupyterLab's hundreds of chunks down until its MathJax never loads)
            offline = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + offline)
            page = browser.new_page(viewport=WINDOW)
            for path in notebooks:
                expected = sum(c.cell_type == "markdown" for c in nbformat.read(path, as_version=4).cells)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{path.name}?reset", wait_until="domcontentloaded")
                page.keyboard.press("Escape")  # a "select kernel" dialog, if any, is dismissed
                seen: list = []
                last = -1
                deadline = time.time() + 90
                while time.time() < deadline:  # until every cell is rendered and MathJax has stopped typesetting
                    seen = page.evaluate(_PAGE_JS)
                    math = sum(c.get("math", 0) for c in seen)
                    rendered = len(seen) == expected and all(c["rendered"] for c in seen)
                    if (rendered and math == last > 0  # MathJax typesets a moment after the cells render
                            and not any(_raw_tex(c["text"]) for c in seen)):
                        break
                    last = math if rendered else -1
                    page.keyboard.press("Escape")
                    time.sleep(1)
                page.screenshot(path=str(shots / f"{path.stem}.png"))
                _stop_kernels(port)  # JupyterLab starts one per notebook opened; 21 idle kernels are 2 GB
                name = path.stem
                if not sum(c.get("math", 0) for c in seen):
                    problems.append(f"{name}: no formula typeset")
                if len(seen) != expected:
                    problems.append(f"{name}: {len(seen)} of {expected} markdown cells on the page")
                for i, c in enumerate(seen):
                    if not c["rendered"]:
                        problems.append(f"{name}: markdown cell {i} not rendered")
                        continue
                    text = c["text"]
                    problems += [f"{name}: markdown cell {i} shows {bad!r}" for bad in LEFTOVERS if bad in text]
                    if _raw_tex(text):
                        problems.append(f"{name}: markdown cell {i} shows raw TeX: {_raw_tex(text)!r}")
                    if c["errors"]:
                        problems.append(f"{name}: markdown cell {i} has {c['errors']} MathJax errors")
                    formulas += c["math"]
                cells += len(seen)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (shots / "counts.txt").write_text(f"JupyterLab (student notebooks): {len(notebooks)} notebooks, {cells} markdown "
                                      f"cells rendered, {formulas} formulas typeset\n", encoding="utf-8")
    assert problems == []
    assert formulas > 500 and cells > 300
