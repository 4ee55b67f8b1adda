"""Claims of the chapter "Anisotropic inputs: preconditioned GD": E10, E11."""

from __future__ import annotations

from ... import gd_transformer as gt
from ... import solvers
from ...reproduce import Claim, Context, register
from ._common import E10_Z, E11_Z, E10Value, N, e10_value, e11_value

CHAPTER_PRECOND = "Anisotropic inputs: preconditioned GD"


def _aniso(ctx: Context):
    def make():
        kw, cov = gt.anisotropic_setting()
        run = gt.train_anisotropic(seed=ctx.seed, eval_size=ctx.eval_size)
        star = solvers.optimal_preconditioner_gaussian(cov, N)
        return kw, cov, run, star
    return ctx.shared("anisotropic", make)


def _e10(ctx: Context) -> E10Value:
    kw, cov, run, star = _aniso(ctx)
    mc = gt.preconditioner_monte_carlo(200_000, seed=ctx.seed + 50, **kw)
    z = gt.preconditioner_stationarity(star, cov, 50_000 if ctx.quick else 200_000, seed=ctx.seed + 60, **kw)
    return e10_value(star, mc, run.eval_set, z)


register(Claim(
    id="E10", chapter=CHAPTER_PRECOND,
    claim="closed-form optimal preconditioner Γ* = ((1+1/N)Σ + trΣ/N·I)⁻¹ (Gaussian inputs)",
    reference="closed form (Ahn et al. 2023; Mahankali et al. 2023)",
    tolerance=f"loss gradient at Γ* zero: max |z| < {E10_Z} over Σ's 10 eigendirections (200k tasks, 50k with "
              "--quick); "
              "L(Γ*) ≤ 1.002 L(Γ_MC)",
    measure=_e10, judge=lambda v, ctx: v.max_z < E10_Z and v.loss_ratio <= 1.002,
    show=lambda v: f"max |z| {v.max_z:.2f}, loss ratio {v.loss_ratio:.4f} (MC Γ rel. diff {v.mc_rel_diff:.3f})"))

register(Claim(
    id="E11", chapter=CHAPTER_PRECOND,
    claim="one trained layer on anisotropic inputs ≈ preconditioned GD-1, beating plain GD-1",
    reference="the optimal one-layer learner is preconditioned GD (Ahn et al. 2023)",
    tolerance="L_TF ≤ 1.02 × L(Γ*), and L_TF below L(GD, best η) by more than 3 paired standard errors (same "
              "tasks, task by task)",
    measure=lambda ctx: e11_value(_aniso(ctx)[2], gt.preconditioner_losses(_aniso(ctx)[2].eval_set,
                                                                           {"star": _aniso(ctx)[3].float()})),
    judge=lambda v, ctx: v.loss_tf <= 1.02 * v.loss_star and v.margin > E11_Z * v.margin_se,
    show=lambda v: f"TF {v.loss_tf:.4f} vs Γ* {v.loss_star:.4f} vs GD {v.loss_gd_best:.4f} (margin over GD "
                   f"{v.margin:.4f} ± {v.margin_se:.4f})"))
