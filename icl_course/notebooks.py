"""Re-execute the chapter notebooks reproducibly: ``python -m icl_course.notebooks book`` (``make notebooks``).

Each notebook runs from a fresh kernel with progress bars off; widget state is saved so the static book shows
the explorers; the package's code hash, the kernel's CPU time and the wall time go into the notebook metadata
(``metadata.icl_course``), where the staleness guard and the Reproducibility page read them.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import psutil
import torch
from nbclient import NotebookClient

from ._provenance import code_hash
from .parts import part_of_notebook

DEFAULT_BUDGET_S = 120
BOOK_CPU_LIMIT_S = 30 * 60
"""The whole book's kernel CPU time under strict nbval may not pass this (25 min until Part II's real-LM chapters)."""


def notebook_paths(root: Path) -> list[Path]:
    """Every chapter notebook under ``root`` (build output and checkpoints excluded)."""
    skip = ("_build", ".ipynb_checkpoints")
    return sorted(p for p in Path(root).rglob("*.ipynb") if not any(s in p.parts for s in skip))


def kernel_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a kernel process and its children."""
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def execute(path: Path, timeout: int = 600) -> dict:
    """Execute one notebook in place and return what was recorded in its metadata."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    os.environ["ICL_COURSE_PROGRESS"] = "0"
    start = time.perf_counter()
    with client.setup_kernel():
        pid = client.km.provisioner.pid
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        cpu = kernel_cpu_seconds(pid)
        client.set_widgets_metadata()
    wall = time.perf_counter() - start
    meta = nb.metadata.setdefault("icl_course", {})
    meta.setdefault("budget_seconds", DEFAULT_BUDGET_S)
    meta.update({"code_hash": code_hash(part_of_notebook(path).name), "cpu_seconds": round(cpu, 1),
                 "wall_seconds": round(wall, 1),
                 "torch": torch.__version__.split("+")[0], "threads": 1})
    nbformat.write(nb, path)
    return meta


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [q for a in (args or ["book"]) for q in (notebook_paths(Path(a)) if Path(a).is_dir() else [Path(a)])]
    for path in paths:
        meta = execute(path)
        print(f"{path}: {meta['cpu_seconds']} s CPU, {meta['wall_seconds']} s wall "
              f"(budget {meta['budget_seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
