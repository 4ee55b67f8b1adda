"""Part III claims: E1–E8 and E10–E12 of the course's targets, E9 the agreement with the official implementation.

Each claim's value is built by one ``e*_value`` function that the chapter notebook calls too, so the registry and
the book judge the same numbers. References name the paper (von Oswald et al. 2022, its figures and appendices),
the official code, or a closed form; values marked "course run" were measured with the official settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch

from .. import gd_transformer as gt
from .. import metrics, solvers, tasks, train
from ..reproduce import Claim, Context, KnownGap, register

CHAPTER = "One layer, one step"
DX, N = gt.PAPER.dx, gt.PAPER.n_context
ETA_STAR = 200 / 33  # E tr Σ̂ / E tr Σ̂² for d = N = 10, x ~ U(-0.5, 0.5)
GD1_LOSS = 0.2062
E10_Z = 4.0  # P(max of 10 |N(0,1)| > 4) ≈ 6e-4
E2B_TOL_10K = 0.012  # ≈ 3.5 standard errors of a 10,000-task mean (SD of the mean ≈ 0.0034)


# ---------------------------------------------------------------- claim values (the notebooks call these too)
class E2aValue(NamedTuple):
    closed_form: float
    monte_carlo: float
    monte_carlo_se: float


class E2bValue(NamedTuple):
    population: float
    eval_mean: float
    n_tasks: int


class E2dValue(NamedTuple):
    model_cos: float
    lr_over_n: float


class E3Value(NamedTuple):
    at_eta_eff: float
    at_eta_star: float


class GdGdpp(NamedTuple):
    gd: float
    gdpp: float


class E6Value(NamedTuple):
    loss_tf: float
    loss_gd3: float
    loss_gdpp3: float
    escape: float


class E8Value(NamedTuple):
    loss_tf: float
    loss_gd: float
    loss_oracle: float


class E10Value(NamedTuple):
    max_z: float
    loss_ratio: float
    mc_rel_diff: float


class E11Value(NamedTuple):
    loss_tf: float
    loss_star: float
    loss_gd_best: float


class E12bValue(NamedTuple):
    loss_tf: float
    loss_gd: float
    copy: float
    escape: float
    model_cos: float


def e2a_value(eta_mc: float, eta_se: float) -> E2aValue:
    """(closed-form η*, Monte-Carlo η*, its standard error)."""
    return E2aValue(solvers.optimal_gd_lr(DX, N), eta_mc, eta_se)


def e2b_value(compare: Mapping[str, float], n_tasks: int) -> E2bValue:
    """(population loss of GD-1 at η*, its mean on the evaluation set of ``n_tasks`` tasks, n)."""
    return E2bValue(solvers.gd_one_step_loss(ETA_STAR, DX, N), compare["loss_gd"], n_tasks)


def e2c_value(compare: Mapping[str, float]) -> float:
    """``L_TF / L_GD-1`` on the same evaluation tasks."""
    return compare["loss_tf"] / compare["loss_gd"]


def e2d_value(compare: Mapping[str, float], run: train.TrainedRun) -> E2dValue:
    """(model cosine with GD-1, the step ``η_eff / N`` read off the trained layer)."""
    return E2dValue(compare["model_cos"], gt.effective_lr_over_n(run.layer, DX))


def e3_value(log_ratios: Mapping[str, float]) -> E3Value:
    """``max |log L_TF / L_GD|`` against GD at the layer's ``η_eff`` and at ``η*`` (:func:`gt.ood_log_ratios`)."""
    return E3Value(log_ratios["eff"], log_ratios["star"])


