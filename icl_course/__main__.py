"""Command line: ``python -m icl_course {reproduce,student,grade,doctor,prepare-lm,reproduce-page} …``."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path


def _lm_state() -> str:
    from . import lm

    path = lm.checkpoint_dir()
    return str(path) if (path / "config.json").exists() else "not prepared (run `python -m icl_course prepare-lm`)"


def _doctor() -> int:
    import torch

    from . import __version__, runtime

    rows = {
        "icl_course": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
        "CUDA available": torch.cuda.is_available(),
        "cache folder": str(runtime.cache_dir()),
        "real LM (prepare-lm)": _lm_state(),
        "chromium (browser test)": shutil.which("chromium") or "not found",
    }
    for mod in ("jupyter_book", "nbval", "ipywidgets", "matplotlib", "transformers"):
        try:
            rows[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - report, don't crash
            rows[mod] = "not installed"
    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"{k.ljust(width)}  {v}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m icl_course")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reproduce", help="measure every registered claim", add_help=False)
    st = sub.add_parser("student", help="write the student edition of every chapter notebook")
    st.add_argument("outdir", type=Path)
    st.add_argument("--book", type=Path, default=Path(__file__).resolve().parent.parent / "book")
    gr = sub.add_parser("grade", help="run a submitted notebook and report each exercise")
    gr.add_argument("notebook", type=Path)
    gr.add_argument("--json", action="store_true")
    gr.add_argument("--timeout", type=int, default=900)
    sub.add_parser("doctor", help="what this set-up has and lacks")
    sub.add_parser("prepare-lm", help="obtain and convert the real LM (SmolLM2-135M-Instruct) into the course cache")
    pg = sub.add_parser("reproduce-page", help="regenerate book/reproducibility.md from the registry")
    pg.add_argument("--book", type=Path, default=Path(__file__).resolve().parent.parent / "book")
    if argv and argv[0] == "reproduce":
        from .reproduce import main as reproduce_main

        return reproduce_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "prepare-lm":
        from . import lm

        print(f"real LM ready: {lm.prepare()}")
        return 0
    if args.command == "doctor":
        return _doctor()
    if args.command == "student":
        from .exercises.edition import write_student_edition

        for path in write_student_edition(args.book, args.outdir):
            print(path)
        return 0
    if args.command == "grade":
        from .exercises.edition import grade

        report = grade(args.notebook, timeout=args.timeout)
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            for name, status in report.items():
                print(f"{name}: {status}")
        return 1 if any(s == "failed" for s in report.values()) else 0
    if args.command == "reproduce-page":
        from .reproduce_page import write_page

        print(write_page(args.book))
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
