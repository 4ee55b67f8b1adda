"""Part IV claims of chapter "A small language model with mesa layers": M20–M22."""

from __future__ import annotations

from ... import mesa
from ...reproduce import Claim, Context, KnownGap, register

CHAPTER = "A small language model with mesa layers"


def _comparison(ctx: Context) -> mesa.LanguageComparison:
    """Train the three GPTs on seeds ``ctx.seed`` and ``ctx.seed + 1`` (as the notebook does for seeds 0 and 1) and
    evaluate them on the validation windows (the first 512 with ``--quick``)."""

    def make() -> mesa.LanguageComparison:
        settings, corpus = mesa.LANGUAGE.pick(ctx.scale), mesa.language_corpus()
        x, y = corpus.windows("val", settings.block_size, 512 if ctx.quick else None)
        bigram_curve = mesa.bigram_losses(corpus, x, y).mean(0)
        seeds, curves, params = (ctx.seed, ctx.seed + 1), {k: [] for k in mesa.MIXERS}, {}
        for seed in seeds:
            for kind in mesa.MIXERS:
                model = mesa.train_language_model(kind, corpus, settings, seed=seed, device=ctx.device).model
                curves[kind].append(mesa.position_losses(model.to("cpu"), x, y))
                params[kind] = model.num_params()
        return mesa.language_comparison(curves, params, mesa.ngram_baselines(corpus, y, x), seeds, bigram_curve)

    return ctx.shared("mesa_language", make)


def _worst(v: mesa.LanguageComparison) -> float:
    return max(max(losses) for losses in v.val_loss.values())


def _mesa_minus_linear(v: mesa.LanguageComparison) -> float:
    return v.mean("mesa") - v.mean("linear")


def _ordering(v: mesa.LanguageComparison) -> str:
    order = sorted(mesa.MIXERS, key=v.mean)
    return " < ".join(f"{k} {v.mean(k):.3f}" for k in order)


def _resolved(v: mesa.LanguageComparison) -> str:
    d, spread = _mesa_minus_linear(v), max(v.spread("mesa"), v.spread("linear"))
    return ("no difference resolved within the seed spread" if abs(d) <= spread else
            "larger than the seed spread, at one untuned learning rate shared by all mixers")


register(Claim(
    id="M20", chapter=CHAPTER,
    claim="two-layer character-level GPTs with softmax, linear (averaged) or mesa attention, trained on one budget, "
          "all predict held-out movie-review sentences better than the add-one bigram model, on both seeds",
    reference="the counting baselines on the same validation text (unigram and add-one bigram, this chapter)",
    tolerance="every model's validation loss (each mixer, each seed) below the bigram's; the margin is small: bigram "
              "minus the worst model measured 0.020-0.023 nats/char (about 1 %) on seeds 0-2",
    measure=_comparison,
    judge=lambda v, ctx: _worst(v) < v.baselines.bigram,
    show=lambda v: f"{_ordering(v)} nats/char (means over seeds {v.seeds}); bigram {v.baselines.bigram:.3f}, "
                   f"unigram {v.baselines.unigram:.3f}; worst model {_worst(v):.3f} "
                   f"(margin {v.baselines.bigram - _worst(v):.3f})"))

register(Claim(
    id="M21", chapter=CHAPTER,
    claim="the mesa layer is better than linear attention for language modelling (lower validation loss at equal "
          "parameters and budget)",
    reference="von Oswald et al. (2023) report a preliminary language-modelling experiment with mesa layers "
              "(direction only; its set-up is not reproduced here)",
    tolerance="mean validation loss over the two seeds: mesa < linear",
    measure=_comparison,
    judge=lambda v, ctx: _mesa_minus_linear(v) < 0,
    score=_mesa_minus_linear,
    show=lambda v: f"mesa − linear = {_mesa_minus_linear(v):+.3f} nats/char, {_resolved(v)} (seed spreads: mesa "
                   f"{v.spread('mesa'):.3f}, linear {v.spread('linear'):.3f}); {_ordering(v)}",
    gap=KnownGap(0.04, "not reproduced at this CPU scale (300 updates of 32 × 64 characters, two layers, d_model 64, "
                       "one learning rate shared by all mixers and tuned for none): mesa − averaged linear measured "
                       "+0.018 nats/char on seeds 0-1 and again on seeds 1-2, a little above the seed spreads "
                       "(at most 0.015); the mesa layer trails at this one learning rate, and no ranking at tuned "
                       "learning rates is claimed. The plain-sum linear attention of the paper (not judged here) is "
                       "worse than the bigram at this budget: 2.482 and 2.415 nats/char on seeds 0 and 1 against "
                       "2.406")))


DELTA = 0.04
"""M22's threshold (nats/char) on the rise of the excess over the per-position bigram; measured on seeds 0-2: linear
0.103-0.113, mesa 0.064-0.071, softmax 0.014-0.020."""


def _m22_margin(v: mesa.LanguageComparison) -> float:
    """How far M22 is from failing (negative: holds): the worst of δ − rise (linear, mesa) and rise − δ (softmax)."""
    rising = [DELTA - r for k in ("linear", "mesa") for r in v.rise(k)]
    return max(rising + [r - DELTA for r in v.rise("softmax")])


register(Claim(
    id="M22", chapter=CHAPTER,
    claim=f"linear attention and the mesa layer lose their early-window advantage over the bigram as the 64-character "
          f"window fills, softmax attention keeps it: measured as the loss minus the bigram's at the same position, "
          f"the mean over the last {mesa.LATE} positions exceeds the mean over positions {mesa.EARLY[0]}-"
          f"{mesa.EARLY[1]} by more than δ = {DELTA} for linear and mesa and by less than δ for softmax",
    reference="the add-one bigram's loss at each position of the same validation windows (this chapter); a "
              "measured effect, not a figure of the paper",
    tolerance=f"rise > {DELTA} nats/char for linear and mesa, < {DELTA} for softmax, on each seed (δ set from seeds "
              f"0-2, measured: linear 0.103-0.113, mesa 0.064-0.071, softmax 0.014-0.020)",
    measure=_comparison,
    judge=lambda v, ctx: _m22_margin(v) < 0,
    score=_m22_margin,
    show=lambda v: "rise of the excess over the bigram, last 16 minus positions 2-8: " + "; ".join(
        f"{k} " + ", ".join(f"{r:+.3f}" for r in v.rise(k)) for k in mesa.MIXERS) + f" (seeds {v.seeds})"))


__all__: list[str] = []
