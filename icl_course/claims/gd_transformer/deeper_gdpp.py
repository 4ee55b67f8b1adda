"""Claims of the chapter "Deeper layers learn GD++": E5–E7."""

from __future__ import annotations

from ... import gd_transformer as gt
from ... import tasks
from ...reproduce import Claim, Context, register
from ._common import DX, E6Value, N, e5_value, e6_value, e7_value

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
    tolerance="L_TF < 0.9 L_GD-3 and within 10 % of L_GD++-3; its implicit model closer to GD++-3's than to GD-3's "
              "(model cos, the paper's Fig. 3 alignment)",
    measure=lambda ctx: e6_value(*_recurrent(ctx), _gdpp(ctx)),
    judge=lambda v, ctx: v.loss_tf < 0.9 * v.loss_gd3 and _e6_score(v) < 0.10 and v.cos_gdpp3 > v.cos_gd3,
    score=_e6_score,
    show=lambda v: (f"{v.loss_tf:.4f} vs GD++ {v.loss_gdpp3:.4f} vs GD {v.loss_gd3:.4f} (escape {v.escape:.0f}); "
                    f"model cos with GD++ {v.cos_gdpp3:.3f}, with GD {v.cos_gd3:.3f}")))

register(Claim(
    id="E7", chapter=CHAPTER_GDPP, claim="applying the trained shared layer 3 → 8 times keeps lowering the loss",
    reference="more iterations keep improving (official notebook's recurrent model); course run: 4×: 0.076, "
              "6×: 0.065, 8×: 0.058",
    tolerance="strictly decreasing from 3 to 8 applications",
    measure=lambda ctx: e7_value(gt.depth_sweep(_recurrent(ctx)[0].model, _recurrent(ctx)[0].eval_set, range(1, 9))),
    judge=lambda v, ctx: all(b < a for a, b in zip(v, v[1:])),
    show=lambda v: " → ".join(f"{x:.3f}" for x in v)))
