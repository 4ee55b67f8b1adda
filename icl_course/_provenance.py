"""A fingerprint of the package's code, recorded in each executed notebook (the staleness guard).

The hash is per part: the foundation, the presentation layer and that part's own files (its subpackage, its claims
and its exercises). Editing one part never makes another part's notebooks stale.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from .parts import FOUNDATION, PARTS

PACKAGE = Path(__file__).resolve().parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


SHARED_DIRS = ("claims", "exercises", "data")
"""Package folders shared by every part; inside ``claims`` and ``exercises`` a module named after a part is that
part's."""
SHARED_IN_DIRS = ("__init__", "edition")
NOT_RUN_BY_NOTEBOOKS = ("__main__.py", "_provenance.py", "exercises/edition.py", "exercises/grading.py",
                        "notebooks.py", "reproduce_page.py")
"""Modules no chapter notebook runs (the command line, this hash, the student edition, the grader, the notebook
executor, the Reproducibility page's writer): left out of the code hash, so editing them does not make every
notebook stale. A test checks that no notebook and no hashed module imports them."""


def owner(relative: Path) -> str | None:
    """The part a package file belongs to (``None``: foundation or presentation, shared by every part).

    Any chapter subpackage ``<name>/`` is owned by ``<name>``, and so are ``claims/<name>.py`` and
    ``exercises/<name>``, whether or not the part is listed in :data:`~icl_course.parts.PARTS` yet.
    """
    parts = relative.parts
    if len(parts) > 1 and parts[0] not in SHARED_DIRS and parts[0] not in FOUNDATION:
        return parts[0]
    if len(parts) > 1 and parts[0] in ("claims", "exercises"):
        name = Path(parts[1]).stem
        return None if name in SHARED_IN_DIRS else name
    return None


def code_hash(part: str | None = None, package: Path = PACKAGE) -> str:
    """SHA-256 (16 hex digits) of the ASTs (without docstrings and comments) of the modules a part's notebooks run:
    the shared layers and ``part``'s own files (``part=None``: every module of the package).

    Editing prose leaves it unchanged; any change to that code changes it, and the part's notebooks must be
    re-executed.
    """
    if part is not None and part not in [p.name for p in PARTS]:
        raise ValueError(f"part must be one of {[p.name for p in PARTS]} or None, got {part!r}")
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.as_posix() in NOT_RUN_BY_NOTEBOOKS:
            continue
        if part is not None and owner(rel) not in (None, part):
            continue
        tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8")))
        h.update(rel.as_posix().encode())
        h.update(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return h.hexdigest()[:16]
