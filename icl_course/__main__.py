"""Command line: ``python -m icl_course COMMAND``, one of reproduce, student, student-book, grade, check, catalogue,
doctor, prepare-lm, reproduce-page."""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path


def _lm_state() -> str:
    from . import lm

    path = lm.checkpoint_dir()
    return str(path) if (path / "config.json").exists() else "not prepared (run `python -m icl_course prepare-lm`)"


def _chromium() -> str:
    import os

    path = os.environ.get("ICL_CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).exists() else f"not found at {path} (the browser check of `make test` will skip)"


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
        "chromium (browser test)": _chromium(),
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


def _grade(args) -> int:
    """``grade``/``check``: exit 0 when every exercise passed, 1 when any did not, 2 when an input is not a
    submission of this course (one line each on stderr, no traceback)."""
    from .exercises.grading import NotASubmission, grade_paths, write_report

    check = args.command == "check"
    out = None if check else args.out
    if out is not None and not out.parent.is_dir():
        print(f"{args.command}: --out {out}: the folder {out.parent} does not exist", file=sys.stderr)
        return 2
    try:
        rows, invalid = grade_paths(args.paths, fast=check or args.fast, timeout=args.timeout,
                                    keep=None if check else args.keep)
    except NotASubmission as e:
        print(f"{args.command}: {e}", file=sys.stderr)
        return 2
    for line in invalid:
        print(f"not a submission: {line}", file=sys.stderr)
    fmt = "text" if check else "json" if args.json else "csv" if args.csv else "text"
    report = write_report(rows, fmt) if rows else ""
    if out is not None:
        out.write_text(report + ("\n" if report and not report.endswith("\n") else ""), encoding="utf-8")
    elif report:
        print(report)
    if invalid:
        return 2
    return 0 if rows and all(r.status == "passed" for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m icl_course")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reproduce", help="measure every registered claim", add_help=False)
    st = sub.add_parser("student", help="write the student edition of every chapter notebook")
    st.add_argument("outdir", type=Path)
    st.add_argument("--book", type=Path, default=Path(__file__).resolve().parent.parent / "book")
    sb = sub.add_parser("student-book", help="write the source of the student edition of the book (make student-book)")
    sb.add_argument("outdir", type=Path)
    sb.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    gr = sub.add_parser("grade", help="grade submitted notebooks (files or folders) against the exercise registry")
    gr.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    form = gr.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON list of rows instead of text")
    form.add_argument("--csv", action="store_true", help="CSV rows (file, chapter, exercise, status, points, ...)")
    gr.add_argument("--out", type=Path, help="write the report to this file instead of printing it")
    gr.add_argument("--keep", type=Path, help="folder for the executed notebooks, each with its report appended")
    gr.add_argument("--fast", action="store_true", help="run only the set-up cell and the solution cells")
    gr.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    ck = sub.add_parser("check", help="check your exercises in a notebook quickly (set-up and solution cells only)")
    ck.add_argument("paths", type=Path, nargs=1, metavar="NOTEBOOK")
    ck.add_argument("--timeout", type=int, default=300)
    sub.add_parser("doctor", help="what this set-up has and lacks")
    sub.add_parser("prepare-lm", help="obtain and convert the real LM (SmolLM2-135M-Instruct) into the course cache")
    cat = sub.add_parser("catalogue", help="regenerate the exercise catalogue of book/instructors.md")
    cat.add_argument("--book", type=Path, default=Path(__file__).resolve().parent.parent / "book")
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
    if args.command in ("student", "student-book"):
        from .exercises.edition import write_student_book, write_student_edition

        try:
            if args.command == "student-book":
                print(write_student_book(args.root, args.outdir))
            else:
                for path in write_student_edition(args.book, args.outdir):
                    print(path)
        except (ValueError, OSError) as e:  # a wrong folder: one line, no traceback
            print(f"{args.command}: {e}", file=sys.stderr)
            return 2
        return 0
    if args.command in ("grade", "check"):
        return _grade(args)
    if args.command == "catalogue":
        from .exercises.grading import write_catalogue

        print(write_catalogue(args.book))
        return 0
    if args.command == "reproduce-page":
        from .reproduce_page import write_page

        print(write_page(args.book))
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
