"""Part I claims of chapter "What in-context learning is": B3, B4 and B7."""

from __future__ import annotations

from dataclasses import replace

from ... import lm
from ...basics import FEW_SHOT, in_context_gain, mr_sweep, natural_label_finding, repeated_token_run
from ...reproduce import Claim, Context, KnownGap, register

CHAPTER = "What in-context learning is"

__all__: list[str] = []


def _settings(ctx: Context):
    """The book's settings with draws of ``ctx.seed`` (three draws per seed, disjoint across seeds); ``--quick``:
    32 test reviews, two draws, four repeated-token sequences."""
    s = FEW_SHOT.pick(ctx.scale)
    s = replace(s, draws=tuple(3 * ctx.seed + i for i in range(3)))
    return replace(s, n_test=32, draws=s.draws[:2], rep_draws=4) if ctx.quick else s


def _b3(ctx: Context):
    s = _settings(ctx)
    return in_context_gain(repeated_token_run(lm.load(), s, first_draw=s.rep_draws * ctx.seed))


def _b4(ctx: Context):
    s = _settings(ctx)
    model = lm.load()
    k = max(s.ks)
    return natural_label_finding(mr_sweep(model, s.natural, s, ks=(0, k)),
                                 mr_sweep(model, s.natural, s, ks=(k,), random_labels=True))


def _b7(ctx: Context):
    s = _settings(ctx)
    return in_context_gain(mr_sweep(lm.load(), s.arbitrary, s, ks=(0, max(s.ks))), max(s.ks))


register(Claim(
    id="B3", chapter=CHAPTER,
    claim="in-context copying (induction) in the real LM (SmolLM2-135M-Instruct): on a random token sequence repeated "
          "once, its loss on the second copy is far below its loss on the first. This measures copying from the "
          "context, not learning an input-label task from demonstrations: that (MR with arbitrary labels) was "
          "measured too and did not beat chance reliably (gain below the spread over draws), see B7",
    reference="Olsson et al. (2022): in-context loss on repeated random tokens drops once induction heads form",
    tolerance="mean drop (first-copy loss − second-copy loss, the second copy's unpredictable first token excluded) "
              "> the range of the second-copy loss over the draws (8 sequences of 40 tokens, 4 with --quick), and "
              "every draw's second copy below the first copy's mean",
    measure=_b3,
    judge=lambda v, ctx: v.passed,
    show=lambda v: f"first copy {sum(v.zero) / len(v.zero):.2f} nats, second copy {sum(v.shot) / len(v.shot):.2f} "
                   f"(range {min(v.shot):.2f}–{max(v.shot):.2f}); drop {v.gain:.2f} > spread {v.spread:.2f}"))

register(Claim(
    id="B4", chapter=CHAPTER,
    claim="on MR with its natural labels, eight demonstrations do not reliably raise this small instruction-tuned "
          "model's accuracy over zero-shot: which demonstrations are drawn matters more (random-label accuracies, "
          "balanced labels, are reported alongside, not judged)",
    reference="Brown et al. (2020) report few-shot above zero-shot for large models; Min et al. (2022) find random "
              "demonstration labels cost little; Zhao et al. (2021) contextual calibration",
    tolerance="mean k = 8 accuracy − zero-shot accuracy ≤ the range of the k = 8 accuracy over the demonstration "
              "draws (fails if demonstrations help reliably; on some draws they hurt reliably — --quick seed 1: "
              "zero-shot 0.750, k = 8 0.500 and 0.594 — which the finding includes); 64 test reviews (32 with "
              "--quick)",
    measure=_b4,
    judge=lambda v, ctx: v.no_reliable_gain,
    show=lambda v: (f"n={v.n}: zero-shot {v.zero_shot:.3f} (calibrated {v.zero_shot_calibrated:.3f}); "
                    + "; ".join(f"k={k}: " + "/".join(f"{a:.3f}" for a in acc) for k, acc in zip(v.ks, v.few_shot))
                    + f" (gain {v.gain:+.3f}, spread {v.spread:.3f}); random labels k={v.random_k}: "
                    + "/".join(f"{a:.3f}" for a in v.random_labels))))

register(Claim(
    id="B7", chapter=CHAPTER,
    claim="the real LM learns an arbitrary input-label mapping from its prompt: on MR with the label words foo/bar "
          "(the mapping is only in the demonstrations), k = 8 demonstrations beat k = 0",
    reference="Brown et al. (2020): few-shot above zero-shot, growing with model size",
    tolerance="mean gain (k = 8 − k = 0 accuracy) > the range of the k = 8 accuracy over the demonstration draws, and "
              "every draw above k = 0; 64 test reviews, 3 draws (32 and 2 with --quick). Score: range − gain",
    measure=_b7,
    judge=lambda v, ctx: v.passed,
    score=lambda v: v.spread - v.gain,
    gap=KnownGap(0.40, "not reproduced by this 135M model at k = 8: with arbitrary labels the k = 8 accuracy "
                 "stays near chance and its spread over draws is not below the gain (range − gain: 0.214, 0.104, "
                 "0.078 and 0.000 on seeds 0, 1, 2 and --quick seed 0; the registered value is the worst plus twice "
                 "their standard deviation, 0.09, so seed noise alone does not read as FAIL); larger models, more "
                 "demonstrations and test reviews (FEW_SHOT.paper) are untested"),
    show=lambda v: f"k=0 {v.zero[0]:.3f}; k=8 " + "/".join(f"{a:.3f}" for a in v.shot)
                   + f" (gain {v.gain:+.3f}, spread {v.spread:.3f})"))