def e4_value(losses: Sequence[float]) -> float:
    """Largest relative change of the 50/50 mix's loss against either end; ``losses`` at α = 0, …, 1 (odd count)."""
    if len(losses) % 2 == 0:
        raise ValueError(f"losses must hold an odd number of α values with α = 0.5 in the middle, got {len(losses)}")
    l0, lmix, l1 = losses[0], losses[len(losses) // 2], losses[-1]
    return max(abs(lmix / l0 - 1), abs(lmix / l1 - 1))


def e5_value(table: Mapping[int, Mapping]) -> tuple[GdGdpp, GdGdpp]:
    """(GD, GD++) losses with fitted scalars for K = 2 and K = 3 (:func:`gt.gd_vs_gdpp`)."""
    return tuple(GdGdpp(table[K]["gd"], table[K]["gdpp"]) for K in (2, 3))  # type: ignore[return-value]


def e6_value(run: train.TrainedRun, escape: int | None, table: Mapping[int, Mapping]) -> E6Value:
    """(L_TF, L_GD-3, L_GD++-3, escape step); L_TF is the mean of the last 5 evaluations."""
    return E6Value(run.history.final_eval(5), table[3]["gd"], table[3]["gdpp"],
                   float(escape if escape is not None else -1))


def e7_value(depth_losses: Sequence[float]) -> tuple[float, ...]:
    """Losses of the trained shared layer applied 3, 4, …, 8 times, from a sweep over 1..8 applications."""
    return tuple(depth_losses[2:8])


def e8_value(run_tf: train.TrainedRun, run_gd: train.TrainedRun) -> E8Value:
    """(L_TF, L_GD-on-features, each the mean of the last 5 evaluations, and the oracle: one GD step on the true
    features (sin x, cos x) at its best step size) on the same evaluation tasks."""
    oracle = gt.oracle_feature_loss(run_gd.eval_set)[1]
    return E8Value(run_tf.history.final_eval(5), run_gd.history.final_eval(5), oracle)


def e10_value(gamma_star: torch.Tensor, gamma_mc: torch.Tensor, batch: object, z: torch.Tensor) -> E10Value:
    """(largest |z| of the loss gradient at Γ* (:func:`gt.preconditioner_stationarity`), loss ratio
    L(Γ*) / L(Γ_MC) on held-out tasks, relative difference of the Monte-Carlo fit Γ_MC and Γ*)."""
    losses = gt.preconditioner_losses(batch, {"star": gamma_star.float(), "mc": gamma_mc.float()})
    return E10Value(float(z.abs().max()), losses["star"] / losses["mc"], metrics.relative_error(gamma_mc, gamma_star))


def e11_value(run: train.TrainedRun, losses: Mapping[str, float]) -> E11Value:
    """(L_TF (mean of the last 5 evaluations), L of one step with Γ*, L of GD at its best η) on the eval tasks."""
    return E11Value(run.history.final_eval(5), losses["star"], losses["gd_best"])


def e12b_value(run: train.TrainedRun) -> E12bValue:
    """(L_TF, L_GD-1 at η*, best copy score of the first layer, escape step, model cosine with GD-1) on the run's
    evaluation tasks."""
    cmp = gt.compare_with_gd(run.model, run.eval_set, ETA_STAR)
    scores = gt.copy_scores(gt.copy_attention(run.model, run.eval_set))
    return E12bValue(cmp["loss_tf"], cmp["loss_gd"], max(scores["y_reads_x"], scores["x_reads_y"]),
                     float(run.escape if run.escape is not None else -1), cmp["model_cos"])


def e2b_tolerance(n_tasks: int) -> float:
    """±0.012 on 10,000 tasks, widened by the standard error's √(10,000 / n) on smaller sets."""
    return E2B_TOL_10K * math.sqrt(10_000 / n_tasks)


# ---------------------------------------------------------------- chapter "One layer, one step"
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


# ---------------------------------------------------------------- chapter "Deeper layers learn GD++"
CHAPTER_GDPP = "Deeper layers learn GD++"


def _eval_set(ctx: Context):
    return ctx.shared("deep_eval", lambda: tasks.regression_eval_set(ctx.eval_size, N, DX, seed=ctx.seed + 2))


def _gdpp(ctx: Context) -> dict:
    return ctx.shared("gd_vs_gdpp", lambda: gt.gd_vs_gdpp((2, 3), _eval_set(ctx), seed=ctx.seed))


def _recurrent(ctx: Context):
    return ctx.shared("recurrent", lambda: gt.train_recurrent(seed=ctx.seed, eval_size=ctx.eval_size))


register(Claim(
    id="E5", chapter=CHAPTER_GDPP, claim="GD++ (shared γ, η fitted by Adam) beats GD with a fitted step for K = 2, 3",
    reference="GD++ beats GD (von Oswald et al. 2022, Sec. 3, Fig. 3a); course run at the official setting: K=2: GD "
              "0.157 vs GD++ 0.110; K=3: 0.131 vs 0.087",
    tolerance="L_GD++ ≤ 0.8 × L_GD for K = 2, 3",
    measure=lambda ctx: e5_value(_gdpp(ctx)),
    judge=lambda v, ctx: all(p.gdpp <= 0.8 * p.gd for p in v),
    show=lambda v: "; ".join(f"K={K}: {p.gd:.3f} vs {p.gdpp:.3f}" for K, p in zip((2, 3), v))))


def _e6_score(v: E6Value) -> float:
    return abs(v.loss_tf / v.loss_gdpp3 - 1)


register(Claim(
    id="E6", chapter=CHAPTER_GDPP, claim="trained 3-layer recurrent LSA ≈ GD++-3, not GD-3 (escape + 3,000 steps)",
    reference="recurrent TF ≈ GD++ (von Oswald et al. 2022, Fig. 3a and Fig. 9); course run at the official "
              "setting: 0.0857 vs GD++-3 0.0870 vs GD-3 0.1315",
    tolerance="L_TF < 0.9 L_GD-3 and within 10 % of L_GD++-3",
    measure=lambda ctx: e6_value(*_recurrent(ctx), _gdpp(ctx)),
    judge=lambda v, ctx: v.loss_tf < 0.9 * v.loss_gd3 and _e6_score(v) < 0.10, score=_e6_score,
    show=lambda v: f"{v.loss_tf:.4f} vs GD++ {v.loss_gdpp3:.4f} vs GD {v.loss_gd3:.4f} (escape {v.escape:.0f})"))

register(Claim(
    id="E7", chapter=CHAPTER_GDPP, claim="applying the trained shared layer 3 → 8 times keeps lowering the loss",
    reference="more iterations keep improving (official notebook's recurrent model); course run: 4×: 0.076, "
              "6×: 0.065, 8×: 0.058",
    tolerance="strictly decreasing from 3 to 8 applications",
    measure=lambda ctx: e7_value(gt.depth_sweep(_recurrent(ctx)[0].model, _recurrent(ctx)[0].eval_set, range(1, 9))),
    judge=lambda v, ctx: all(b < a for a, b in zip(v, v[1:])),
    show=lambda v: " → ".join(f"{x:.3f}" for x in v)))


# ---------------------------------------------------------------- chapter "Anisotropic inputs: preconditioned GD"
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
    tolerance="L_TF ≤ 1.02 × L(Γ*), and L_TF below L(GD, best η) by at least half of Γ*'s own margin over it "
              "(same tasks)",
    measure=lambda ctx: e11_value(_aniso(ctx)[2], gt.preconditioner_losses(_aniso(ctx)[2].eval_set,
                                                                           {"star": _aniso(ctx)[3].float()})),
    judge=lambda v, ctx: v.loss_tf <= 1.02 * v.loss_star
    and v.loss_gd_best - v.loss_tf >= 0.5 * (v.loss_gd_best - v.loss_star),
    show=lambda v: f"TF {v.loss_tf:.4f} vs Γ* {v.loss_star:.4f} vs GD {v.loss_gd_best:.4f}"))


