"""A fingerprint of the package's code, recorded in each executed notebook (the staleness guard)."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_hash(package: Path = PACKAGE) -> str:
    """SHA-256 (16 hex digits) of every module's AST without docstrings and comments.

    Editing prose leaves it unchanged; any change to code changes it, and the notebooks must be re-executed.
    """
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8")))
        h.update(path.relative_to(package).as_posix().encode())
        h.update(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return h.hexdigest()[:16]
