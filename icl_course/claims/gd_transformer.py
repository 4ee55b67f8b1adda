"""Part III claims (TARGETS.md E1–E8, plus E9: agreement with the official implementation, and E10–E12)."""

from __future__ import annotations

import math

import torch

from .. import gd_transformer as gt
from .. import solvers
from ..reproduce import Claim, Context, KnownGap, register

CHAPTER = "One layer, one step"
DX, N = gt.PAPER["dx"], gt.PAPER["n_context"]
ETA_STAR = 200 / 33  # E tr Σ̂ / E tr Σ̂² for d = N = 10, x ~ U(-0.5, 0.5)
GD1_LOSS = 0.2062
E2B_TOL_10K = 0.012  # ≈ 3.5 standard errors of a 10,000-task mean (SD of the mean ≈ 0.0034)


def _trained(ctx: Context) -> gt.TrainedLSA:
    return ctx.shared("one_layer", lambda: gt.train_lsa(seed=ctx.seed, steps=gt.ONE_LAYER_STEPS,
                                                        eval_size=ctx.eval_size))


def _compare(ctx: Context) -> dict:
    return ctx.shared("compare", lambda: gt.compare_with_gd(_trained(ctx).model, _trained(ctx).eval_set,
                                                            solvers.optimal_gd_lr(DX, N)))


def e2b_tolerance(n_tasks: int) -> float:
    """±0.012 on 10,000 tasks, widened by the standard error's √(10,000 / n) on smaller sets."""
    return E2B_TOL_10K * math.sqrt(10_000 / n_tasks)


register(Claim(
    "E1", CHAPTER, "Proposition 1: K constructed LSA layers = K GD steps (K = 1..5, random shapes)",
    "exact (von Oswald et al. 2022, Prop. 1)", "float64 relative error < 1e-10",
    measure=lambda ctx: max(gt.proposition1_errors(5, seed=ctx.seed).values()),
    judge=lambda v, ctx: v < 1e-10, show=lambda v: f"max rel. error {v:.1e}", exact=True))

register(Claim(
    "E2a", CHAPTER, "optimal one-step GD step size η* (closed form; Monte-Carlo check)",
    "200/33 ≈ 6.0606 (TARGETS E2a)", "closed form rel. < 1e-12; Monte Carlo within 4 SE",
    measure=lambda ctx: (solvers.optimal_gd_lr(DX, N),
                         *gt.optimal_lr_monte_carlo(50_000 if ctx.quick else 200_000, seed=ctx.seed)),
    judge=lambda v, ctx: abs(v[0] / ETA_STAR - 1) < 1e-12 and abs(v[1] - v[0]) < 4 * v[2],
    show=lambda v: f"{v[0]:.4f} (MC {v[1]:.3f} ± {v[2]:.3f})", exact=True))

register(Claim(
    "E2b", CHAPTER, "one-step GD loss at η*: population closed form and eval-set mean",
    "0.2062 (zero predictor 0.4167)", "closed form ±5e-5; eval mean ±0.012·√(10k/n)",
    measure=lambda ctx: (solvers.gd_one_step_loss(ETA_STAR, DX, N), _compare(ctx)["loss_gd"],
                         _trained(ctx).eval_set.x.shape[0]),
    judge=lambda v, ctx: abs(v[0] - GD1_LOSS) < 5e-5 and abs(v[1] - GD1_LOSS) < e2b_tolerance(v[2]),
    show=lambda v: f"{v[0]:.4f} (eval {v[1]:.4f}, n={v[2]})"))

register(Claim(
    "E2c", CHAPTER, "trained 1-layer LSA reaches GD-1's loss on the same eval tasks",
    "within 1 % of GD-1 by ~500 steps (TARGETS E2c)", "L_TF / L_GD − 1 ≤ 3 %",
    measure=lambda ctx: _compare(ctx)["loss_tf"] / _compare(ctx)["loss_gd"],
    judge=lambda v, ctx: v - 1 <= 0.03, show=lambda v: f"L_TF/L_GD = {v:.4f}"))

register(Claim(
    "E2d", CHAPTER, "trained LSA's implicit model = GD's: model cos and η_eff/N from the weights",
    "cos ≥ 0.995; η*/N = 0.606", "cos ≥ 0.995 and η_eff/N within 5 % of 0.606",
    measure=lambda ctx: (_compare(ctx)["model_cos"], gt.effective_lr(_trained(ctx).layer, DX)),
    judge=lambda v, ctx: v[0] >= 0.995 and abs(v[1] / (ETA_STAR / N) - 1) < 0.05,
    show=lambda v: f"cos {v[0]:.4f}, η_eff/N {v[1]:.4f}"))


