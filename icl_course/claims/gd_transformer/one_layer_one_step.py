"""Claims of the chapter "One layer, one step": E1–E4, E3b, E13, E14 and E9 (the official implementation)."""

from __future__ import annotations

from ... import gd_transformer as gt
from ... import solvers, tasks, train
from ...reproduce import Claim, Context, KnownGap, register
from ._common import (
    CHAPTER,
    DX,
    ETA_STAR,
    GD1_LOSS,
    N,
    e2a_value,
    e2b_tolerance,
    e2b_value,
    e2c_value,
    e2d_value,
    e3_value,
    e3b_value,
    e4_value,
    e13_value,
    e14_passes,
    e14_value,
)


def _trained(ctx: Context) -> train.TrainedRun:
    return ctx.shared("one_layer", lambda: gt.train_lsa(seed=ctx.seed, steps=gt.ONE_LAYER_STEPS,
                                                        eval_size=ctx.eval_size))


def _compare(ctx: Context) -> dict:
    return ctx.shared("compare", lambda: gt.compare_with_gd(_trained(ctx).model, _trained(ctx).eval_set,
                                                            solvers.optimal_gd_lr(DX, N)))


register(Claim(
    id="E1", chapter=CHAPTER, claim="Proposition 1: K constructed LSA layers = K GD steps (K = 1..5, random shapes)",
    reference="exact (von Oswald et al. 2022, Prop. 1)", tolerance="float64 relative error < 1e-10",
    measure=lambda ctx: max(gt.proposition1_errors(5, seed=ctx.seed).values()),
    judge=lambda v, ctx: v < 1e-10, show=lambda v: f"max rel. error {v:.1e}", exact=True))

register(Claim(
    id="E2a", chapter=CHAPTER, claim="optimal one-step GD step size η* (closed form; Monte-Carlo check)",
    reference="200/33 ≈ 6.0606 (closed form E tr Σ̂ / E tr Σ̂² for the official task distribution)",
    tolerance="closed form rel. < 1e-12; Monte Carlo within 4 SE",
    measure=lambda ctx: e2a_value(*gt.optimal_lr_monte_carlo(50_000 if ctx.quick else 200_000, seed=ctx.seed)),
    judge=lambda v, ctx: abs(v.closed_form / ETA_STAR - 1) < 1e-12
    and abs(v.monte_carlo - v.closed_form) < 4 * v.monte_carlo_se,
    show=lambda v: f"{v.closed_form:.4f} (MC {v.monte_carlo:.3f} ± {v.monte_carlo_se:.3f})", exact=True))

register(Claim(
    id="E2b", chapter=CHAPTER, claim="one-step GD loss at η*: population closed form and eval-set mean",
    reference="0.2062, zero predictor 0.4167 (closed form, solvers.gd_one_step_loss)",
    tolerance="closed form ±5e-5; eval mean ±0.012·√(10k/n)",
    measure=lambda ctx: e2b_value(_compare(ctx), _trained(ctx).eval_set.x.shape[0]),
    judge=lambda v, ctx: abs(v.population - GD1_LOSS) < 5e-5 and abs(v.eval_mean - GD1_LOSS) < e2b_tolerance(v.n_tasks),
    show=lambda v: f"{v.population:.4f} (eval {v.eval_mean:.4f}, n={v.n_tasks})"))

register(Claim(
    id="E2c", chapter=CHAPTER, claim="trained 1-layer LSA reaches GD-1's loss on the same eval tasks",
    reference="trained LSA ≈ GD-1 (von Oswald et al. 2022, Fig. 2 left)", tolerance="|L_TF / L_GD − 1| ≤ 3 %",
    measure=lambda ctx: e2c_value(_compare(ctx)),
    judge=lambda v, ctx: abs(v - 1) <= 0.03, show=lambda v: f"L_TF/L_GD = {v:.4f}"))

register(Claim(
    id="E2d", chapter=CHAPTER, claim="trained LSA's implicit model = GD's: model cos and η_eff/N from the weights",
    reference="model cos ≈ 1 (von Oswald et al. 2022, Fig. 2 centre-left); η*/N = 0.606 (closed form)",
    tolerance="cos ≥ 0.995 and η_eff/N within 5 % of 0.606",
    measure=lambda ctx: e2d_value(_compare(ctx), _trained(ctx)),
    judge=lambda v, ctx: v.model_cos >= 0.995 and abs(v.lr_over_n / (ETA_STAR / N) - 1) < 0.05,
    show=lambda v: f"cos {v.model_cos:.4f}, η_eff/N {v.lr_over_n:.4f}"))


def _ood(ctx: Context) -> dict[str, float]:
    layer = _trained(ctx).layer
    rows = gt.ood_sweep(_trained(ctx).model, {"eff": N * gt.effective_lr_over_n(layer, DX), "star": ETA_STAR},
                        n_tasks=ctx.eval_size, seed=ctx.seed)
    return gt.ood_log_ratios(rows)


register(Claim(
    id="E3", chapter=CHAPTER,
    claim="out of distribution (input range r ≤ 2, teacher scale ≤ 2) the trained LSA tracks GD",
    reference="TF tracks GD out of distribution (von Oswald et al. 2022, Fig. 2 right); GD-1 at η*: r=0.5 → 0.0812 "
              "… r=2 → 8.4007 (closed form)",
    tolerance="max |log L_TF/L_GD| < 0.05 (GD at η_eff), < 0.15 (at η*)",
    measure=lambda ctx: e3_value(_ood(ctx)),
    judge=lambda v, ctx: v.at_eta_eff < 0.05 and v.at_eta_star < 0.15,
    show=lambda v: f"{v.at_eta_eff:.4f} / {v.at_eta_star:.4f}"))


