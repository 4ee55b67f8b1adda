"""Generates the tables of ``book/reproducibility.md`` from the claim registry and the notebooks' metadata.

``python -m icl_course reproduce-page`` rewrites everything after the marker line; a test fails when the
committed page is out of date.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from .notebooks import (
    BOOK_CPU_LIMIT_S,
    execution_window,
    machine_calibration,
    notebook_paths,
    reference_calibration_seconds,
    reference_seconds,
    run_calibrations,
)
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
    books = {path: nbformat.read(path, as_version=4) for path in notebook_paths(book)}
    metas = [(path, nb.metadata.get("icl_course", {})) for path, nb in books.items()]
    runs = run_calibrations({path: (meta.get("calibration_samples", []), execution_window(books[path]))
                             for path, meta in metas})
    samples = [v for _, m in metas for v in m.get("calibration_samples", [])]
    calibration = machine_calibration(samples) if samples else None
    lines += ["", "## Chapter runtimes", "",
              "Kernel CPU time of each notebook, executed from a fresh kernel with one PyTorch thread "
              "(`make notebooks`), and the same time on the reference machine the budgets are declared for: the "
              "CPU time divided by how much slower than there a fixed calibration workload ran on the machine "
              "(`icl_course.notebooks.reference_seconds`; the workload is timed before and after each notebook, and "
              "the median over the run that executed it is the machine's: `icl_course.notebooks.run_calibrations`). "
              "Strict nbval fails a notebook above 1.5 × its budget in reference seconds.", "",
              "| notebook | kernel CPU (s) | calibration before / after (s) | reference CPU (s) | wall (s) "
              "| budget (s) | torch |",
              "|---|---|---|---|---|---|---|"]
    total = 0.0
    for path, meta in metas:
        cpu = meta.get("cpu_seconds")
        ref = reference_seconds(cpu, runs[path]) if cpu is not None and path in runs else None
        total += ref or 0.0
        lines.append(f"| {{doc}}`{path.stem}` | {cpu if cpu is not None else '–'} | "
                     f"{' / '.join(str(v) for v in meta.get('calibration_samples', [])) or '–'} | "
                     f"{'–' if ref is None else f'{ref:.1f}'} | "
                     f"{meta.get('wall_seconds', '–')} | {meta.get('budget_seconds', '–')} | "
                     f"{meta.get('torch', '–')} |")
    machine = "–" if calibration is None else f"{calibration:.3f} s"
    lines += ["", f"Whole book: {total:.1f} s of kernel CPU time on the reference machine (limit "
              f"{BOOK_CPU_LIMIT_S // 60} min). The calibration workload took {machine} (median of all the notebooks' "
              f"samples; {len(set(runs.values()))} runs) on the machines that executed the notebooks and takes "
              f"{reference_calibration_seconds():.3f} s on the reference machine.",
              ""]
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
