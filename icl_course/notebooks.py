"""Re-execute the chapter notebooks reproducibly: ``python -m icl_course.notebooks book`` (``make notebooks``).

Each notebook runs from a fresh kernel with progress bars off; widget state is saved so the static book shows
the explorers; the package's code hash, the kernel's CPU time and the wall time go into the notebook metadata
(``metadata.icl_course``), where the staleness guard and the Reproducibility page read them.
"""

from __future__ import annotations

import datetime
import json
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
BOOK_CPU_LIMIT_S = 35 * 60
"""The whole book's kernel CPU time under strict nbval may not pass this, in reference seconds (see
:func:`reference_seconds`): 25 min until Part II's real-LM chapters, 30 until Part I's (three chapters, one of them
running the real LM), 35 since."""
REFERENCE_FILE = Path(__file__).resolve().parent / "data" / "cpu_reference.json"
MAX_SLOWDOWN = 4.0
"""A machine measured slower than this, relative to the reference, is refused rather than excused."""


def calibration_seconds(repeats: int = 3, steps: int = 150) -> float:
    """CPU time of a fixed workload shaped like the course's training loops: the fastest of ``repeats`` runs.

    Plain PyTorch on one thread, independent of the package's code (a faster ``train.fit`` must not move the
    yardstick): a one-block softmax transformer on a (32, 16, 32) batch, forward, backward and an Adam step,
    ``steps`` times. The course's notebooks are dominated by exactly such small-tensor operator calls, whose cost
    varies between 2-core machines far more than large matrix products do.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(32, 16, 32, generator=gen)  # (B, T, d)
        block = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        opt = torch.optim.Adam(block.parameters(), lr=1e-3)
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(steps):
                opt.zero_grad()
                block(x).square().mean().backward()
                opt.step()
            best = min(best, time.process_time() - start)
        return best
    finally:
        torch.set_num_threads(threads)


def reference_calibration_seconds() -> float:
    """The calibration workload's CPU time on the reference machine, the one the notebooks' budgets are declared for
    (``icl_course/data/cpu_reference.json``, which says how it was measured)."""
    return float(json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))["calibration_seconds"])


def slowdown(calibration: float) -> float:
    """How much slower than the reference a machine is whose calibration workload took ``calibration`` seconds.

    Raises when it is more than :data:`MAX_SLOWDOWN`: a budget is not stretched without limit to fit any machine.
    """
    if not calibration > 0:
        raise ValueError(f"calibration must be a positive number of seconds, got {calibration!r}")
    factor = calibration / reference_calibration_seconds()
    if factor > MAX_SLOWDOWN:
        raise RuntimeError(f"this machine runs the calibration workload {factor:.2f}× slower than the reference "
                           f"(more than {MAX_SLOWDOWN}×): the notebooks' CPU budgets cannot be judged here")
    return factor


def machine_calibration(samples) -> float:
    """The machine's calibration time from the samples taken over one run: their median.

    Two samples are taken per notebook, before and after it; on a shared 2-core machine they have ranged over a
    factor of two within one run, so one notebook's own samples are too noisy a yardstick for that notebook, while
    the median over a run follows the machine.
    """
    values = sorted(float(v) for v in samples)
    if not values:
        raise ValueError("samples must hold at least one calibration time")
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


RUN_GAP_S = 1800
"""Two notebooks belong to the same run of the executor when one started within this many seconds of the end of
another of the run (`make notebooks` runs them back to back, on one or two streams)."""


def execution_window(nb) -> tuple[datetime.datetime, datetime.datetime] | None:
    """When a notebook was last executed: its first cell's start and its last cell's end, from the cells'
    ``execution`` timestamps (``None`` when it has none)."""
    stamps = [c.get("metadata", {}).get("execution", {}) for c in nb.get("cells", [])]
    starts = [s["iopub.execute_input"] for s in stamps if "iopub.execute_input" in s]
    ends = [s["shell.execute_reply"] for s in stamps if "shell.execute_reply" in s]
    if not starts or not ends:
        return None
    parse = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return min(map(parse, starts)), max(map(parse, ends))


def run_calibrations(notebooks: dict) -> dict:
    """The machine's calibration for each notebook: the median of the samples of every notebook executed in the
    same run (:data:`RUN_GAP_S`), the yardstick the live budget check uses too (the median of its own run).

    ``notebooks`` maps a key to ``(calibration_samples, execution_window or None)``. The committed notebooks come
    from several runs — a part's notebooks are re-executed when its code changes — on machines that were not equally
    fast; the median over all of them would judge one run's CPU time by another run's machine. Notebooks without a
    window share the median of all samples.
    """
    timed = sorted(((w, k) for k, (_, w) in notebooks.items() if w is not None), key=lambda t: t[0][0])
    runs: list[list] = []
    end = None
    for (start, stop), key in timed:
        if runs and start <= end + datetime.timedelta(seconds=RUN_GAP_S):
            runs[-1].append(key)
            end = max(end, stop)
        else:
            runs.append([key])
            end = stop
    every = [v for samples, _ in notebooks.values() for v in samples]
    out = {k: machine_calibration(every) for k in notebooks if every}
    for run in runs:
        samples = [v for k in run for v in notebooks[k][0]]
        if samples:
            out.update({k: machine_calibration(samples) for k in run})
    return out


def reference_seconds(cpu_seconds: float, calibration: float) -> float:
    """Kernel CPU time converted to the reference machine: ``cpu_seconds / slowdown(calibration)``.

    A budget is declared in these seconds, so the same notebook passes or fails its budget whichever 2-core machine
    runs it; a notebook that grows against the yardstick still fails.
    """
    return cpu_seconds / slowdown(calibration)


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
    before = calibration_seconds()  # before the kernel starts and after the last cell, as the nbval budget check does
    start = time.perf_counter()
    with client.setup_kernel():
        pid = client.km.provisioner.pid
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        cpu = kernel_cpu_seconds(pid)
        client.set_widgets_metadata()
    wall = time.perf_counter() - start
    after = calibration_seconds()
    meta = nb.metadata.setdefault("icl_course", {})
    meta.setdefault("budget_seconds", DEFAULT_BUDGET_S)
    meta.pop("calibration_seconds", None)  # one sample, as recorded before the samples came in pairs
    meta.update({"code_hash": code_hash(part_of_notebook(path).name), "cpu_seconds": round(cpu, 1),
                 "wall_seconds": round(wall, 1), "calibration_samples": [round(before, 3), round(after, 3)],
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
