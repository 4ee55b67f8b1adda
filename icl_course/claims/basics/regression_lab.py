"""Part I claims of chapter "The linear-regression lab": B5 (least squares against its closed-form risk), B6 (ridge at
λ* = σ²/s² is the best λ of a grid) and B9 (ridge's error is the Bayes risk)."""

from __future__ import annotations

from ...basics import (
    LAB,
    LabSettings,
    lab_error_curves,
    lab_learners,
    lab_tasks,
    ls_closed_form_check,
    ridge_bayes_check,
    ridge_lambda_scan,
)
from ...reproduce import Claim, Context, register

CHAPTER = "The linear-regression lab"

__all__: list[str] = []

Z_MAX = 4.0
"""B5's and B9's bound on |z| at each N (13 values for B5, N = 8…20, and 20 for B9): a 4-standard-error band, so
that every comparison of a correct formula passes with probability > 0.998."""

_AT_D = LAB.cpu.dx - 1
"""B9's show reports the comparison at N = d of the book's lab (the column index of N = 4)."""

Z_MIN = 3.0
"""B6's bound: each other λ of the grid is worse than λ* by more than 3 paired standard errors."""


def lab_settings(ctx: Context) -> LabSettings:
    """The book's lab, on a quarter of the tasks with ``--quick``."""
    s = LAB.pick(ctx.scale)
    return s.quick() if ctx.quick else s


def lab_batch(ctx: Context):
    """The evaluation tasks of ``ctx.seed`` (shared by B5 and B6)."""
    return ctx.shared("regression_lab_tasks", lambda: lab_tasks(lab_settings(ctx), ctx.seed))


def lab_curves(ctx: Context):
    """The five learners' error curves on :func:`lab_batch` (shared by B5 and B9)."""
    return ctx.shared("regression_lab_curves",
                      lambda: lab_error_curves(lab_batch(ctx), lab_learners(lab_settings(ctx))))


def _ls_check(ctx: Context):
    return ls_closed_form_check(lab_curves(ctx), lab_settings(ctx))


register(Claim(
    id="B5", chapter=CHAPTER,
    claim="least squares' Monte Carlo error/d (d = 4, σ = 0.5, Gaussian inputs) matches its closed form "
          "σ²(1 + d/(N − d − 1))/d at every N from d + 4 = 8 to 20",
    reference="closed form: E (XᵀX)⁻¹ = I/(N − d − 1) for Gaussian inputs (inverse Wishart mean; Hastie et al. 2022, "
              "Sec. 2)",
    tolerance=f"|Monte Carlo − closed form| < {Z_MAX:g} standard errors at every N (20,000 tasks; 5,000 with --quick)",
    measure=_ls_check,
    judge=lambda v, ctx: v.max_abs_z < Z_MAX,
    show=lambda v: f"max |z| = {v.max_abs_z:.2f} over N = {v.n[0]}…{v.n[-1]}; at N = {v.n[0]}: "
                   f"{v.monte_carlo[0]:.4f} ± {v.se[0]:.4f} vs {v.closed_form[0]:.4f}"))


def _z_others(v) -> float:
    """The smallest paired z of the other λ against λ* (how clearly λ* wins)."""
    return min(d / e for d, e, lam in zip(v.diff, v.diff_se, v.lambdas) if lam != v.lam_bayes)


register(Claim(
    id="B6", chapter=CHAPTER,
    claim="ridge with λ* = σ²/s² (the posterior mean) has the lowest error/d among λ* × {1/16, 1/4, 1/2, 1, 2, 4, 16} "
          "at N = d = 4",
    reference="Bayes optimality of the posterior mean under squared loss (Bishop 2006, Sec. 3.3). Ridge is the "
              "course's addition: Garg et al. 2022's baselines are least squares, 3-NN and averaging, and their "
              "Bayes-optimal one is least squares, the posterior mean in their noise-free setting",
    tolerance=f"λ* has the lowest mean, and every other λ is worse by more than {Z_MIN:g} paired standard errors",
    measure=lambda ctx: ridge_lambda_scan(lab_batch(ctx), lab_settings(ctx)),
    judge=lambda v, ctx: v.best == v.lam_bayes and _z_others(v) > Z_MIN,
    show=lambda v: f"best λ = {v.best:g} (λ* = {v.lam_bayes:g}); error/d at λ* "
                   f"{v.mean[v.lambdas.index(v.lam_bayes)]:.4f}; others worse by ≥ {_z_others(v):.1f} paired SE"))


register(Claim(
    id="B9", chapter=CHAPTER,
    claim="ridge's Monte Carlo error/d at λ* matches the Bayes risk σ²(1 + tr (XᵀX + λ*I)⁻¹)/d of the same tasks' "
          "inputs at every N from 1 to 20",
    reference="the Gaussian posterior's predictive variance (Bishop 2006, Sec. 3.3.2)",
    tolerance=f"|Monte Carlo − Bayes risk| < {Z_MAX:g} standard errors at every N (20,000 tasks; 5,000 with --quick)",
    measure=lambda ctx: ridge_bayes_check(lab_curves(ctx), lab_batch(ctx), lab_settings(ctx)),
    judge=lambda v, ctx: v.max_abs_z < Z_MAX,
    show=lambda v: f"max |z| = {v.max_abs_z:.2f} over N = {v.n[0]}…{v.n[-1]}; at N = {v.n[_AT_D]}: "
                   f"{v.monte_carlo[_AT_D]:.4f} ± {v.se[_AT_D]:.4f} vs {v.bayes_risk[_AT_D]:.4f}"))