def _ood(ctx: Context) -> dict[str, float]:
    layer = _trained(ctx).layer
    rows = gt.ood_sweep(_trained(ctx).model, {"eff": N * gt.effective_lr(layer, DX), "star": ETA_STAR},
                        n_tasks=ctx.eval_size, seed=ctx.seed)
    return gt.ood_log_ratios(rows)


register(Claim(
    "E3", CHAPTER, "out of distribution (input range r ≤ 2, teacher scale ≤ 2) the trained LSA tracks GD",
    "GD-1 at η*: r=0.5 → 0.0812 … r=2 → 8.4007", "max |log L_TF/L_GD| < 0.05 (GD at η_eff), < 0.15 (at η*)",
    measure=lambda ctx: tuple(_ood(ctx)[k] for k in ("eff", "star")),
    judge=lambda v, ctx: v[0] < 0.05 and v[1] < 0.15, show=lambda v: f"{v[0]:.4f} / {v[1]:.4f}"))


def _interp(ctx: Context) -> float:
    t = _trained(ctx)
    l0, lmix, l1 = gt.interpolation_losses(t.layer, t.eval_set, ETA_STAR / N, (0.0, 0.5, 1.0))
    return max(abs(lmix / l0 - 1), abs(lmix / l1 - 1))


register(Claim(
    "E4", CHAPTER, "the 50/50 mix of trained and constructed weight products keeps the loss",
    "loss of the mix ≈ loss of either end", "within 2 % of both ends",
    measure=_interp, judge=lambda v, ctx: v < 0.02, show=lambda v: f"max rel. change {v:.4f}"))

register(Claim(
    "E9", CHAPTER, "training loop and forward pass reproduce the official implementation step for step",
    "golden data of the official JAX code (40 steps; trained model; GD)", "every relative error ≤ 1e-5",
    measure=lambda ctx: max(gt.golden_agreement().values()),
    judge=lambda v, ctx: v <= 1e-5, show=lambda v: f"max rel. error {v:.1e}", exact=True))


# ---------------------------------------------------------------- chapter "Deeper layers learn GD++"
CHAPTER_GDPP = "Deeper layers learn GD++"


def _eval_set(ctx: Context):
    return ctx.shared("deep_eval", lambda: gt.eval_batch(ctx.eval_size, N, DX, seed=ctx.seed + 2))


def _gdpp(ctx: Context) -> dict:
    return ctx.shared("gd_vs_gdpp", lambda: gt.gd_vs_gdpp((2, 3), _eval_set(ctx), seed=ctx.seed))


def _recurrent(ctx: Context):
    return ctx.shared("recurrent", lambda: gt.train_recurrent(seed=ctx.seed, eval_size=ctx.eval_size))


def e6_value(run: gt.TrainedLSA, escape: int | None, table: dict) -> tuple[float, float, float, float]:
    """(L_TF, L_GD-3, L_GD++-3, escape step) for claim E6; L_TF is the mean of the last 5 evaluations."""
    return (run.history.final_eval(5), table[3]["gd"], table[3]["gdpp"],
            float(escape if escape is not None else -1))


register(Claim(
    "E5", CHAPTER_GDPP, "GD++ (shared γ, η fitted by Adam) beats GD with a fitted step for K = 2, 3",
    "K=2: GD 0.157 vs GD++ 0.110; K=3: 0.131 vs 0.087 (TARGETS E5)", "L_GD++ ≤ 0.8 × L_GD for K = 2, 3",
    measure=lambda ctx: tuple((_gdpp(ctx)[K]["gd"], _gdpp(ctx)[K]["gdpp"]) for K in (2, 3)),
    judge=lambda v, ctx: all(p <= 0.8 * g for g, p in v),
    show=lambda v: "; ".join(f"K={K}: {g:.3f} vs {p:.3f}" for K, (g, p) in zip((2, 3), v))))


def _e6_score(v) -> float:
    return abs(v[0] / v[2] - 1)


register(Claim(
    "E6", CHAPTER_GDPP, "trained 3-layer recurrent LSA ≈ GD++-3, not GD-3 (escape + 3,000 steps)",
    "0.0857 vs GD++-3 0.0870 vs GD-3 0.1315 (TARGETS E6)", "L_TF < 0.9 L_GD-3 and within 10 % of L_GD++-3",
    measure=lambda ctx: e6_value(*_recurrent(ctx), _gdpp(ctx)),
    judge=lambda v, ctx: v[0] < 0.9 * v[1] and _e6_score(v) < 0.10, score=_e6_score,
    show=lambda v: f"{v[0]:.4f} vs GD++ {v[2]:.4f} vs GD {v[1]:.4f} (escape {v[3]:.0f})"))

