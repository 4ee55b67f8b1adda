"""The student edition (solutions replaced by stubs), as notebooks and as a book; the grader is in :mod:`.grading`.

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

__all__ = ["solution_cells", "student_notebook", "write_student_edition", "write_student_book", "check_calls"]

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


_WITHHELD = "*The discussion of this solution is withheld from the student edition.*"


def _solution_markdown(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of markdown cells strictly inside a gated solution block (a solution's written discussion)."""
    inside, found = False, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        if _START in cell.source:
            inside = _END not in cell.source
        elif _END in cell.source:
            inside = False
        elif inside:
            found.append(i)
    return found


def _run_on(source: str, name: str) -> str:
    """A checker cell that prints its verdict and lets the notebook run on (a stub or a wrong answer does not stop a
    "Run all" or an nbconvert run at the first exercise); a stub's verdict never prints the hint."""
    lines = source.rstrip("\n").splitlines()
    call = next(j for j in range(len(lines) - 1, -1, -1) if re.match(rf"\s*check_{name}\s*\(", lines[j]))
    head = [ln for j, ln in enumerate(lines) if j != call]
    return "\n".join(["from icl_course.exercises import ExerciseFailed, NotAttempted", *head, "",
                      "try:  # the checker prints its verdict; the notebook runs on either way",
                      f"    {lines[call].strip()}",
                      "except NotAttempted as verdict:  # what is expected, never the hint",
                      '    print(f"⏳ {verdict}")',
                      "except ExerciseFailed as verdict:",
                      '    print(f"❌ {verdict}")'])


def student_notebook(nb: nbformat.NotebookNode, keep_outputs: bool = False,
                     chapter: str | None = None) -> nbformat.NotebookNode:
    """A copy with each solution cell replaced by its stub and each solution's written discussion withheld; each
    checker cell prints its verdict instead of raising, so that a partly solved notebook runs to the end.

    ``keep_outputs=False`` (the notebooks students run) clears every output. ``keep_outputs=True`` (the student
    edition of the *book*, which renders stored outputs) clears only the solution cells' and the checker cells'
    outputs and keeps the rest, figures and saved widgets included. ``chapter`` (the notebook's name) is recorded in
    the metadata, where the grader looks first.
    """
    out = copy.deepcopy(nb)
    solutions = solution_cells(out)
    for i, key in solutions:
        out.cells[i].source = REGISTRY[key].stub_source.rstrip("\n")
        out.cells[i].metadata.setdefault("tags", [])
        if "solution" not in out.cells[i].metadata["tags"]:
            out.cells[i].metadata["tags"].append("solution")
    for i in _solution_markdown(out):
        out.cells[i].source = _WITHHELD
    for i, name in check_calls(out).items():
        out.cells[i].source = _run_on(out.cells[i].source, name)
    cleared = {i for i, _ in solutions} | set(check_calls(out))
    for i, cell in enumerate(out.cells):
        if cell.cell_type == "code" and (not keep_outputs or i in cleared):
            cell.outputs, cell.execution_count = [], None
    if not keep_outputs:
        out.metadata.pop("widgets", None)
    out.metadata.setdefault("icl_course", {})["edition"] = "student"
    if chapter is not None:
        out.metadata["icl_course"]["chapter"] = chapter
    return out