def _other(ctx: Context) -> dict[str, dict[str, float]]:
    layer = _trained(ctx).layer
    rows = gt.other_distributions_sweep(_trained(ctx).model, {"eff": N * gt.effective_lr_over_n(layer, DX),
                                                              "star": ETA_STAR}, n_tasks=ctx.eval_size, seed=ctx.seed)
    return {d: gt.ood_log_ratios([r for r in rows if r["dist"] == d])
            for d in (*gt.OTHER_DISTRIBUTIONS, "mixture")}


register(Claim(
    id="E3b", chapter=CHAPTER,
    claim="on normal, exponential and Laplace inputs (and their mixture), r = 0.5 … 5, the trained LSA tracks GD-1",
    reference="TF tracks GD on other input distributions (von Oswald et al. 2022, Fig. 6 right; official "
              "create_ood_data: context scaled to Frobenius norm r)",
    tolerance="max |log L_TF/L_GD(η_eff)| < 0.05 (E3's bound)",
    measure=lambda ctx: e3b_value(_other(ctx)),
    judge=lambda v, ctx: v < 0.05,
    show=lambda v: f"{v:.4f}"))


def _rollout(ctx: Context) -> dict[float, float]:
    ev = tasks.regression_eval_set(min(ctx.eval_size, 2_000), N, DX, seed=ctx.seed + 2)
    gaps = {}
    for lam in (0.25, 0.5, 0.75):
        r = gt.rollout_losses(_trained(ctx).model, ev, ETA_STAR, steps=50, damping=lam)
        gaps[lam] = max(abs(t / g - 1) for t, g in zip(r["tf"], r["gd"]))
    return gaps


register(Claim(
    id="E13", chapter=CHAPTER,
    claim="the trained layer applied 50 times with damping λ ≤ 0.75 follows GD at λη* application by application",
    reference="repeated 1-layer TF with dampening 0.75 ≈ GD at 0.75·η* over 50 steps (von Oswald et al. 2022, Fig. 1 "
              "right, App. A.6, Fig. 10; official y_update roll-out)",
    tolerance="|L_TF(k)/L_GD(k) − 1| < 5 % for every k ≤ 50 and λ ∈ {0.25, 0.5, 0.75} (a judgment bound: the "
              "paper states none; the gap of one application compounds over the roll-out)",
    measure=lambda ctx: e13_value(_rollout(ctx)),
    judge=lambda v, ctx: v.largest_gap < 0.05, score=lambda v: v.largest_gap,
    show=lambda v: f"largest gap {v.largest_gap:.1%} (λ = 0.75: {v.at_075:.1%})",
    gap=KnownGap(0.052, "seed-dependent: over 50 applications the trained layer leaves GD by 1.1-5.2 % on seeds "
                        "0-4 (5.2 % on seed 1); against GD at the layer's own step λη_eff the gap is the same "
                        "(5.1 % on seed 1), so it is the layer's weights outside Proposition 1's pattern compounding "
                        "over the roll-out, not its step size; Reproducibility page")))


register(Claim(
    id="E14", chapter=CHAPTER,
    claim="trained on a fixed set of tasks, the layer memorises 128 and learns GD-1 from 8,192",
    reference="the fixed-training-set experiment (von Oswald et al. 2022, App. A.12, Fig. 16: 128 … 8,192 tasks); "
              "the course's measurement in that setting, not compared with the figure's values",
    tolerance="128 tasks: own-task loss < 0.1 × GD-1's; fresh-task loss falling with every larger set; 8,192 tasks: "
              "within 5 % of GD-1's loss and model cos ≥ 0.98 (judgment bounds, like E13's)",
    measure=lambda ctx: e14_value(ctx.shared("fixed_tasks", lambda: gt.fixed_task_sweep(seed=ctx.seed))),
    judge=lambda v, ctx: e14_passes(v),
    show=lambda v: (f"8,192: {v.ratio_largest:.3f} × GD-1, cos {v.cos_largest:.3f} (fresh control "
                    f"{v.ratio_control:.3f}); 128: own {v.memorised_over_gd:.3f} × GD-1; monotone {v.monotone}; "
                    f"peak {v.peak_loss:.2f} at {v.peak_tasks:.0f}")))


def _interp(ctx: Context) -> float:
    t = _trained(ctx)
    return e4_value(gt.interpolation_losses(t.layer, t.eval_set, ETA_STAR / N, (0.0, 0.5, 1.0)))


register(Claim(
    id="E4", chapter=CHAPTER, claim="the 50/50 mix of trained and constructed weight products keeps the loss",
    reference="loss of the mix ≈ loss of either end (von Oswald et al. 2022, Fig. 2 centre-right)",
    tolerance="within 2 % of both ends",
    measure=_interp, judge=lambda v, ctx: v < 0.02, show=lambda v: f"max rel. change {v:.4f}"))

register(Claim(
    id="E9", chapter=CHAPTER,
    claim="training loop and forward pass reproduce the official implementation step for step",
    reference="golden data of the official JAX code (40 steps; trained model; GD), icl_course/data",
    tolerance="every relative error ≤ 1e-5",
    measure=lambda ctx: max(gt.golden_agreement().values()),
    judge=lambda v, ctx: v <= 1e-5, show=lambda v: f"max rel. error {v:.1e}", exact=True))
