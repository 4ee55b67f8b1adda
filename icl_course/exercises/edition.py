"""The student edition (solutions replaced by stubs) and the grader of submitted notebooks.

The chapter notebooks follow three rules: (1) the cell that defines an exercise function sits between a
``{solution-start}`` and a ``{solution-end}`` markdown cell; (2) the cell that calls
``check_<name>(fn)`` is a separate cell after the solution block; (3) no later cell uses the function.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import nbformat

from . import REGISTRY, all_exercises

__all__ = ["solution_cells", "student_notebook", "write_student_edition", "check_calls", "grade"]

_START, _END = "{solution-start}", "{solution-end}"
_CHECK = re.compile(r"\bcheck_(\w+)\s*\(")


def _defined_functions(source: str) -> list[str]:
    return [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]


def solution_cells(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """``(cell index, exercise key)`` for every code cell inside a gated solution block."""
    all_exercises()
    by_name = {ex.name: key for key, ex in REGISTRY.items()}
    inside, found = False, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            if _START in cell.source:
                inside = True
            if _END in cell.source:
                inside = False
        elif inside and cell.cell_type == "code":
            names = [n for n in _defined_functions(cell.source) if n in by_name]
            if len(names) != 1:
                raise ValueError(f"solution cell {i} must define exactly one registered exercise function, "
                                 f"found {names or 'none'}")
            found.append((i, by_name[names[0]]))
    if inside:
        raise ValueError("a {solution-start} block is never closed by {solution-end}")
    return found


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy with each solution cell replaced by its stub and every output cleared."""
    out = copy.deepcopy(nb)
    for i, key in solution_cells(out):
        out.cells[i].source = REGISTRY[key].stub_source.rstrip("\n")
        out.cells[i].metadata.setdefault("tags", [])
        if "solution" not in out.cells[i].metadata["tags"]:
            out.cells[i].metadata["tags"].append("solution")
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    out.metadata.pop("widgets", None)
    out.metadata.setdefault("icl_course", {})["edition"] = "student"
    return out


def write_student_edition(book: Path, outdir: Path) -> list[Path]:
    """Write the student edition of every chapter notebook under ``book`` to ``outdir`` (same relative paths).

    Every notebook must belong to a part of :data:`icl_course.parts.PARTS` (``part<N>_`` prefix).
    """
    from ..notebooks import notebook_paths
    from ..parts import part_of_notebook

    written = []
    for path in notebook_paths(book):
        part_of_notebook(path)  # raises for a notebook outside every part
        target = Path(outdir) / path.relative_to(book)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_notebook(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def check_calls(nb: nbformat.NotebookNode) -> dict[int, str]:
    """``cell index -> exercise name`` for every cell that calls a checker."""
    return {i: m.group(1) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (m := _CHECK.search(c.source))}


def grade(path: Path, timeout: int = 900) -> dict[str, str]:
    """Run a submitted notebook in a fresh kernel; each exercise is ``passed``, ``failed`` or ``not attempted``."""
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    report = {}
    for i, name in check_calls(nb).items():
        errors = [o for o in nb.cells[i].outputs if o.output_type == "error"]
        if not errors:
            printed = "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")
            report[name] = "passed" if "passed" in printed else "failed"
        elif errors[0].ename in ("NotAttempted", "NotImplementedError"):
            report[name] = "not attempted"
        else:
            report[name] = "failed"
    return report