register(Claim(
    "E7", CHAPTER_GDPP, "applying the trained shared layer 3 → 8 times keeps lowering the loss",
    "4×: 0.076, 6×: 0.065, 8×: 0.058 (TARGETS E7)", "strictly decreasing from 3 to 8 applications",
    measure=lambda ctx: tuple(gt.depth_sweep(_recurrent(ctx)[0].model, _recurrent(ctx)[0].eval_set, range(3, 9))),
    judge=lambda v, ctx: all(b < a for a, b in zip(v, v[1:])),
    show=lambda v: " → ".join(f"{x:.3f}" for x in v)))


# ---------------------------------------------------------------- chapter "Anisotropic inputs: preconditioned GD"
CHAPTER_PRECOND = "Anisotropic inputs: preconditioned GD"


def e10_value(gamma_star, gamma_mc, batch: object) -> tuple[float, float]:
    """(relative difference of Monte-Carlo and closed-form Γ*, loss ratio L(Γ*) / L(Γ_MC) on held-out tasks)."""
    losses = gt.preconditioner_losses(batch, {"star": gamma_star.float(), "mc": gamma_mc.float()})
    return float(torch.linalg.matrix_norm(gamma_mc - gamma_star) / torch.linalg.matrix_norm(gamma_star)), \
        losses["star"] / losses["mc"]


def _aniso(ctx: Context):
    def make():
        kw, cov = gt.anisotropic_setting()
        run = gt.train_anisotropic(seed=ctx.seed, eval_size=ctx.eval_size)
        star = solvers.optimal_preconditioner_gaussian(cov, N)
        return kw, cov, run, star
    return ctx.shared("anisotropic", make)


def _e10(ctx: Context) -> tuple[float, float]:
    kw, cov, run, star = _aniso(ctx)
    mc = gt.preconditioner_monte_carlo(200_000, seed=ctx.seed + 50, **kw)
    return e10_value(star, mc, run.eval_set)


def e11_value(run: gt.TrainedLSA, losses: dict) -> tuple[float, float, float]:
    """(L_TF (mean of the last 5 evaluations), L of one step with Γ*, L of GD at its best η) on the eval tasks."""
    return run.history.final_eval(5), losses["star"], losses["gd_best"]


register(Claim(
    "E10", CHAPTER_PRECOND, "closed-form optimal preconditioner Γ* = ((1+1/N)Σ + trΣ/N·I)⁻¹ (Gaussian inputs)",
    "Ahn et al. 2023; Mahankali et al. 2023", "Monte-Carlo Γ (200k tasks) within 10 %; L(Γ*) ≤ 1.002 L(Γ_MC)",
    measure=_e10, judge=lambda v, ctx: v[0] < 0.10 and v[1] <= 1.002,
    show=lambda v: f"MC rel. diff {v[0]:.3f}, loss ratio {v[1]:.4f}"))

register(Claim(
    "E11", CHAPTER_PRECOND, "one trained layer on anisotropic inputs ≈ preconditioned GD-1, beating plain GD-1",
    "the optimal one-layer learner is preconditioned GD (Ahn et al. 2023)",
    "L_TF ≤ 1.02 × L(Γ*) and L_TF < 0.95 × L(GD, best η)",
    measure=lambda ctx: e11_value(_aniso(ctx)[2], gt.preconditioner_losses(_aniso(ctx)[2].eval_set,
                                                                           {"star": _aniso(ctx)[3].float()})),
    judge=lambda v, ctx: v[0] <= 1.02 * v[1] and v[0] < 0.95 * v[2],
    show=lambda v: f"TF {v[0]:.4f} vs Γ* {v[1]:.4f} vs GD {v[2]:.4f}"))


# ------------------------------------------------ chapter "Non-linear regression: GD on learned features"
CHAPTER_SINE = "Non-linear regression: GD on learned features"


def e8_value(run_tf: gt.TrainedLSA, run_gd: gt.TrainedLSA) -> tuple[float, float]:
    """(L_TF, L_GD-on-features) on the same evaluation tasks, each the mean of the last 5 evaluations."""
    return run_tf.history.final_eval(5), run_gd.history.final_eval(5)


