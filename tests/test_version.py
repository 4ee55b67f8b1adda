"""One version everywhere: ``pyproject.toml`` holds the package version and ``_config.yml`` the repository URL; the
package, the citation, the book's footer (tests/browser), ``doctor``, ``reproduce --json`` (test_reproduce) and every
chapter's Colab set-up cell agree with them. ``scripts/sync_version.py`` rewrites the Colab cells after a change."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import icl_course

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from sync_version import colab_lines, project_version, repository_url  # noqa: E402


def test_the_package_reports_pyproject_version():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+: an independent reading of pyproject.toml
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert icl_course.__version__ == project_version() == version
    assert icl_course._checkout_version() == version  # what a checkout that is not installed reports


def test_citation_names_the_same_version():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert str(citation["version"]) == project_version()


def test_repository_url_is_set_once():
    url = repository_url()
    assert url.startswith("https://github.com/")
    config = (ROOT / "_config.yml").read_text(encoding="utf-8")
    assert config.count(url) == 1, "the repository URL must appear once in _config.yml"


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda p: p.name)
def test_colab_cell_installs_the_book_version(path):
    first = next(c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    for line in colab_lines():
        assert line in source, (f"{path.name}: the Colab set-up cell lacks {line!r} "
                                "(run `python scripts/sync_version.py`)")
    tags = set(re.findall(r"--branch (\S+)", source))
    assert tags == {f"v{project_version()}"}, tags


def test_doctor_prints_the_version():
    out = subprocess.run([sys.executable, "-m", "icl_course", "doctor"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert re.search(rf"^icl_course\s+{re.escape(project_version())}$", out.stdout, re.M), out.stdout
