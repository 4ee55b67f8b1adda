"""Derive the calibration workload's CPU time on the reference machine (``icl_course/data/cpu_reference.json``).

The notebooks' budgets were declared from kernel CPU times recorded on one 2-core machine, before the calibration
workload existed. Every notebook whose work does not depend on the machine (a fixed number of training steps, not
"train until the plateau breaks") was executed there (metadata at commit ``BASE``) and again here with the
workload timed after it (the committed metadata). The workload would have taken

    reference = (median calibration sample here, two per notebook) × Σ CPU there / Σ CPU here

on that machine. Run from the repository root: ``python scripts/cpu_reference.py [BASE]``; it prints the
per-notebook ratios and the JSON to commit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from icl_course.notebooks import machine_calibration, notebook_paths

BASE = "ac974bd"
"""The last commit whose notebooks were all executed on the machine the budgets were declared on."""
VARIABLE_WORK = {"part2_toy_finetuning", "part2_momentum"}
"""Notebooks that train until a plateau breaks: their work depends on the machine's rounding, not only its speed."""


def _meta_at(commit: str, path: Path) -> dict | None:
    shown = subprocess.run(["git", "show", f"{commit}:{path.as_posix()}"], capture_output=True, text=True)
    return json.loads(shown.stdout)["metadata"].get("icl_course") if shown.returncode == 0 else None


def main(base: str) -> dict:
    paths = notebook_paths(Path("book"))
    here = {p: json.loads(p.read_text(encoding="utf-8"))["metadata"]["icl_course"] for p in paths}
    calibration = machine_calibration(v for m in here.values() for v in m["calibration_samples"])
    then_total = here_total = 0.0
    for path, meta in here.items():
        old = _meta_at(base, path)
        if old is None or path.stem in VARIABLE_WORK:
            continue
        then_total += old["cpu_seconds"]
        here_total += meta["cpu_seconds"]
        print(f"{path.stem:32s} {old['cpu_seconds']:7.1f} s there  {meta['cpu_seconds']:7.1f} s here  "
              f"ratio {meta['cpu_seconds'] / old['cpu_seconds']:.2f}  samples {meta['calibration_samples']} s")
    reference = calibration * then_total / here_total
    print(f"total {then_total:.1f} s there, {here_total:.1f} s here (×{here_total / then_total:.2f}); "
          f"median calibration here {calibration:.3f} s → reference {reference:.3f} s")
    return {"calibration_seconds": round(reference, 3),
            "how": (f"Derived by scripts/cpu_reference.py: the notebooks' kernel CPU time where the budgets were "
                    f"declared (metadata at commit {base}; the fixed-work notebooks sum to {then_total:.1f} s) "
                    f"against the same notebooks re-executed on a slower 2-core CI machine ({here_total:.1f} s), "
                    f"where the calibration workload took {calibration:.3f} s (median of the samples taken before and "
                    f"after "
                    f"each notebook): "
                    f"reference = {calibration:.3f} × {then_total:.1f} / {here_total:.1f}.")}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else BASE), indent=1, ensure_ascii=False))
