"""The grader of submitted notebooks: ``python -m icl_course grade`` and ``python -m icl_course check``.

A submission is a chapter notebook (the student edition, partly or wholly solved). The grader finds the chapter from
the notebook (its metadata, else the exercise functions its solution cells define, else its file name), runs the
notebook in a fresh kernel — every cell, or with ``fast=True`` only the set-up cell and the solution cells — and
then runs the *registry's* checker of every exercise of that chapter on the function of that name, in the same
kernel. What the student's own checker cells print is ignored: deleting a checker cell or editing it to print
"passed" changes nothing. Each exercise is ``passed``, ``failed`` (with the checker's hint), ``not attempted`` (the
stub is still there) or ``missing`` (the notebook defines no function of that name); a function that is not defined
in the notebook (say, the course's reference solution imported from a checkout's ``solutions/``) fails, and so does
every exercise of a notebook that reaches into the exercise registry (where a held-back exercise's solution lives).

Grading runs the student's code with the grader's rights: run it in a container or as a separate user with no
access to anything else (the instructors page says how).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

from . import REGISTRY, SOLUTIONS_ENV, all_exercises

__all__ = ["NotASubmission", "GradeRow", "chapter_exercises", "find_chapter", "grade_notebook", "grade_paths",
           "write_report", "STATUSES"]

STATUSES = ("passed", "failed", "not attempted", "missing")
_START, _END = "{solution-start}", "{solution-end}"
_MARK = "<<icl-course-grades>>"


class NotASubmission(ValueError):
    """The input is not a notebook of this course (the message is one line, naming the file)."""


@dataclass(frozen=True)
class GradeRow:
    """One exercise of one submission (a row of the CSV/JSON report)."""

    file: str
    chapter: str
    exercise: str
    status: str
    points: int
    max_points: int
    hint: str


def _chapter_of(key: str) -> str:
    """The chapter notebook (``part3_one_layer_one_step``) an exercise belongs to."""
    return REGISTRY[key].chapter


def chapter_exercises(chapter: str) -> list[str]:
    """Registry keys of a chapter's exercises, in registration order (the chapter's order)."""
    all_exercises()
    return [key for key in REGISTRY if _chapter_of(key) == chapter]


def _points(key: str) -> int:
    return max(1, REGISTRY[key].difficulty.count("★"))


def _read(path: Path) -> nbformat.NotebookNode:
    if not path.exists():
        raise NotASubmission(f"{path}: no such file")
    if path.is_dir():
        raise NotASubmission(f"{path}: a folder, not a notebook")
    if path.suffix != ".ipynb":
        raise NotASubmission(f"{path}: not a notebook (a submission is an .ipynb file)")
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list) or not isinstance(nb.get("metadata"), dict):
            raise ValueError("no list of cells")
        for cell in nb.cells:
            if isinstance(cell.get("source"), list):  # nbformat joins these; a hand-made file may not have
                cell.source = "".join(map(str, cell.source))
            if cell.get("cell_type") not in ("code", "markdown", "raw") or not isinstance(cell.get("source"), str):
                raise ValueError("a cell without a type or a text source")
        return nb
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same answer: not a submission
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NotASubmission(f"{path}: not a readable notebook ({reason[:120]})") from None


def _solution_sources(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of the code cells inside gated solution blocks."""
    inside, found = False, []
    for i, cell in enumerate(nb.cells):
        if not isinstance(cell.get("source"), str):
            continue
        if cell.cell_type == "markdown":
            inside = (inside or _START in cell.source) and _END not in cell.source
        elif inside and cell.cell_type == "code":
            found.append(i)
    return found


