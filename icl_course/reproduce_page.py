"""Generates the tables of ``book/reproducibility.md`` from the claim registry and the notebooks' metadata.

``python -m icl_course reproduce-page`` rewrites everything after the marker line; a test fails when the
committed page is out of date.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from .notebooks import BOOK_CPU_LIMIT_S, notebook_paths
from .reproduce import REGISTRY, _load_claims

MARKER = "<!-- GENERATED TABLE BELOW: do not edit by hand -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def generated_section(book: Path) -> str:
    """The markdown that follows the marker."""
    _load_claims()
    lines = ["", "## Registered claims", "",
             "| id | chapter | claim | reference | tolerance | status if missed |", "|---|---|---|---|---|---|"]
    for c in REGISTRY.values():
        gap = "exact identity: never a gap" if c.exact else (
            f"KNOWN_GAP ≤ {c.gap.value:.4g}: {c.gap.reason}" if c.gap else "FAIL")
        lines.append("| " + " | ".join(_cell(v) for v in (c.id, c.chapter, c.claim, c.reference, c.tolerance, gap))
                     + " |")
    lines += ["", "## Chapter runtimes", "",
              "Kernel CPU time of each notebook, executed from a fresh kernel with one PyTorch thread "
              "(`make notebooks`); strict nbval fails a notebook above 1.5 × its budget.", "",
              "| notebook | kernel CPU (s) | wall (s) | budget (s) | torch |", "|---|---|---|---|---|"]
    total = 0.0
    for path in notebook_paths(book):
        meta = nbformat.read(path, as_version=4).metadata.get("icl_course", {})
        total += meta.get("cpu_seconds", 0.0)
        lines.append(f"| {{doc}}`{path.stem}` | {meta.get('cpu_seconds', '–')} | {meta.get('wall_seconds', '–')} | "
                     f"{meta.get('budget_seconds', '–')} | {meta.get('torch', '–')} |")
    lines += ["", f"Whole book: {total:.1f} s of kernel CPU time (limit {BOOK_CPU_LIMIT_S // 60} min).", ""]
    return "\n".join(lines)


def render(book: Path) -> str:
    """The full page: the hand-written part up to the marker, then the generated section."""
    text = (Path(book) / "reproducibility.md").read_text(encoding="utf-8")
    if MARKER not in text:
        raise ValueError(f"{book}/reproducibility.md has no marker line {MARKER!r}")
    return text.split(MARKER)[0] + MARKER + "\n" + generated_section(book)


def write_page(book: Path) -> Path:
    """Regenerate the page in place and return its path."""
    path = Path(book) / "reproducibility.md"
    path.write_text(render(book), encoding="utf-8")
    return path
