"""The reference solutions stay out of what a student installs; an instructor's held-back exercises register and
grade without being published."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest

import icl_course.exercises as registry
from icl_course.exercises import REGISTRY, SolutionUnavailable, all_exercises

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = all_exercises()


def _bodies(source: str) -> dict[str, str]:
    """Every function's body in ``source``, normalised (no docstring, no comments), by name."""
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            out[f"{node.name}:{node.lineno}"] = ast.dump(ast.Module(body=body, type_ignores=[]))
    return out


def _solution_bodies() -> dict[str, str]:
    import inspect

    return {ex.name: next(iter(_bodies(inspect.getsource(ex.solution)).values())) for ex in EXERCISES
            if ex.given_solution is None}


def _assert_no_solution_in(files: dict[str, str]) -> None:
    solutions = _solution_bodies()
    found = [(name, where) for where, text in files.items() for key, body in _bodies(text).items()
             for name, sol in solutions.items() if body == sol]
    assert not found, f"reference solutions inside the package (under any name): {found[:5]}"


def test_every_exercise_has_its_solution_in_the_checkout():
    assert all(callable(ex.solution) for ex in EXERCISES)
    assert all(ex.solution.__module__.startswith("_icl_course_solutions.") for ex in EXERCISES
               if ex.given_solution is None)


def test_no_solution_in_the_package_sources():
    _assert_no_solution_in({str(p): p.read_text(encoding="utf-8") for p in (ROOT / "icl_course").rglob("*.py")})


def test_the_check_finds_a_solution_copied_into_the_package_under_another_name():
    """The check above can fail: a solution pasted into a module under another name is found."""
    import inspect

    pasted = inspect.getsource(REGISTRY["gd_transformer.gd_step"].solution).replace("def gd_step", "def _helper")
    with pytest.raises(AssertionError, match="gd_step"):
        _assert_no_solution_in({"icl_course/solvers.py": "import torch\n\n" + pasted})


def test_without_the_checkout_the_solutions_are_unavailable(monkeypatch, tmp_path):
    ex = REGISTRY["gd_transformer.gd_step"]
    monkeypatch.setattr(registry, "_CHECKOUT_SOLUTIONS", tmp_path / "not-installed")
    monkeypatch.delenv(registry.SOLUTIONS_ENV, raising=False)
    assert registry.solutions_folders() == []
    with pytest.raises(SolutionUnavailable, match=r"gd_transformer\.gd_step.*not part of the installed package"):
        ex.solution  # noqa: B018 - the property is the thing under test
    monkeypatch.setenv(registry.SOLUTIONS_ENV, str(ROOT / "solutions"))
    assert ex.solution.__name__ == "gd_step"