# ------------------------------------------------ chapter "Non-linear regression: GD on learned features"
CHAPTER_SINE = "Non-linear regression: GD on learned features"


def _sine(ctx: Context, kind: str, tied: bool) -> train.TrainedRun:
    return ctx.shared(f"sine_{kind}_{tied}", lambda: gt.train_sine(kind, seed=ctx.seed, tied=tied, scale=ctx.scale,
                                                                   eval_size=ctx.eval_size, device=ctx.device))


E8_ORACLE = 2.0
"""The GD-on-features baseline must itself have learned: its loss at most this many times the oracle's (the zero
predictor's is ~11 times)."""


def _e8_ratio(v: E8Value) -> float:
    """L_TF / L_GD, or infinity when the baseline did not learn (so that a gap cannot hide a failed baseline)."""
    return v.loss_tf / v.loss_gd if v.loss_gd <= E8_ORACLE * v.loss_oracle else math.inf


def _e8_show(v: E8Value) -> str:
    return f"TF {v.loss_tf:.4f} vs GD {v.loss_gd:.4f} (×{v.loss_tf / v.loss_gd:.2f}; oracle {v.loss_oracle:.4f})"


register(Claim(
    id="E8a", chapter=CHAPTER_SINE,
    claim="Proposition 2: features + Proposition 1's layer = one GD step on the features' output layer",
    reference="exact (von Oswald et al. 2022, Prop. 2)", tolerance="float64 relative error < 1e-10",
    measure=lambda ctx: gt.proposition2_errors(seed=ctx.seed),
    judge=lambda v, ctx: v < 1e-10, show=lambda v: f"max rel. error {v:.1e}", exact=True))

