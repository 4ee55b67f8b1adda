"""Part IV claims of chapter "Deeper layers: preconditioned multi-step GD": M19, M11, M10 and M7."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ... import mesa, tasks, train
from ...reproduce import Claim, Context, register
from ._common import baselines, eval_set

CHAPTER = "Deeper layers: preconditioned multi-step GD"
STEPS = (1, 2, 4, 8)  # the K of the K-step GD references
MIN_T = 15  # probes are averaged over positions t ≥ 15 (once the keys' Gram matrix has full rank and settled)


class M7Value(NamedTuple):
    """Held-out probe R², averaged over positions ``t ≥ 15``, per read-out point (input, after layer 1, …), and the
    reference level of the preconditioned-input probe: the token plus two GD steps' own preconditioned query."""

    next: tuple[float, ...]
    preconditioned: tuple[float, ...]
    gd2_reference: float


def m7_value(scores: mesa.ProbeScores, gd2_reference: torch.Tensor) -> M7Value:
    """The probe R² of :func:`mesa.probe_scores` and of :func:`mesa.gd_query_probe` (GD-2) averaged over positions
    ``t ≥ 15``."""
    mean = lambda r: tuple(float(x) for x in r[:, MIN_T - 1:].mean(1))
    return M7Value(mean(scores.next), mean(scores.preconditioned), float(gd2_reference[MIN_T - 1:].mean()))


def construction_error_gd2(seed: int = 0) -> float:
    """Largest float64 relative error of :func:`mesa.constructed_gd2_model` against two GD steps, over three
    step-size pairs."""
    from ... import metrics, runtime

    b = tasks.sample_linear_dynamics(8, 30, mesa.DYNAMICS.dim, generator=runtime.generator(seed), dtype=torch.float64)
    errors = []
    for lrs in ((0.03, 0.03), (0.013, 0.049), (0.1, 0.02)):
        model = mesa.constructed_gd2_model(*lrs, dtype=torch.float64)
        pred = mesa.model_predictions(model, b)
        errors.append(metrics.relative_error(pred, mesa.gd_steps_predict(b.inputs, list(lrs))))
    return max(errors)


def _runs(ctx: Context) -> dict[int, train.TrainedRun]:
    return ctx.shared("mesa_deep_runs", lambda: {L: mesa.train_deep(L, seed=ctx.seed, scale=ctx.scale,
                                                                    device=ctx.device)
                                                 for L in mesa.DEEPER.pick(ctx.scale).depths})


def _fit_batch(ctx: Context) -> tasks.DynamicsBatch:
    return ctx.shared("mesa_fit_batch", lambda: mesa.dynamics_eval_set(500, seed=ctx.seed + 3))


def _curve(model: torch.nn.Module, ctx: Context) -> torch.Tensor:
    return mesa.per_step_loss(mesa.model_predictions(model.to("cpu"), eval_set(ctx)), eval_set(ctx).targets)


def _fits(ctx: Context) -> dict[tuple[int, bool], mesa.FittedSteps]:
    """K fitted step sizes per K and normalisation, on the very sequences scored."""
    return ctx.shared("mesa_gd_fits", lambda: {(K, norm): mesa.fit_gd_steps(eval_set(ctx), K, normalize=norm)
                                               for K in STEPS for norm in (False, True)})


def _m11(ctx: Context) -> mesa.DepthVsSteps:
    ev = eval_set(ctx)
    s, y = ev.inputs.double(), ev.targets.double()
    gd = {norm: {K: mesa.per_step_loss(mesa.gd_steps_predict(s, _fits(ctx)[K, norm].lrs, normalize=norm), y)
                 for K in STEPS} for norm in (False, True)}
    return mesa.depth_vs_steps({L: _curve(run.model, ctx) for L, run in _runs(ctx).items()}, gd[False], gd[True],
                               baselines(ctx)["ridge, pairs j ≤ t"])


def _m7(ctx: Context) -> M7Value:
    ref = mesa.gd_query_probe(_fit_batch(ctx), eval_set(ctx), _fits(ctx)[2, False].lrs)
    return m7_value(mesa.probe_scores(_deepest(ctx), _fit_batch(ctx), eval_set(ctx)), ref)


def _deepest(ctx: Context) -> torch.nn.Module:
    runs = _runs(ctx)
    return runs[max(runs)].model.to("cpu")