def _defined(source: str) -> list[str]:
    try:
        return [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    except SyntaxError:
        return []


def find_chapter(nb: nbformat.NotebookNode, path: Path) -> str:
    """The chapter a submission belongs to: metadata ``icl_course.chapter``, else the chapter of the exercise
    functions its solution cells define, else its file name. Raises :class:`NotASubmission` otherwise."""
    all_exercises()
    chapters = {_chapter_of(key) for key in REGISTRY}
    course = nb.metadata.get("icl_course")
    meta = course.get("chapter") if isinstance(course, dict) else None
    if isinstance(meta, str) and meta in chapters:
        return meta
    by_name = {ex.name: key for key, ex in REGISTRY.items()}
    found = {_chapter_of(by_name[n]) for i in _solution_sources(nb) for n in _defined(nb.cells[i].source)
             if n in by_name}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        raise NotASubmission(f"{path}: mixes exercises of several chapters ({', '.join(sorted(found))})")
    if path.stem in chapters:
        return path.stem
    raise NotASubmission(f"{path}: not a notebook of this course (no exercise of icl-course found)")


_CHECKS = """
import contextlib, io, json
from icl_course.exercises import REGISTRY, ExerciseFailed, NotAttempted, all_exercises
all_exercises()
out = {}
for key in KEYS:
    ex = REGISTRY[key]
    fn = NOTEBOOK.get(ex.name)
    if fn is None:
        out[key] = ["missing", "the notebook defines no function " + ex.name]
        continue
    if not callable(fn) or getattr(fn, "__module__", None) != "__main__":
        out[key] = ["failed", ex.name + " is not a function defined in this notebook"]
        continue
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ex.check(fn)
        out[key] = ["passed", ""]
    except NotAttempted as e:
        out[key] = ["not attempted", str(e)]
    except ExerciseFailed as e:
        out[key] = ["failed", str(e)]
    except BaseException as e:
        out[key] = ["failed", type(e).__name__ + ": " + str(e)]
builtins.print(MARK + json.dumps(out))
"""


def _grader_code(keys: list[str]) -> str:
    """What the grader runs in the kernel after the student's cells: the registry's checks, in a namespace of their
    own with the real builtins (a notebook that redefines ``print``, ``str`` or ``type`` changes nothing), on the
    functions the notebook defines; results as one JSON line."""
    return (f"import builtins as _grader_builtins\n"
            f"_grader_builtins.exec({_CHECKS!r}, {{'__builtins__': _grader_builtins, 'builtins': _grader_builtins, "
            f"'KEYS': {keys!r}, 'MARK': {_MARK!r}, 'NOTEBOOK': _grader_builtins.globals()}})\n")


def _only_definitions(source: str) -> bool:
    """A cell that only imports or defines functions and classes (a student's helper): fast mode runs it too."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))
                              for n in body)


_REACHING = ("REGISTRY", "all_exercises", "_icl_course_", "ICL_COURSE_", "solutions_folders", "given_solution",
             "SolutionUnavailable", "importlib", "__import__", "getsource")
"""Words no cell of a submission needs: reaching into the exercise registry (where a held-back exercise's solution
lives) or into the solutions. A notebook with any of them in any code cell fails every exercise, with the reason."""


def _run(nb: nbformat.NotebookNode, path: Path, timeout: int) -> str:
    """Execute ``nb`` in a fresh kernel; '' or why it could not run to the end (a timeout, a dead kernel)."""
    from nbclient import NotebookClient

    hidden = os.environ.pop(SOLUTIONS_ENV, None)  # the checks need no solution: the kernel is not told where they are
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
                       extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no transport warning on the terminal
                       resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
    except Exception as e:  # noqa: BLE001 - a submission that kills its kernel fails; the batch goes on
        return f"the notebook could not be run to the end ({type(e).__name__}: {str(e).strip()[:200]})"
    finally:
        if hidden is not None:
            os.environ[SOLUTIONS_ENV] = hidden
    return ""


def _reaching(nb: nbformat.NotebookNode) -> tuple[int, str] | None:
    """The first code cell (and word) of a submission that reaches into the registry or the solutions."""
    return next(((i, w) for i, c in enumerate(nb.cells) if c.cell_type == "code" for w in _REACHING
                 if w in c.source), None)


def _results(nb: nbformat.NotebookNode, keys: list[str], solutions: list[int], crashed: str,
             reaching: tuple[int, str] | None = None) -> dict:
    """Each key's ``[status, message]`` from the grader cell's output, with the reasons a notebook gives itself."""
    printed = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.output_type == "stream")
    if _MARK not in printed:
        error = crashed or next((f"{o.ename}: {o.evalue}" for o in nb.cells[-1].get("outputs", [])
                                 if o.output_type == "error"), "no result")
        return {k: ["failed", f"the grader could not run its checks ({error})"] for k in keys}
    results = json.loads(printed.split(_MARK, 1)[1].strip().splitlines()[0])
    if reaching is not None:
        return {k: ["failed", f"the notebook reaches into the course's exercise registry or its solutions "
                              f"({reaching[1]!r} in cell {reaching[0]})"] for k in keys}
    for k in keys:
        name = REGISTRY[k].name
        mine = [nb.cells[i] for i in solutions if re.search(rf"\bdef\s+{name}\b|\b{name}\s*=", nb.cells[i].source)]
        if results[k][0] == "missing" and (errors := [f"{o.ename}: {o.evalue}" for c in mine
                                                        for o in c.get("outputs", []) if o.output_type == "error"]):
            results[k] = ["failed", f"the solution cell of {name} raised {errors[0]}"]
    return results


def grade_notebook(path: Path, *, fast: bool = False, timeout: int = 900, keep: Path | None = None,
                   name: str | None = None) -> list[GradeRow]:
    """Grade one submission; every exercise of its chapter gets a row. ``name`` is what the report calls the file
    (default: its file name); ``keep``: a folder for the executed notebook, at ``keep/name``, with the report
    appended (feedback for the student)."""
    path = Path(path)
    name = name or path.name
    nb = _read(path)
    chapter = find_chapter(nb, path)
    keys = chapter_exercises(chapter)
    reaching = _reaching(nb)  # before --fast drops any cell
    if fast:
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        run = set(code[:1]) | set(_solution_sources(nb)) | {i for i in code if _only_definitions(nb.cells[i].source)}
        nb.cells = [c for i, c in enumerate(nb.cells) if c.cell_type != "code" or i in run]
    solutions = _solution_sources(nb)
    nb.cells.append(nbformat.v4.new_code_cell(_grader_code(keys), metadata={"tags": ["grader"]}))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    results = _results(nb, keys, solutions, _run(nb, path, timeout), reaching)
    rows = [GradeRow(name, chapter, REGISTRY[k].name, results[k][0],
                     _points(k) if results[k][0] == "passed" else 0, _points(k), _hint(*results[k]))
            for k in keys]
    if keep is not None:
        nb.cells.pop()
        nb.cells.append(nbformat.v4.new_markdown_cell(_feedback(rows)))
        target = Path(keep) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
    return rows


def _hint(status: str, message: str) -> str:
    """What a report says beside a status: the checker's message for a failure, never a stub's hint (it would give
    the answer away to a student who has not tried)."""
    if status == "not attempted":
        return "the stub is still in place (it raises NotImplementedError)"
    return message.strip()


def _feedback(rows: list[GradeRow]) -> str:
    got, total = sum(r.points for r in rows), sum(r.max_points for r in rows)
    lines = [f"## Grader's report: {got}/{total} points", "", "| exercise | status | points | hint |",
             "|---|---|---|---|"]
    for r in rows:
        hint = r.hint.replace("\n", " ").replace("|", "\\|")
        lines.append(f"| `{r.exercise}` | {r.status} | {r.points}/{r.max_points} | {hint} |")
    return "\n".join(lines)


def grade_paths(paths: list[Path], *, fast: bool = False, timeout: int = 900,
                keep: Path | None = None) -> tuple[list[GradeRow], list[str]]:
    """Grade several submissions (folders are searched for ``*.ipynb``); returns the rows and one line per input
    that is not a submission. A file found in a folder is named by its path inside that folder (two students'
    ``part2_dual_form.ipynb`` in ``alice/`` and ``bob/`` stay apart), and ``keep`` mirrors those paths."""
    files: list[tuple[Path, str]] = []
    invalid: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
            if not found:
                invalid.append(f"{p}: a folder with no notebook in it")
            files += [(q, q.relative_to(p).as_posix()) for q in found]
        else:
            files.append((p, p.name))
    if keep is not None:
        inside = [p for p in map(Path, paths) if p.is_dir() and Path(keep).resolve().is_relative_to(p.resolve())]
        if inside:
            raise NotASubmission(f"--keep {keep} lies inside the submissions folder {inside[0]}: choose another")
    rows: list[GradeRow] = []
    for f, name in files:
        try:
            rows += grade_notebook(f, fast=fast, timeout=timeout, keep=keep, name=name)
        except NotASubmission as e:
            invalid.append(str(e))
    return rows, invalid


def write_report(rows: list[GradeRow], fmt: str) -> str:
    """The rows as ``csv``, ``json`` or ``text`` (one line per exercise, the hint's first line, then the total)."""
    if fmt == "json":
        return json.dumps([asdict(r) for r in rows], indent=1, ensure_ascii=False)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(GradeRow.__dataclass_fields__), lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
        return out.getvalue()
    if fmt != "text":
        raise ValueError(f"fmt must be 'csv', 'json' or 'text', got {fmt!r}")
    lines, width = [], max((len(r.exercise) for r in rows), default=0)
    for file in dict.fromkeys(r.file for r in rows):
        mine = [r for r in rows if r.file == file]
        lines.append(f"{file} ({mine[0].chapter}): {sum(r.points for r in mine)}/{sum(r.max_points for r in mine)}"
                     " points")
        for r in mine:
            hint = r.hint.strip().splitlines()[0] if r.hint.strip() and r.status != "passed" else ""
            lines.append(f"  {r.exercise.ljust(width)}  {r.status:<13}  {r.points}/{r.max_points}"
                         + (f"  — {hint}" if hint else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- exercise catalogue
CATALOGUE_START = "<!-- exercise catalogue: generated by `python -m icl_course catalogue`; do not edit by hand -->"
CATALOGUE_END = "<!-- end of the exercise catalogue -->"
_EXERCISE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{exercise\}[ \t]*(?P<title>.*)$", re.M)
_LABELLED = re.compile(r"^([★☆]{3})\s*·\s*(\d+)\s*min\.?\s*", re.M)


def exercise_catalogue(book: Path) -> list[dict]:
    """Every exercise of every chapter notebook under ``book``, in the book's order (``_toc.yml``): chapter, label,
    title, the registry's function, difficulty, minutes and points, the difficulty and minutes the statement shows,
    and the statement's first sentence."""
    from ..notebooks import notebook_paths

    all_exercises()
    toc = re.findall(r"^\s*-\s*file:\s*(\S+)", (Path(book) / "_toc.yml").read_text(encoding="utf-8"), re.M)
    paths = sorted(notebook_paths(Path(book)), key=lambda p: (toc.index(p.stem) if p.stem in toc else len(toc),
                                                              p.stem))
    rows = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        statements = {}
        for cell in (c for c in nb.cells if c.cell_type == "markdown"):
            for m in _EXERCISE.finditer(cell.source):
                end = re.compile(rf"^{re.escape(m['fence'])}[ \t]*$", re.M).search(cell.source, m.end())
                body = cell.source[m.end():end.start() if end else None]
                label = re.search(r"^:label:\s*(\S+)", body, re.M)
                statements[label[1] if label else ""] = (m["title"].strip(), re.sub(r"^:[\w-]+:.*\n?", "", body,
                                                                                     flags=re.M).strip())
        by_name = {ex.name: key for key, ex in REGISTRY.items()}
        label = None
        for cell in nb.cells:
            if cell.cell_type == "markdown" and (m := re.search(r"\{solution-start\}\s*(\S+)", cell.source)):
                label = m[1]
            elif cell.cell_type == "code" and label is not None:
                key = next(by_name[n] for n in _defined(cell.source) if n in by_name)
                title, body = statements.get(label, ("", ""))
                shown = _LABELLED.match(body)
                text = " ".join(_LABELLED.sub("", body, count=1).split())
                first = re.split(r"(?<=[.?!])\s+(?=[A-Z`$])", text, maxsplit=1)[0]
                ex = REGISTRY[key]
                rows.append({"chapter": path.stem, "label": label, "title": title, "name": ex.name,
                             "difficulty": ex.difficulty, "minutes": ex.minutes, "points": _points(key),
                             "shown": (shown[1], int(shown[2])) if shown else None, "asks": first})
                label = None
    return rows


def catalogue_markdown(book: Path) -> str:
    """The instructors page's generated section: a table per chapter, one row per exercise."""
    from ..notebooks import notebook_paths

    rows = exercise_catalogue(book)
    budgets = {p.stem: nbformat.read(p, as_version=4).metadata.get("icl_course", {}).get("budget_seconds")
               for p in notebook_paths(Path(book))}
    out = [CATALOGUE_START, "", "| Chapter | Exercises | Points | Sum of time estimates | CPU budget |",
           "|---|---|---|---|---|"]
    chapters = list(dict.fromkeys(r["chapter"] for r in rows))
    for ch in chapters:
        mine = [r for r in rows if r["chapter"] == ch]
        out.append(f"| {{doc}}`{ch}` | {len(mine)} | {sum(r['points'] for r in mine)} | "
                   f"{sum(r['minutes'] for r in mine)} min | {budgets.get(ch)} s |")
    for ch in chapters:
        out += ["", f"**{{doc}}`{ch}`**", "", "| Exercise | Function (`check_<name>`) | Difficulty | Time | Points | "
                "It asks |", "|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["chapter"] == ch):
            asks = r["asks"].replace("|", "\\|")
            out.append(f"| {{ref}}`{r['title']} <{r['label']}>` | `{r['name']}` | {r['difficulty']} | "
                       f"{r['minutes']} min | {r['points']} | {asks} |")
    return "\n".join(out + ["", CATALOGUE_END])


def write_catalogue(book: Path) -> Path:
    """Replace the generated section of ``book/instructors.md`` with the current catalogue."""
    page = Path(book) / "instructors.md"
    text = page.read_text(encoding="utf-8")
    if CATALOGUE_START not in text or CATALOGUE_END not in text:
        raise ValueError(f"{page} has no catalogue markers ({CATALOGUE_START!r} ... {CATALOGUE_END!r})")
    head, rest = text.split(CATALOGUE_START, 1)
    tail = rest.split(CATALOGUE_END, 1)[1]
    page.write_text(head + catalogue_markdown(book) + tail, encoding="utf-8")
    return page