def _sine(ctx: Context, kind: str, tied: bool) -> gt.TrainedLSA:
    return ctx.shared(f"sine_{kind}_{tied}", lambda: gt.train_sine(kind, seed=ctx.seed, tied=tied, scale=ctx.scale,
                                                                   eval_size=ctx.eval_size, device=ctx.device))


def _e8_ratio(v) -> float:
    return v[0] / v[1]


register(Claim(
    "E8a", CHAPTER_SINE, "Proposition 2: features + Proposition 1's layer = one GD step on the features' output layer",
    "exact (von Oswald et al. 2022, Prop. 2)", "float64 relative error < 1e-10",
    measure=lambda ctx: gt.proposition2_errors(seed=ctx.seed),
    judge=lambda v, ctx: v < 1e-10, show=lambda v: f"max rel. error {v:.1e}", exact=True))

register(Claim(
    "E8", CHAPTER_SINE, "sine tasks, official generator (a, φ tied): MLP + 1 LSA layer ≈ MLP + one GD step",
    "TF matches meta-learned MLP + GD on its output layer (TARGETS E8)", "L_TF ≤ 1.1 × L_GD-on-features",
    measure=lambda ctx: e8_value(_sine(ctx, "lsa", True), _sine(ctx, "gd", True)),
    judge=lambda v, ctx: _e8_ratio(v) <= 1.1, score=_e8_ratio,
    show=lambda v: f"TF {v[0]:.4f} vs GD {v[1]:.4f} (×{v[0] / v[1]:.2f})"))

register(Claim(
    "E8u", CHAPTER_SINE, "sine tasks as the paper states them (a, φ independent): MLP + 1 LSA layer ≈ MLP + GD",
    "TF matches GD-on-features (paper, Sec. 4)", "L_TF ≤ 1.1 × L_GD-on-features",
    measure=lambda ctx: e8_value(_sine(ctx, "lsa", False), _sine(ctx, "gd", False)),
    judge=lambda v, ctx: _e8_ratio(v) <= 1.1, score=_e8_ratio,
    show=lambda v: f"TF {v[0]:.4f} vs GD {v[1]:.4f} (×{v[0] / v[1]:.2f})",
    gap=KnownGap(2.2, "seed-dependent: seeds 0 and 1 settle on a rank-one route (the target through the keys) "
                      "and stall at 1.9-2.0 × GD; seed 2 reaches GD (0.98 ×)")))


# ---------------------------------------------------------------- chapter "Standard tokens: copy, then descend"
CHAPTER_COPY = "Standard tokens: copy, then descend"


def e12b_value(run: gt.TrainedLSA) -> tuple[float, float, float, float]:
    """(L_TF, L_GD-1 at η*, best copy score of the first layer, escape step) on the run's evaluation tasks."""
    cmp = gt.compare_with_gd(run.model, run.eval_set, ETA_STAR)
    scores = gt.copy_scores(gt.copy_attention(run.model, run.eval_set))
    return (cmp["loss_tf"], cmp["loss_gd"], max(scores["y_reads_x"], scores["x_reads_y"]),
            float(run.escape if run.escape is not None else -1))


register(Claim(
    "E12a", CHAPTER_COPY, "Proposition 3: a softmax copy layer + Proposition 1's layer = one GD step (standard tokens)",
    "exact as the softmax sharpens (von Oswald et al. 2022, Prop. 3)", "float64 relative error < 1e-10 at β = 40",
    measure=lambda ctx: gt.copy_gd_errors([40.0], seed=ctx.seed)[40.0],
    judge=lambda v, ctx: v < 1e-10, show=lambda v: f"max rel. error {v:.1e}", exact=True))

register(Claim(
    "E12b", CHAPTER_COPY, "trained softmax + linear layers on standard tokens copy, then match GD-1",
    "the first layer learns to copy; the model reaches GD-1 (paper, Sec. 5)",
    "L_TF ≤ 1.05 × L_GD-1(η*) and copy weight ≥ 0.5 (uniform: 0.05)",
    measure=lambda ctx: e12b_value(ctx.shared("standard", lambda: gt.train_standard_tokens(
        seed=ctx.seed, scale=ctx.scale, eval_size=ctx.eval_size, device=ctx.device))),
    judge=lambda v, ctx: v[0] <= 1.05 * v[1] and v[2] >= 0.5,
    show=lambda v: f"TF {v[0]:.4f} vs GD-1 {v[1]:.4f}, copy {v[2]:.2f} (escape {v[3]:.0f})"))
