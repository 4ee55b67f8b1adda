"""Part IV claims of chapter "Deeper layers: preconditioned multi-step GD": M7, M10 and M11."""

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
    """Held-out probe R², averaged over positions ``t ≥ 15``, per read-out point (input, after layer 1, …)."""

    next: tuple[float, ...]
    preconditioned: tuple[float, ...]


def m7_value(scores: mesa.ProbeScores) -> M7Value:
    """The probe R² of :func:`mesa.probe_scores` averaged over positions ``t ≥ 15``."""
    mean = lambda r: tuple(float(x) for x in r[:, MIN_T - 1:].mean(1))
    return M7Value(mean(scores.next), mean(scores.preconditioned))


def _runs(ctx: Context) -> dict[int, train.TrainedRun]:
    return ctx.shared("mesa_deep_runs", lambda: {L: mesa.train_deep(L, seed=ctx.seed, scale=ctx.scale,
                                                                    device=ctx.device)
                                                 for L in mesa.DEEPER.pick(ctx.scale).depths})


def _fit_batch(ctx: Context) -> tasks.DynamicsBatch:
    return ctx.shared("mesa_fit_batch", lambda: mesa.dynamics_eval_set(500, seed=ctx.seed + 3))


def _curve(model: torch.nn.Module, ctx: Context) -> torch.Tensor:
    return mesa.per_step_loss(mesa.model_predictions(model.to("cpu"), eval_set(ctx)), eval_set(ctx).targets)


def _m11(ctx: Context) -> mesa.DepthVsSteps:
    ev = eval_set(ctx)
    gd = {K: mesa.per_step_loss(mesa.gd_steps_predict(ev.inputs.double(), mesa.fit_gd_steps(ev, K).lrs),
                                ev.targets.double()) for K in STEPS}  # steps fitted on the scored sequences
    return mesa.depth_vs_steps({L: _curve(run.model, ctx) for L, run in _runs(ctx).items()}, gd,
                               baselines(ctx)["ridge, pairs j ≤ t"])


def _deepest(ctx: Context) -> torch.nn.Module:
    runs = _runs(ctx)
    return runs[max(runs)].model.to("cpu")


register(Claim(
    id="M11", chapter=CHAPTER,
    claim="trained 2- and 4-layer linear attention beat as many GD steps with the best step sizes, and depth helps",
    reference="deeper linear models implement preconditioned multi-step GD (von Oswald et al. 2023); the K-step GD "
              "references are closed forms with K step sizes fitted on the very sequences they are scored on "
              "(mesa.fit_gd_steps): the most favourable setting for GD",
    tolerance="L layers below GD-L for L = 2 and 4; 4 layers below 2 layers below GD-1; all above ridge (j ≤ t)",
    measure=_m11,
    judge=lambda v, ctx: v.trained[2] < v.gd[2] and v.trained[4] < v.gd[4]
    and v.ridge < v.trained[4] < v.trained[2] < v.gd[1],
    show=lambda v: "trained " + ", ".join(f"{L}L {x:.3f}" for L, x in v.trained.items()) + "; GD "
                   + ", ".join(f"{K} {x:.3f}" for K, x in v.gd.items()) + f"; ridge {v.ridge:.3f}"))

register(Claim(
    id="M10", chapter=CHAPTER,
    claim="the deepest trained model's weight products are nearly block-scaled identities, and moving them all the "
          "way to RevAlg-d's costs nothing",
    reference="RevAlg-d: the trained weights' diagonal block means (official four_head_diags_multilayer); "
              "interpolating to it is almost lossless (von Oswald et al. 2023)",
    tolerance="RevAlg-d's loss within 3 % of the trained model's; no point of the path (α = 0, ¼, ½, ¾, 1) more than "
              "2 % above the worse end; every head's products keep ≥ 30 % of their energy on block diagonals "
              "(unstructured weights: 10 %)",
    measure=lambda ctx: mesa.deep_vs_revalg(_deepest(ctx), eval_set(ctx), [0, 0.25, 0.5, 0.75, 1]),
    judge=lambda v, ctx: abs(v.revalg / v.trained - 1) <= 0.03 and v.path_max <= 1.02 * max(v.trained, v.revalg)
    and v.structure_min >= 0.3,
    show=lambda v: f"trained {v.trained:.4f}, RevAlg-d {v.revalg:.4f}, path max {v.path_max:.4f}; block-diagonal "
                   f"energy ≥ {v.structure_min:.2f}"))

register(Claim(
    id="M7", chapter=CHAPTER,
    claim="linear probes of the deepest model recover s_{t+1} and the preconditioned input (Σ s sᵀ + λI)⁻¹ s_t "
          "better with depth",
    reference="the probes improve with depth (von Oswald et al. 2023; official probe_layers.py: least squares, "
              "outlier sequences removed, λ = 0.001)",
    tolerance="held-out R² (t ≥ 15) of both probes higher after the last layer than at the input, by ≥ 0.5 for "
              "s_{t+1} and ≥ 0.1 for the preconditioned input; the s_{t+1} probe never drops by more than 0.02 "
              "from one layer to the next",
    measure=lambda ctx: m7_value(mesa.probe_scores(_deepest(ctx), _fit_batch(ctx), eval_set(ctx))),
    judge=lambda v, ctx: v.next[-1] >= v.next[0] + 0.5 and v.preconditioned[-1] >= v.preconditioned[0] + 0.1
    and all(b >= a - 0.02 for a, b in zip(v.next, v.next[1:])),
    show=lambda v: "s_{t+1}: " + " → ".join(f"{x:.2f}" for x in v.next) + "; preconditioned: "
                   + " → ".join(f"{x:.2f}" for x in v.preconditioned)))


__all__ = ["M7Value", "m7_value", "STEPS", "MIN_T"]