register(Claim(
    id="M19", chapter=CHAPTER,
    claim="two causal linear-attention layers with hand-built weights = two GD steps on L_t (the first "
          "preconditions the query)",
    reference="exact: W_2 = C_t (η₁ + η₂)(I − γ A_t), γ = η₁η₂/(η₁ + η₂) (closed form, mesa.constructed_gd2_model)",
    tolerance="float64 relative error < 1e-10 on three step-size pairs",
    measure=lambda ctx: construction_error_gd2(seed=ctx.seed),
    judge=lambda v, ctx: v < 1e-10, show=lambda v: f"rel. error {v:.1e}", exact=True))

register(Claim(
    id="M11", chapter=CHAPTER,
    claim="trained 2- and 4-layer linear attention beat as many GD steps with position-independent step sizes; GD "
          "whose steps are divided by each position's λ_max(A_t) beats them with as few",
    reference="deeper linear models implement preconditioned multi-step GD (von Oswald et al. 2023); the GD references "
              "are closed forms with K step sizes fitted on the very sequences scored (mesa.fit_gd_steps)",
    tolerance="for L = 2 and 4: normalised GD-L < L layers < GD-L; ridge (j ≤ t) < 4 layers < 2 layers < GD-1",
    measure=_m11,
    judge=lambda v, ctx: all(v.gd_normalized[L] < v.trained[L] < v.gd[L] for L in (2, 4))
    and v.ridge < v.trained[4] < v.trained[2] < v.gd[1],
    show=lambda v: "trained " + ", ".join(f"{L}L {x:.3f}" for L, x in v.trained.items()) + "; GD "
                   + ", ".join(f"{K}: {x:.3f}" for K, x in v.gd.items()) + "; normalised GD "
                   + ", ".join(f"{K}: {x:.3f}" for K, x in v.gd_normalized.items()) + f"; ridge {v.ridge:.3f}"))

register(Claim(
    id="M10", chapter=CHAPTER,
    claim="the deepest trained model's weight products are mostly block-scaled identities, and moving them all the "
          "way to RevAlg-d's costs almost nothing",
    reference="RevAlg-d: the trained weights' diagonal block means (official four_head_diags_multilayer); "
              "interpolating to it is almost lossless (von Oswald et al. 2023)",
    tolerance="RevAlg-d's loss within 3 % of the trained model's; no point of the path (α = 0, ¼, ½, ¾, 1) more than "
              "2 % above the worse end; on average ≥ 75 % of a head product's energy on block diagonals "
              "(unstructured weights: 10 %)",
    measure=lambda ctx: mesa.deep_vs_revalg(_deepest(ctx), eval_set(ctx), [0, 0.25, 0.5, 0.75, 1]),
    judge=lambda v, ctx: abs(v.revalg / v.trained - 1) <= 0.03 and v.path_max <= 1.02 * max(v.trained, v.revalg)
    and v.structure_mean >= 0.75,
    show=lambda v: f"trained {v.trained:.4f}, RevAlg-d {v.revalg:.4f}, path max {v.path_max:.4f}; block-diagonal "
                   f"energy mean {v.structure_mean:.2f}, min {v.structure_min:.2f}"))

register(Claim(
    id="M7", chapter=CHAPTER,
    claim="linear probes of the deepest model recover s_{t+1} better with depth, and the preconditioned input "
          "(Σ s sᵀ + λI)⁻¹ s_t better than two GD steps hold it",
    reference="the probes improve with depth (von Oswald et al. 2023; official probe_layers.py: least squares, "
              "outlier sequences removed, λ = 0.001); the reference level reads two GD steps' own preconditioned "
              "query (mesa.gd_query_probe)",
    tolerance="held-out R² (t ≥ 15): s_{t+1} after the last layer ≥ input + 0.5, never dropping by more than 0.02 "
              "from one layer to the next; the preconditioned input after the last layer above the GD-2 reference "
              "and above the input",
    measure=_m7,
    judge=lambda v, ctx: v.next[-1] >= v.next[0] + 0.5 and all(b >= a - 0.02 for a, b in zip(v.next, v.next[1:]))
    and v.preconditioned[-1] > v.gd2_reference and v.preconditioned[-1] > v.preconditioned[0],
    show=lambda v: "s_{t+1}: " + " → ".join(f"{x:.2f}" for x in v.next) + "; preconditioned: "
                   + " → ".join(f"{x:.2f}" for x in v.preconditioned) + f" (GD-2 reference {v.gd2_reference:.2f})"))


__all__ = ["M7Value", "m7_value", "STEPS", "MIN_T", "construction_error_gd2"]