# ------------------------------------------------------------------------------- MyST to plain Markdown (student)
# The student notebooks are opened in plain JupyterLab or Notebook, which render Markdown and math but not MyST's
# directives and roles: a definition, a proposition or an exercise statement would show as a raw code block and a
# cross-reference as `{numref}`. The student edition of the notebooks rewrites them into plain Markdown (the
# student edition of the *book* keeps MyST: Jupyter Book renders it).
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$", re.M)
_ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<body>[^`]*)`")
_TARGET = re.compile(r"^\((?P<label>[\w:.-]+)\)=[ \t]*$", re.M)
_KINDS = {"prf:definition": "Definition", "prf:proposition": "Proposition", "prf:theorem": "Theorem",
          "prf:lemma": "Lemma", "prf:corollary": "Corollary", "exercise": "Exercise"}
_ACCENTS = {"'": "\u0301", '"': "\u0308", "~": "\u0303", "`": "\u0300", "^": "\u0302", "c": "\u0327",
            "v": "\u030c"}


def _detex(text: str) -> str:
    import unicodedata

    text = re.sub(r"\{?\\(['\"~`^]|[cv](?=[\s{]))\s*\{?(\w)\}?\}?", lambda m: m[2] + _ACCENTS[m[1]], text)
    return unicodedata.normalize("NFC", text.replace("{", "").replace("}", ""))


def _bibliography(bib: Path) -> dict[str, tuple[str, str]]:
    """``key -> (authors, year)`` with authors as a text citation writes them (``von Oswald et al.``)."""
    out = {}
    for key, body in re.findall(r"@\w+\{([^,\s]+),(.*?)\n\}", bib.read_text(encoding="utf-8"), re.S):
        author = re.search(r"author\s*=\s*\{(.*?)\},?\s*\n\s*\w+\s*=", body, re.S)
        year = re.search(r"year\s*=\s*\{?(\d{4})", body)
        names = [n.strip() for n in re.split(r"\s+and\s+", " ".join(author[1].split()))] if author else []
        last = [_detex(n.split(",")[0] if "," in n else n.split()[-1]) for n in names]
        who = last[0] if len(last) == 1 else " and ".join(last) if len(last) == 2 else f"{last[0]} et al."
        out[key] = (who or key, year[1] if year else "n.d.")
    return out


def _heading(nb: nbformat.NotebookNode) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (m := re.search(r"^# (.+)$", cell.source, re.M)):
            return m[1].strip()
    return ""


def book_references(book: Path) -> dict:
    """What the plain-Markdown rewrite needs from the whole book: citations, page titles and every label's text."""
    refs: dict = {"bib": _bibliography(book / "references.bib"), "titles": {}, "labels": {}}
    for page in sorted(book.glob("*.md")):
        if m := re.search(r"^# (.+)$", page.read_text(encoding="utf-8"), re.M):
            refs["titles"][page.stem] = m[1].strip()
    for path in sorted(book.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        refs["titles"][path.stem] = _heading(nb)
        figures = 0
        for cell in nb.cells:
            if cell.cell_type == "code" and (fig := cell.metadata.get("mystnb", {}).get("figure", {})).get("name"):
                figures += 1
                refs["labels"][fig["name"]] = (path.stem, f"Figure {figures}", str(figures))
            if cell.cell_type != "markdown":
                continue
            for m in _FENCE.finditer(cell.source):
                label = re.search(r"^:label:\s*(\S+)", cell.source[m.end():], re.M)
                if label and m["name"] in _KINDS:
                    refs["labels"][label[1]] = (path.stem, f"{_KINDS[m['name']]} ({m['arg'].strip()})", "")
            for m in _TARGET.finditer(cell.source):
                after = re.search(r"^#+ (.+)$", cell.source[m.end():], re.M)
                refs["labels"][m["label"]] = (path.stem, f"“{after[1].strip()}”" if after else m["label"], "")
    return refs


def _cite(keys: str, refs: dict, textual: bool) -> str:
    found = [refs["bib"].get(k.strip(), (k.strip(), "n.d.")) for k in keys.split(",")]
    if textual:
        return "; ".join(f"{who} ({year})" for who, year in found)
    return "(" + "; ".join(f"{who}, {year}" for who, year in found) + ")"


def _role(m: re.Match, refs: dict, page: str) -> str:
    role, body = m["role"], m["body"]
    text, target = (body, body)
    if (explicit := re.match(r"^(.*?)\s*<([^>]+)>$", body, re.S)) is not None:
        text, target = explicit[1], explicit[2]
    if role in ("cite:t", "cite:p", "cite"):
        return _cite(body, refs, textual=role == "cite:t")
    if role == "doc":
        title = text if explicit else refs["titles"].get(target, target)
        return f"[{title}]({target}.ipynb)" if target.startswith("part") else f"*{title}* (in the online book)"
    if role in ("numref", "ref", "prf:ref"):
        if target not in refs["labels"]:
            raise ValueError(f"{page}: {{{role}}}`{body}` names a label the book does not define")
        where, name, number = refs["labels"][target]
        shown = (text.replace("%s", number) if number else name) if explicit else name
        return shown if where == page else f"{shown} of [{refs['titles'].get(where, where)}]({where}.ipynb)"
    if role == "math":
        return f"${body}$"
    raise ValueError(f"{page}: the student edition cannot rewrite the role {{{role}}} into plain Markdown yet")


def _directives(text: str) -> str:
    """Rewrite every MyST directive block (innermost first) into plain Markdown."""
    while m := _FENCE.search(text):
        close = re.compile(rf"^{re.escape(m['fence'])}[ \t]*$", re.M).search(text, m.end())
        end = close.start() if close else len(text)
        lines = text[m.end():end].strip("\n").split("\n")
        options = {}
        while lines and (opt := re.match(r"^:([\w-]+):[ \t]*(.*)$", lines[0])):  # options lead the body only
            options[opt[1]] = opt[2]
            lines.pop(0)
        body = _directives("\n".join(lines).strip("\n"))
        name, arg = m["name"], m["arg"].strip()
        anchor = f'<a id="{options["label"]}"></a>' if "label" in options else ""
        if name in ("solution-start", "solution-end"):
            new = f"<!-- {{{name}}} {arg} -->" + ("\n\n**Your solution** (the next code cell):"
                                                   if name == "solution-start" else "")
        elif name in _KINDS:
            new = f"{anchor}**{_KINDS[name]}{f' ({arg})' if arg else ''}.**\n\n{body}"
        elif name == "prf:proof":
            new = f"*Proof.* {body} ∎"
        else:  # admonition, note, tip, warning, ...: a quoted box with its title
            title = arg or name.split(":")[-1].capitalize()
            new = "\n".join([f"> **{title}**", ">"] + [f"> {line}" if line else ">" for line in body.splitlines()])
        before, after = text[:m.start()].rstrip("\n"), text[(close.end() if close else len(text)):].lstrip("\n")
        text = "\n\n".join(part for part in (before, new, after) if part)  # a block stands in its own paragraph
    return text


def plain_markdown(source: str, refs: dict, page: str) -> str:
    """A markdown cell's MyST (directives, roles, targets) rewritten into plain Markdown for ``page``."""
    text = _directives(source)
    text = _TARGET.sub(lambda m: f'<a id="{m["label"]}"></a>', text)
    return _ROLE.sub(lambda m: _role(m, refs, page), text)


def _plain_notebook(nb: nbformat.NotebookNode, refs: dict, page: str) -> None:
    """Rewrite ``nb``'s markdown cells in place and put each figure's caption in a markdown cell after it."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = plain_markdown(cell.source, refs, page)
        cells.append(cell)
        figure = cell.metadata.get("mystnb", {}).get("figure", {}) if cell.cell_type == "code" else {}
        if figure.get("caption"):
            _, name, _ = refs["labels"].get(figure.get("name", ""), (page, "Figure", ""))
            anchor = f'<a id="{figure["name"]}"></a>' if figure.get("name") else ""
            caption = plain_markdown(figure["caption"], refs, page)
            cells.append(nbformat.v4.new_markdown_cell(f"{anchor}**{name}.** {caption}"))
    nb.cells = cells



def write_student_edition(book: Path, outdir: Path) -> list[Path]:
    """Write the student edition of every chapter notebook under ``book`` to ``outdir`` (same relative paths), its
    markdown in plain Markdown (:func:`plain_markdown`) so that it reads well in plain JupyterLab or Notebook.

    Every notebook must belong to a part of :data:`icl_course.parts.PARTS` (``part<N>_`` prefix).
    """
    from ..notebooks import notebook_paths
    from ..parts import part_of_notebook

    if not (Path(book) / "_toc.yml").is_file():
        raise ValueError(f"book must be the course's book folder (with _toc.yml), got {book}")
    if Path(outdir).resolve().is_relative_to(Path(book).resolve()):
        raise ValueError(f"outdir {outdir} lies inside the book {book}: the stubs would overwrite the chapters")
    written, refs = [], book_references(Path(book))
    for path in notebook_paths(book):
        part_of_notebook(path)  # raises for a notebook outside every part
        target = Path(outdir) / path.relative_to(book)
        target.parent.mkdir(parents=True, exist_ok=True)
        nb = student_notebook(nbformat.read(path, as_version=4), chapter=path.stem)
        _plain_notebook(nb, refs, path.stem)
        nbformat.write(nb, target)
        written.append(target)
    return written


_MARKER = ".icl-student-book"
INSTRUCTOR_PAGES = ("instructors", "course_plan")
"""Pages the student edition of the book leaves out (the course plan holds model answers)."""


def _drop_pages(book: Path, pages: tuple[str, ...]) -> None:
    """Delete ``pages`` from a copy of the book and from its ``_toc.yml`` (a part left empty goes too)."""
    import yaml

    toc_path = book / "_toc.yml"
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    for part in toc.get("parts", []):
        part["chapters"] = [c for c in part.get("chapters", []) if c.get("file") not in pages]
    toc["parts"] = [p for p in toc.get("parts", []) if p.get("chapters")]
    toc_path.write_text(yaml.safe_dump(toc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for page in pages:
        for found in book.glob(f"{page}.*"):
            found.unlink()
    links = re.compile(r"\{doc\}`(?:([^`<]*?)\s*<)?(" + "|".join(map(re.escape, pages)) + r")>?`")

    def unlink(text: str) -> str:  # a link to a left-out page becomes its text, marked as the full book's
        return links.sub(lambda m: f"*{m[1] or 'the instructors’ pages'}* (in the full edition of the book)", text)

    for md in book.glob("*.md"):
        md.write_text(unlink(md.read_text(encoding="utf-8")), encoding="utf-8")
    for path in book.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = unlink(cell.source)
        nbformat.write(nb, path)


def write_student_book(root: Path, outdir: Path) -> Path:
    """Write the source of the student edition of the book to ``outdir``; returns the book folder to build.

    ``root`` is the repository root (``_config.yml`` and ``book/``). The copy has every chapter notebook as its
    student edition with stored outputs (:func:`student_notebook` with ``keep_outputs=True``), and a
    ``_config.yml`` that says ``course_edition: student``, adds "(student edition)" to the title and drops the launch
    and edit buttons (they would open the full notebooks, solutions included, from the repository). The pages for
    instructors (:data:`INSTRUCTOR_PAGES`) are left out.
    """
    import shutil

    import yaml

    root, outdir = Path(root), Path(outdir)
    if not (root / "_config.yml").is_file() or not (root / "book").is_dir():
        raise ValueError(f"root must be the repository root (with _config.yml and book/), got {root}")
    out, top = outdir.resolve(), root.resolve()
    if top.is_relative_to(out) or out.is_relative_to(top / "book"):
        raise ValueError(f"outdir {outdir} would hold or overwrite the course itself: choose a folder of its own")
    if out.exists() and any(out.iterdir()) and not (out / _MARKER).exists():
        raise ValueError(f"outdir {outdir} is not empty and was not written by student-book: choose another")
    shutil.rmtree(outdir, ignore_errors=True)
    shutil.copytree(root / "book", outdir / "book", ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    for path in sorted((outdir / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.write(student_notebook(nb, keep_outputs=True, chapter=path.stem), path)
    _drop_pages(outdir / "book", INSTRUCTOR_PAGES)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = f"{config['title']} (student edition)"
    config.pop("launch_buttons", None)
    config.setdefault("html", {})["use_edit_page_button"] = False  # it too would open the full notebook
    config.setdefault("sphinx", {}).setdefault("config", {})["course_edition"] = "student"
    (outdir / _MARKER).write_text("written by `python -m icl_course student-book`; it may delete this folder\n")
    (outdir / "_config.yml").write_text("# Generated by `python -m icl_course student-book`; do not edit.\n"
                                        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                        encoding="utf-8")
    return outdir / "book"


def check_calls(nb: nbformat.NotebookNode) -> dict[int, str]:
    """``cell index -> exercise name`` for every cell that calls a checker."""
    return {i: m.group(1) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (m := _CHECK.search(c.source))}
