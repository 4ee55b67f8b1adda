"""Claims of the chapter "Standard tokens: copy, then descend": E12a, E12b."""

from __future__ import annotations

from ... import gd_transformer as gt
from ...reproduce import Claim, register
from ._common import e12b_value

CHAPTER_COPY = "Standard tokens: copy, then descend"

register(Claim(
    id="E12a", chapter=CHAPTER_COPY,
    claim="Proposition 3 (App. A.5): a softmax layer in which each input copies the next token's label + "
          "Proposition 1's layer = one GD step (standard tokens)",
    reference="exact as the softmax sharpens (von Oswald et al. 2022, Prop. 3, App. A.5)",
    tolerance="float64 relative error < 1e-10 at β = 40",
    measure=lambda ctx: gt.copy_gd_errors([40.0], seed=ctx.seed, direction="next")[40.0],
    judge=lambda v, ctx: v < 1e-10, show=lambda v: f"max rel. error {v:.1e}", exact=True))

register(Claim(
    id="E12b", chapter=CHAPTER_COPY,
    claim="trained softmax + linear layers on standard tokens (no causal mask) copy each label into its input token "
          "and pass through GD-1 (escape + 1,000 steps)",
    reference="the first layer learns to copy from the next token; the model reaches GD-1 (von Oswald et al. 2022, "
              "Sec. 4, Fig. 5)",
    tolerance="|L_TF / L_GD-1(η*) − 1| ≤ 5 %, model cos with GD-1 ≥ 0.95 and input→next-label copy weight ≥ 0.5 "
              "(uniform: 0.05)",
    measure=lambda ctx: e12b_value(ctx.shared("standard", lambda: gt.train_standard_tokens(
        seed=ctx.seed, scale=ctx.scale, eval_size=ctx.eval_size, device=ctx.device))),
    judge=lambda v, ctx: abs(v.loss_tf / v.loss_gd - 1) <= 0.05 and v.model_cos >= 0.95 and v.copy >= 0.5,
    show=lambda v: f"TF {v.loss_tf:.4f} vs GD-1 {v.loss_gd:.4f}, cos {v.model_cos:.3f}, copy {v.copy:.2f} "
                   f"(escape {v.escape:.0f})"))