@pytest.mark.slow
def test_the_wheel_holds_no_solution(tmp_path):
    """What `pip install` puts on a student's machine: the package alone, with no solutions folder and none of the
    reference solutions in any module."""
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "icl_course", source / "icl_course", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "solutions", source / "solutions")  # present beside the package, as in a checkout
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True, timeout=600)
    wheel = next(tmp_path.glob("icl_course-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        files = {n: z.read(n).decode("utf-8") for n in names if n.endswith(".py")}
    assert not [n for n in names if n.startswith("solutions/") or "/solutions/" in n]
    assert {n.split("/")[0] for n in names} <= {"icl_course", wheel.name.split("-")[0] + "-"
                                                 + wheel.name.split("-")[1] + ".dist-info"}
    assert any(n.startswith("icl_course/exercises/gd_transformer/") for n in names)  # the checkers are there
    _assert_no_solution_in(files)


HELD_BACK = '''
import torch
from icl_course.exercises import exercise


def two_gd_steps(x, y, lr):
    W = torch.zeros(x.shape[0], y.shape[-1], x.shape[-1], dtype=x.dtype)
    for _ in range(2):
        W = W - lr * ((x @ W.transpose(1, 2) - y).transpose(1, 2) @ x) / x.shape[1]
    return W


@exercise(part="gd_transformer", chapter="one_layer_one_step", name="two_gd_steps", title="Two GD steps",
          difficulty="★★☆", minutes=20, hint="Apply the one-step update twice.", solution=two_gd_steps,
          stub='def two_gd_steps(x, y, lr):\\n    """x (B, N, dx), y (B, N, dy) -> W (B, dy, dx) after two GD steps '
               'from 0."""\\n    raise NotImplementedError("two_gd_steps")\\n')
def check_two_gd_steps(fn):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 7, 4, generator=g, dtype=torch.float64), torch.randn(3, 7, 1, generator=g,
                                                                               dtype=torch.float64)
    ref = two_gd_steps(x, y, 0.5)
    assert torch.allclose(fn(x, y, 0.5), ref), "W after two steps differs"
'''


@pytest.mark.slow
def test_a_held_back_exercise_registers_and_grades(tmp_path):
    """An instructor's exercise kept outside the package: registered through ICL_COURSE_EXERCISES, reported with
    its chapter's exercises, graded (passed for a right answer, the mistake named for a wrong one)."""
    folder = tmp_path / "held_back"
    folder.mkdir()
    (folder / "week2.py").write_text(HELD_BACK, encoding="utf-8")
    cells = [nbformat.v4.new_code_cell("import torch"),
             nbformat.v4.new_markdown_cell("```{solution-start} ex-two\n```"),
             nbformat.v4.new_code_cell(textwrap.dedent('''
                 def two_gd_steps(x, y, lr):
                     W = torch.zeros(x.shape[0], y.shape[-1], x.shape[-1], dtype=x.dtype)
                     for _ in range(2):
                         W = W - lr * ((x @ W.transpose(1, 2) - y).transpose(1, 2) @ x) / x.shape[1]
                     return W * x.shape[1]''')),  # a spare factor N
             nbformat.v4.new_markdown_cell("```{solution-end}\n```")]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"icl_course": {"chapter": "part3_one_layer_one_step"}})
    nbformat.write(nb, tmp_path / "alice.ipynb")
    peek = ("import importlib\nex = importlib.import_module('icl_course.exer' + 'cises')\nex.all_exercises()\n"
            "ref = ex.REGISTRY['gd_transformer.two_gd_steps'].solution")  # reads the held-back solution
    nb.cells = [nbformat.v4.new_code_cell(peek), cells[1],
                nbformat.v4.new_code_cell("def two_gd_steps(x, y, lr):\n    return ref(x, y, lr)"), cells[3]]
    nbformat.write(nb, tmp_path / "mallory.ipynb")
    other = tmp_path / "other" / "held_back"  # a second folder with a module of the same file name
    other.mkdir(parents=True)
    (other / "week2.py").write_text(HELD_BACK.replace("two_gd_steps", "two_more_steps"), encoding="utf-8")
    script = textwrap.dedent(f'''
        import json
        from pathlib import Path
        from icl_course.exercises import REGISTRY, all_exercises
        from icl_course.exercises.grading import chapter_exercises, grade_notebook
        all_exercises()
        ex = REGISTRY["gd_transformer.two_gd_steps"]
        ex.check(ex.solution)
        rows = grade_notebook(Path({str(tmp_path / "alice.ipynb")!r}), fast=True, timeout=300)
        peeked = grade_notebook(Path({str(tmp_path / "mallory.ipynb")!r}), fast=True, timeout=300)
        print(json.dumps({{"keys": chapter_exercises("part3_one_layer_one_step"),
                          "rows": {{r.exercise: [r.status, r.hint] for r in rows}},
                          "peeked": {{r.exercise: [r.status, r.hint] for r in peeked}}}}))
    ''')
    env = {**os.environ, registry.EXERCISES_ENV: os.pathsep.join([str(folder), str(other)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["keys"][-2:] == ["gd_transformer.two_gd_steps", "gd_transformer.two_more_steps"]
    assert len(result["keys"]) == 7  # the five of the chapter, and one from each folder's week2.py
    assert result["rows"]["two_gd_steps"][0] == "failed"
    assert "Diagnosis: your answer has a spare factor N" in result["rows"]["two_gd_steps"][1]
    assert result["rows"]["gd_step"][0] == "missing"
    assert "two_gd_steps" not in {ex.name for ex in EXERCISES}  # nothing leaks into this process's registry
    status, why = result["peeked"]["two_gd_steps"]  # a notebook that looks the solution up fails, with the reason
    assert status == "failed" and "reaches into the course's exercise registry" in why and "in cell 0" in why


def test_a_folder_that_is_not_one_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(registry.EXERCISES_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="ICL_COURSE_EXERCISES must name folders"):
        all_exercises()


def _docstrings(source: str) -> list[str]:
    """Every docstring of a module: its own, its classes', its functions' and methods'."""
    tree = ast.parse(source)
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                  ast.ClassDef)))]
    return [d for n in nodes if (d := ast.get_docstring(n, clean=False))]


