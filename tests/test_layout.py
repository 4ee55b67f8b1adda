"""The package's shape: imports point downward (foundation → chapters → presentation), no chapter subpackage imports
another, no chapter module imports a sibling chapter module, one list of parts, per-part staleness hashes, and the
renamed names still importable with a warning naming the new one."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import icl_course
from icl_course import _provenance
from icl_course.parts import FOUNDATION, PARTS, part_of_notebook

PACKAGE = Path(icl_course.__file__).resolve().parent
ROOT = PACKAGE.parent
PART_NAMES = {p.name for p in PARTS}


def _module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` for every import of an ``icl_course`` module in a file (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("icl_course"):
                names = [a.name for a in node.names]
                out += [(node.lineno, f"{mod}.{n}") for n in names] if not node.module or mod.count(".") == 0 \
                    else [(node.lineno, mod)] + [(node.lineno, f"{mod}.{n}") for n in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("icl_course")]
    return out


def _layer(module: str) -> tuple[str, str | None]:
    """``(layer, part)`` of a module: ``foundation``, ``chapter`` (with its part), ``presentation`` or ``root``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root", None
    top = parts[1]
    if top in FOUNDATION:
        return "foundation", None
    if top in PART_NAMES:
        return "chapter", top
    return "presentation", None


RANK = {"foundation": 0, "chapter": 1, "presentation": 2, "root": 3}


