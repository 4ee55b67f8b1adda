"""Part I claims of chapter "Learning to learn in context": B1, B2."""

from __future__ import annotations

from ...basics import GARG, bayes_comparison, prefix_errors, train_regression_gpt
from ...reproduce import Claim, Context, KnownGap, register

CHAPTER = "Learning to learn in context"
__all__: list[str] = []


def _comparison(ctx: Context):
    """One transformer trained per run (weights ``ctx.seed``); ``--quick`` halves the evaluation tasks only."""
    def make():
        s = GARG.pick(ctx.scale)
        run = train_regression_gpt(s, seed=ctx.seed, progress=False)
        errors = prefix_errors(s, run.model, seed=ctx.seed, n_tasks=s.n_eval // 2 if ctx.quick else None)
        return bayes_comparison(errors, s.ridge_margin)
    return ctx.shared("regression_gpt", make)


def _show(v) -> str:
    worst = int(v.excess.argmax())
    return (f"excess over ridge {100 * float(v.excess.min()):+.0f} … {100 * float(v.excess.max()):+.0f} % "
            f"(worst at N = {int(v.n[worst])}: {float(v.transformer[worst]):.3f} vs {float(v.ridge[worst]):.3f} "
            f"± {100 * float(v.excess_sem[worst]):.0f} %)")


register(Claim(
    id="B1", chapter=CHAPTER,
    claim="a GPT trained from scratch on noisy linear regression (d = 4; one token per demonstration) predicts about "
          "as well as the Bayes-optimal ridge, at every N ≥ 3",
    reference="Garg et al. (2022), Fig. 2: the trained transformer (their interleaved tokens, noise-free task) matches "
              "least squares, the optimum of their task; with label noise the optimum is ridge with λ = σ²/s²",
    tolerance=f"error/d ≤ ridge's × (1 + {GARG.cpu.ridge_margin:g}) at every N ≥ 3; the margin is about 2.5 × the "
              "between-seed standard deviation of the excess (0.01–0.08 per N, mean 0.04, model seeds 0, 1, 2)",
    measure=_comparison,
    judge=lambda v, ctx: v.near_bayes,
    score=lambda v: float(v.excess.max()),
    gap=KnownGap(0.65, "not reached with this model and budget (a 2-block GPT of width 64 trained for 3,000 Adam "
                       "steps, about a minute of CPU, against Garg et al.'s 12 blocks of width 256 and 500,000 steps; "
                       "size and length are not separated here): at its worst N the transformer is 36 %, 39 % and "
                       "50 % above ridge on model seeds 0, 1, 2 (--quick: 39–46 %); the registered value is the worst "
                       "seed plus twice the largest between-seed SD (0.08), so only a clear regression reads as "
                       "FAIL. It beats 3-NN and averaging everywhere (B2)"),
    show=_show))

register(Claim(
    id="B2", chapter=CHAPTER,
    claim="the trained GPT beats 3-nearest-neighbours and averaging at every N ≥ 3",
    reference="Garg et al. (2022), Fig. 2: the transformer (their interleaved tokens, noise-free task) far below "
              "3-NN and averaging",
    tolerance="error/d strictly below both at every N ≥ 3",
    measure=_comparison,
    judge=lambda v, ctx: v.beats_baselines,
    show=lambda v: f"largest ratio to the better of 3-NN and averaging: "
                   f"{float((v.transformer / v.knn.minimum(v.averaging)).max()):.2f}"))
