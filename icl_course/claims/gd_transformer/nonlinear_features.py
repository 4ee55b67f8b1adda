"""Claims of the chapter "Non-linear regression: GD on learned features": E8a, E8, E8u."""

from __future__ import annotations

import math

from ... import gd_transformer as gt
from ... import train
from ...reproduce import Claim, Context, KnownGap, register
from ._common import E8Value, e8_value

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
    claim="sine tasks as the paper's text draws a and φ (independent; amplitude range of the code): MLP + 1 LSA "
          "layer ≈ MLP + GD",
    reference="TF matches GD-on-features (von Oswald et al. 2022, Sec. 3 and App. A.7)",
    tolerance="L_TF ≤ 1.1 × L_GD-on-features; L_GD-on-features ≤ 2 × oracle",
    measure=lambda ctx: e8_value(_sine(ctx, "lsa", False), _sine(ctx, "gd", False)),
    judge=lambda v, ctx: _e8_ratio(v) <= 1.1, score=_e8_ratio, show=_e8_show,
    gap=KnownGap(2.2, "seed-dependent: seeds 0, 1 and 3 settle on a rank-one route (the target through the keys) "
                      "and stall at 1.91-1.94 × GD; seeds 2 and 4 reach GD (0.97 ×, target-sensitivity cosine 0.99). "
                      "Not removed by the official joint (x, y) embedding (course initialisation, 5,000 steps): "
                      "ratio 0.93-1.88, cosine 0.53-0.99 over the same seeds; Reproducibility page")))
