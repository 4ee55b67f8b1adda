"""Part II claims of chapter "What the critiques found": D5b, D16 and D17."""

from __future__ import annotations

from ...meta_optimizer import order_sensitivity, relaxation_cost, summarise_lm_run, untrained_baseline
from ...reproduce import Claim, Context, register
from .real_lm import lm_run, lm_settings

CHAPTER = "What the critiques found"

__all__: list[str] = []


def _untrained(ctx: Context):
    return ctx.shared("lm_untrained", lambda: untrained_baseline(summarise_lm_run(lm_run(ctx), seed=ctx.seed),
                                                                 settings=lm_settings(ctx), demo_seed=ctx.seed,
                                                                 model_seed=ctx.seed, metric_seed=ctx.seed))


register(Claim(
    id="D5b", chapter=CHAPTER,
    claim="an untrained (randomly initialised) copy of the real LM scores a SimAOU above chance too, at least half "
          "the pretrained model's, on the same demonstrations and reviews",
    reference="Deutch et al. (2023): an untrained model scores comparably on Dai et al.'s similarity metrics",
    tolerance="untrained SimAOU ≥ 0.5 × pretrained SimAOU, and above the zero-mean baseline by > 3 standard errors "
              "(the paired difference pretrained − untrained is reported, whatever its sign)",
    measure=_untrained,
    judge=lambda v, ctx: (v.untrained.simaou_mean >= 0.5 * v.pretrained.simaou_mean
                          and v.untrained.versus_zero_mean().mean > 3 * v.untrained.versus_zero_mean().sem),
    show=lambda v: f"pretrained {v.pretrained.simaou_mean:.3f}, untrained {v.untrained.simaou_mean:.3f} "
                   f"(mismatched reviews {float(v.untrained.mismatched_examples.mean()):.3f}); "
                   f"pretrained − untrained {v.mean:+.3f} ± {v.sem:.3f}"))

register(Claim(
    id="D16", chapter=CHAPTER,
    claim="on the real LM's layers, Dai et al.'s linear relaxation is far from softmax attention: neither its output "
          "nor the demonstrations' change of it (ΔW_ICL q) points where softmax attention's does",
    reference="the relaxation drops softmax and scaling (Dai et al. 2022, §3.2); measured here, not in the paper",
    tolerance="mean over layers of the output cosine and of the change cosine both < 0.5 (equality would be 1; "
              "measured on seed 0: −0.12 and −0.16)",
    measure=lambda ctx: relaxation_cost(lm_run(ctx)),
    judge=lambda v, ctx: float(v.output_cos.mean()) < 0.5 and float(v.update_cos.mean()) < 0.5,
    show=lambda v: f"output cosine {float(v.output_cos.mean()):+.3f}, change cosine {float(v.update_cos.mean()):+.3f} "
                   f"(layers {float(v.update_cos.min()):+.2f} to {float(v.update_cos.max()):+.2f}; {v.n} reviews)"))

register(Claim(
    id="D17", chapter=CHAPTER,
    claim="reordering the same demonstrations changes the real LM's in-context predictions on a share of the reviews",
    reference="ICL is sensitive to the order of the demonstrations (Shen et al. 2023; Lu et al. 2022)",
    tolerance="ICL predictions that flip, averaged over two reorderings of 16 demonstrations, > 5 % of 48 reviews "
              "(fine-tuning, which also sees the demonstrations in order, is reported beside it)",
    measure=lambda ctx: ctx.shared("lm_orders", lambda: order_sensitivity(settings=lm_settings(ctx),
                                                                          demo_seed=ctx.seed)),
    judge=lambda v, ctx: sum(v.icl_flips) / len(v.icl_flips) > 0.05,
    show=lambda v: f"ICL flips {', '.join(f'{x:.2f}' for x in v.icl_flips)}; fine-tuning flips "
                   f"{', '.join(f'{x:.2f}' for x in v.ft_flips)}"))