def layering_violations(package: Path = PACKAGE) -> list[str]:
    """Every import that points upward or sideways, as ``file:line imports module (why)``."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        me = _module_name(path, package.parent)
        my_layer, my_part = _layer(me)
        for line, target in _imports(path, package.parent):
            if target == "icl_course" or target.split(".")[1] in ("__version__",):
                continue
            layer, part = _layer(target)
            if layer not in RANK:
                continue
            where = f"{path.relative_to(package.parent)}:{line} imports {target}"
            if my_layer != "root" and RANK[layer] > RANK[my_layer]:
                bad.append(f"{where} ({my_layer} must not import {layer})")
            elif my_layer == "chapter" and layer == "chapter" and part != my_part:
                bad.append(f"{where} (chapter subpackage {my_part} must not import another part, {part})")
            elif my_layer == "chapter" and layer == "chapter":
                mine, theirs = me.split("."), target.split(".")
                sibling = len(theirs) > 2 and not theirs[2].startswith("_") and theirs[:3] != mine[:3]
                if sibling and len(mine) > 2 and mine[2] != "__init__" and path.name != "__init__.py":
                    bad.append(f"{where} (chapter module {me} must not import a sibling chapter module)")
    return bad


def test_imports_point_downward_and_parts_stay_apart():
    assert layering_violations() == []


def test_the_layering_check_names_an_offending_import(tmp_path):
    """A check that cannot fail is a defect: plant a foundation module that imports a chapter."""
    pkg = tmp_path / "icl_course"
    (pkg / "gd_transformer").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "gd_transformer" / "__init__.py").write_text("")
    (pkg / "gd_transformer" / "deeper_gdpp.py").write_text("from .one_layer_one_step import x\n")
    (pkg / "gd_transformer" / "one_layer_one_step.py").write_text("x = 1\n")
    (pkg / "tasks.py").write_text("from .gd_transformer import one_layer_one_step\n")
    bad = layering_violations(pkg)
    assert any("tasks.py:1 imports icl_course.gd_transformer" in b and "foundation must not import chapter" in b
               for b in bad), bad
    assert any("deeper_gdpp.py:1" in b and "sibling chapter module" in b for b in bad), bad


def test_every_part_has_a_subpackage_claims_and_exercises():
    for part in PARTS:
        assert (PACKAGE / part.name / "__init__.py").exists(), part
        claims = PACKAGE / "claims"
        assert (claims / f"{part.name}.py").exists() or (claims / part.name / "__init__.py").exists(), part


def test_notebooks_map_to_parts():
    assert part_of_notebook("book/part3_one_layer_one_step.ipynb").name == "gd_transformer"
    with pytest.raises(ValueError, match="part<N>_|must start with"):
        part_of_notebook("book/chapter_without_part.ipynb")


def test_every_chapter_notebook_has_its_module():
    book = PACKAGE.parent / "book"
    for nb in sorted(book.glob("part*_*.ipynb")):
        part = part_of_notebook(nb)
        module = nb.stem[len(part.prefix):]
        assert (PACKAGE / part.name / f"{module}.py").exists(), f"{nb.name} has no module {part.name}/{module}.py"


def test_staleness_hash_is_per_part(tmp_path, monkeypatch):
    """Editing one part's module changes that part's hash and no other part's (simulated with a fake second part)."""
    import shutil

    from icl_course.parts import Part

    pkg = tmp_path / "icl_course"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    (pkg / "other_part").mkdir()
    (pkg / "other_part" / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(_provenance, "PARTS", (*PARTS, Part(9, "other_part", "Other")))
    before = {p: _provenance.code_hash(p, pkg) for p in ("gd_transformer", "other_part")}
    (pkg / "other_part" / "__init__.py").write_text("x = 2\n")
    assert _provenance.code_hash("gd_transformer", pkg) == before["gd_transformer"]
    assert _provenance.code_hash("other_part", pkg) != before["other_part"]
    (pkg / "solvers.py").write_text((pkg / "solvers.py").read_text() + "\nY = 1\n")  # the foundation is shared
    h1 = _provenance.code_hash("gd_transformer", pkg)
    assert h1 != before["gd_transformer"]
    (pkg / "tasks" / "dynamics.py").write_text((pkg / "tasks" / "dynamics.py").read_text() + "\nZ = 2\n")
    assert _provenance.code_hash("gd_transformer", pkg) != h1  # a foundation package is shared too
    (pkg / "solvers.py").write_text((pkg / "solvers.py").read_text() + "\n# a comment\n")
    h = _provenance.code_hash("gd_transformer", pkg)
    (pkg / "solvers.py").write_text((pkg / "solvers.py").read_text() + "\n# another comment only\n")
    assert _provenance.code_hash("gd_transformer", pkg) == h  # comments do not count
    with pytest.raises(ValueError, match="part must be one of"):
        _provenance.code_hash("no_such_part")


def test_modules_stay_short():
    long = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert long == {}, f"modules above ~450 lines hold two things: {long}"


@pytest.mark.parametrize("old,new", [
    ("effective_lr", "effective_lr_over_n"), ("lsa_predict", "query.predict"),
    ("eval_batch", "tasks.regression_eval_set"), ("token_stream", "tasks.regression_stream"),
    ("sine_eval", "tasks.sine_eval_set"), ("sine_stream", "tasks.sine_stream"), ("TrainedLSA", "train.TrainedRun"),
])
def test_renamed_names_warn_and_name_the_new_one(old, new):
    gt = importlib.import_module("icl_course.gd_transformer")
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        obj = getattr(gt, old)
    assert obj is not None
    with pytest.raises(AttributeError, match="no attribute"):
        gt.no_such_name  # noqa: B018


def test_old_dict_access_to_settings_warns():
    from icl_course import gd_transformer as gt

    with pytest.warns(DeprecationWarning, match=r"settings\.dx"):
        assert gt.PAPER["dx"] == gt.PAPER.dx == 10
    with pytest.raises(ValueError, match="scale must be one of"):
        gt.SINE.pick("huge")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gt.SINE.pick("paper").steps == 20_000 and gt.STANDARD.pick("cpu").batch_size == 512


def test_fixed_public_names_of_the_design():
    from icl_course import gd_transformer, models, solvers, tasks

    assert gd_transformer.make_tokens is tasks.make_tokens
    for name in ("constructed_lsa", "readout"):
        assert callable(getattr(gd_transformer, name))
    assert callable(solvers.gd) and hasattr(models.LinearSelfAttention, "from_matrices")


def test_modules_left_out_of_the_code_hash_are_not_run_by_notebooks():
    """The modules the staleness hash leaves out are imported by no chapter notebook and by no hashed module (else
    editing them could change what a notebook computes without making it stale)."""
    import ast
    import json

    left_out = {p.removesuffix(".py").replace("/", ".") for p in _provenance.NOT_RUN_BY_NOTEBOOKS}
    names = {f"icl_course.{m}" for m in left_out} | {m.rsplit(".", 1)[-1] for m in left_out}

    def imported(source: str, package: str) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
                found |= {base.strip(".")} | {f"{base.strip('.')}.{a.name}" for a in node.names}
        return found

    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in _provenance.NOT_RUN_BY_NOTEBOOKS:
            continue
        package = "icl_course." + ".".join(path.relative_to(PACKAGE).parts[:-1])
        bad = {m for m in imported(path.read_text(encoding="utf-8"), package.rstrip(".")) if m in names}
        assert not bad, f"{rel} imports {bad}, which the code hash leaves out"
    for nb in (ROOT / "book").glob("*.ipynb"):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for name in left_out:
            assert name.rsplit(".", 1)[-1] not in source, f"{nb.name} uses {name}, which the code hash leaves out"
