"""Keep every chapter's Colab set-up cell at the book's version and repository.

The package version lives in ``pyproject.toml`` and the repository URL in ``_config.yml`` (``repository.url``); the
first code cell of each chapter notebook clones that repository at the tag ``v<version>`` when it runs on Colab.
``python scripts/sync_version.py`` rewrites those lines after either changes (``tests/test_version.py`` fails until
then). Only the cell's source changes, so the notebook's stored outputs stay valid.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLONE = re.compile(r"!git clone --quiet --depth 1 --branch \S+ \S+ /content/icl-course")


def project_version() -> str:
    found = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit("pyproject.toml has no version")
    return found[1]


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]


def colab_lines() -> list[str]:
    """The line of the Colab set-up cell that names the version and the repository."""
    return [f"!git clone --quiet --depth 1 --branch v{project_version()} {repository_url()} /content/icl-course"]


def main() -> int:
    (line,) = colab_lines()
    changed = 0
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "code")
        new = CLONE.sub(line, cell.source)
        if new != cell.source:
            cell.source = new
            nbformat.write(nb, path)
            changed += 1
            print(f"updated {path.name}")
    print(f"{changed} notebook(s) updated to v{project_version()} of {repository_url()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