register(Claim(
    id="E8", chapter=CHAPTER_SINE,
    claim="sine tasks, official generator (a, φ tied): MLP + 1 LSA layer ≈ MLP + one GD step",
    reference="TF matches a meta-learned MLP + GD on its output layer (von Oswald et al. 2022, Sec. 3, Fig. 4)",
    tolerance="L_TF ≤ 1.1 × L_GD-on-features; L_GD-on-features ≤ 2 × oracle",
    measure=lambda ctx: e8_value(_sine(ctx, "lsa", True), _sine(ctx, "gd", True)),
    judge=lambda v, ctx: _e8_ratio(v) <= 1.1, score=_e8_ratio, show=_e8_show))

register(Claim(
    id="E8u", chapter=CHAPTER_SINE,
    claim="sine tasks as the paper states them (a, φ independent): MLP + 1 LSA layer ≈ MLP + GD",
    reference="TF matches GD-on-features (von Oswald et al. 2022, Sec. 3 and App. A.7)",
    tolerance="L_TF ≤ 1.1 × L_GD-on-features; L_GD-on-features ≤ 2 × oracle",
    measure=lambda ctx: e8_value(_sine(ctx, "lsa", False), _sine(ctx, "gd", False)),
    judge=lambda v, ctx: _e8_ratio(v) <= 1.1, score=_e8_ratio, show=_e8_show,
    gap=KnownGap(2.2, "seed-dependent: seeds 0, 1 and 3 settle on a rank-one route (the target through the keys) "
                      "and stall at 1.91-1.94 × GD; seeds 2 and 4 reach GD (0.97 ×); Reproducibility page, five "
                      "seeds")))


# ---------------------------------------------------------------- chapter "Standard tokens: copy, then descend"
CHAPTER_COPY = "Standard tokens: copy, then descend"

register(Claim(
    id="E12a", chapter=CHAPTER_COPY,
    claim="Proposition 3: a softmax copy layer + Proposition 1's layer = one GD step (standard tokens)",
    reference="exact as the softmax sharpens (von Oswald et al. 2022, Prop. 3)",
    tolerance="float64 relative error < 1e-10 at β = 40",
    measure=lambda ctx: gt.copy_gd_errors([40.0], seed=ctx.seed)[40.0],
    judge=lambda v, ctx: v < 1e-10, show=lambda v: f"max rel. error {v:.1e}", exact=True))

register(Claim(
    id="E12b", chapter=CHAPTER_COPY,
    claim="trained softmax + linear layers on standard tokens copy and pass through GD-1 (escape + 1,000 steps)",
    reference="the first layer learns to copy; the model reaches GD-1 (von Oswald et al. 2022, Sec. 4, Fig. 5)",
    tolerance="|L_TF / L_GD-1(η*) − 1| ≤ 5 %, model cos with GD-1 ≥ 0.95 and copy weight ≥ 0.5 (uniform: 0.05)",
    measure=lambda ctx: e12b_value(ctx.shared("standard", lambda: gt.train_standard_tokens(
        seed=ctx.seed, scale=ctx.scale, eval_size=ctx.eval_size, device=ctx.device))),
    judge=lambda v, ctx: abs(v.loss_tf / v.loss_gd - 1) <= 0.05 and v.model_cos >= 0.95 and v.copy >= 0.5,
    show=lambda v: f"TF {v.loss_tf:.4f} vs GD-1 {v.loss_gd:.4f}, cos {v.model_cos:.3f}, copy {v.copy:.2f} "
                   f"(escape {v.escape:.0f})"))