def _normal(text: str) -> str:
    return "".join(text.split()).replace("`", "")


GIVEAWAYS = {
    "proposition1_weights": ("W_V = [[0, 0], [0, −I_dy]]", "(η_k / N)·[[0, 0], [0, I_dy]]"),
    "read_step_size": ("−mean diag((P W_V)_yy) · mean diag((W_Kᵀ W_Q)_xx)",),
    "optimal_step_size": ("d(d−1) σ⁴ / N + d (μ₄ + (N−1) σ⁴) / N", "μ₄ = r⁴/80"),
    "gdpp_weights": ("P W_V = −[[γ I, 0], [0, (η/N) I]]",),
    "read_gamma": ("−mean diag((P W_V)_xx) · mean diag((W_Kᵀ W_Q)_xx)",),
    "preconditioner_from_weights": ("−N · mean diag((P W_V)_yy) · (W_Kᵀ W_Q)_xx",),
    "optimal_preconditioner": ("tr Σ + σ²/s²", "trace(cov) + noise_std**2 / teacher_scale**2"),
    "kernel_routes": ("−N V_yy m(a)ᵀ K_mm m(b)", "−N (V_ym·m(a)) (K_ym·m(b))"),
    "ls_test_error": ("s² (d − N) + σ² (1 + N / (d − N − 1))", "σ² (1 + d / (N − d − 1))"),
    "spurious_limit_loss": ("D r² / 24", "α⁶", "(1 + α²)²"),
    "zero_loss": ("Σ_i λ_i^{2t} r²/3",),
    "momentum_gd_dual": ("(1 − η^{T−i+1}) / (1 − η)",),
    "causal_gd_weights": ("queries read ``s_t`` (slot 3), keys ``s_{t−1}`` (slot 4)",),
    "neumann_weights": ("η Σ_{i<K} (I − η A_t)^i",),
}
"""Fragments of answers (a formula, as written somewhere once) that no public docstring and no hint may spell out.
Kept here, in the tests, not in the package: a registry field would ship them to every student."""


def _giveaways_in(files: dict[str, str], hints: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(exercise, fragment, where) for every giveaway a package docstring or an exercise's hint spells out."""
    docs = {f: [_normal(d) for d in _docstrings(text)] for f, text in files.items()}
    docs.update({f"hint of {name}": [_normal(h)] for name, h in (hints or {}).items()})
    return [(name, frag, f) for name, frags in GIVEAWAYS.items() for frag in frags for f, ds in docs.items()
            if any(_normal(frag) in d for d in ds)]


def _package_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in (ROOT / "icl_course").rglob("*.py")
            if "exercises" not in p.relative_to(ROOT / "icl_course").parts}


def test_no_public_docstring_or_hint_gives_an_exercise_away():
    """What `help()` shows a student, and the hint a wrong answer may print: no docstring of the package and no
    exercise's hint spells out an answer listed in GIVEAWAYS (the matrices of a construction, a closed form the
    exercise asks to derive)."""
    assert set(GIVEAWAYS) <= {ex.name for ex in EXERCISES}
    assert not _giveaways_in(_package_sources(), {ex.name: ex.hint for ex in EXERCISES})


def test_the_giveaway_check_finds_each_formula_it_guards():
    """Each fragment, written into a docstring or a hint, is found (the check can fail for every one of them)."""
    for name, frags in GIVEAWAYS.items():
        for frag in frags:
            source = f'def f():\n    """Returns\n    {frag}."""\n'
            assert (name, frag, "x.py") in _giveaways_in({"x.py": source})
            assert (name, frag, "hint of h") in _giveaways_in({}, {"h": f"Use {frag}."})


def test_no_giveaway_ships_in_the_registry():
    """The fragments live in the tests: nothing of an exercise that a student can print holds them except its own
    checker's code."""
    from dataclasses import fields

    assert "giveaways" not in {f.name for f in fields(EXERCISES[0])}
