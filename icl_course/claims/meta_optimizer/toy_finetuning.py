"""Part II claims of chapter "ICL versus fine-tuning on a transformer trained from scratch": D4a, D5a, D9, D10."""

from __future__ import annotations

import math

from ... import meta_optimizer as mo
from ...reproduce import Claim, Context, KnownGap, register

CHAPTER = "ICL versus fine-tuning on a transformer trained from scratch"
__all__: list[str] = []


def _summary(ctx: Context) -> mo.ToySummary:
    """One trained toy GPT per run (model seed ``ctx.seed``); ``--quick`` halves the evaluation tasks only."""
    n = mo.TOY.cpu.n_eval // 2 if ctx.quick else None
    return ctx.shared("toy_finetuning", lambda: mo.toy_experiment(seed=ctx.seed, n_eval=n)[0])


def _pd(v: mo.PairedDifference) -> str:
    return f"{v.mean:+.3f} ± {v.sem:.3f} (SEM, n = {v.n}; SD {v.std:.3f}; positive in {100 * v.frac_positive:.0f} %)"


def _swap(v: mo.ToySummary) -> str:
    a, b = (float(v.simaou[f"{k}, swapped labels"].mean()) for k in ("FT", "ICL"))
    return (f"; label-swapped controls (trained model): SimAOU FT-swapped {a:.3f}, ICL-swapped {b:.3f}; "
            f"true − FT-swapped {_pd(v.vs_swapped)}")


def _ratio(v: mo.ToySummary) -> float:
    return float(v.simaou["untrained"].mean()) / float(v.simaou["FT"].mean())


def _rec_ok(t: mo.Rec2FTPTest) -> bool:
    """Rec2FTP beats its independence null by > 3 null SDs, and within the strata "label shown / not shown" the
    lift is within 3 SDs (plus one example's worth, 100 / n_fixed points, for the counts' granularity). Undefined
    (fine-tuning fixed no zero-shot error) does not pass."""
    return t.n_fixed > 0 and t.lift > 3 * t.null_sd and abs(t.strat_lift) <= 3 * t.strat_sd + 100 / t.n_fixed


def _rec_excess(t: mo.Rec2FTPTest) -> float:
    """How far (percentage points) D10 misses its tolerance: the larger of the two conditions' shortfalls, 0 when
    both hold; infinite when Rec2FTP is undefined."""
    if t.n_fixed == 0:
        return math.inf
    return max(0.0, 3 * t.null_sd - t.lift, abs(t.strat_lift) - 3 * t.strat_sd - 100 / t.n_fixed)


register(Claim(
    id="D4a", chapter=CHAPTER,
    claim="toy GPT: SimAOU of ICL vs K/V fine-tuning (layer mean, per example) exceeds the zero-mean random-update "
          "baseline",
    reference="Dai et al. (2022) §4.3: SimAOU well above their random baseline (their baseline is U(0, 1); the "
              "zero-mean N(0, 1) update is the stricter one)",
    tolerance="paired difference (FT − N(0, 1) update) > 2 × its standard error over examples, two demonstration "
              "seeds pooled",
    measure=lambda ctx: _summary(ctx).vs_zero_mean,
    judge=lambda v, ctx: v.mean > 2 * v.sem,
    show=_pd))
# The unit of replication of D4a/D5a's SEMs is the example (600 tasks, 300 with --quick) of ONE trained model; the
# model-seed spread is recorded in D5a's tolerance text.

register(Claim(
    id="D5a", chapter=CHAPTER,
    claim="toy GPT: an untrained copy (same initial weights, same protocol) reaches a SimAOU comparable to the trained "
          "model's — at least half of it; the paired difference trained − untrained is reported with its sign and "
          "spread, next to the label-swapped controls on the trained model",
    reference="Deutch et al. (2023): untrained models reach ICL-vs-FT similarity comparable to trained ones, so "
              "SimAOU alone does not show that training produced a GD-like mechanism",
    tolerance="layer-mean SimAOU of the untrained copy ≥ 0.5 × the trained model's. 0.5 is a qualitative definition "
              "of 'comparable' (a trained model at more than twice its untrained copy fails), not a fitted number; "
              "measured untrained/trained ratios over model seeds 0, 1, 2: 0.84 (600 tasks), 0.85 and 0.65 (300 "
              "tasks, --quick), each with the trained model the higher one. SEMs are over examples of one model; "
              "the seed spread (0.65–0.85) is the larger uncertainty",
    measure=lambda ctx: _summary(ctx),
    judge=lambda v, ctx: _ratio(v) >= 0.5,
    show=lambda v: f"SimAOU trained {float(v.simaou['FT'].mean()):.3f}, untrained "
                   f"{float(v.simaou['untrained'].mean()):.3f} (ratio {_ratio(v):.2f}); trained − untrained "
                   f"{_pd(v.vs_untrained)}" + _swap(v)))

register(Claim(
    id="D9", chapter=CHAPTER,
    claim="toy GPT: zero-shot sits at chance and ICL with 4 demonstrations beats it; K/V fine-tuning on the same "
          "demonstrations stays clearly below ICL",
    reference="the task's design (remapped labels: the query alone carries no label information); Dai et al. (2022) "
              "report ICL far above restricted fine-tuning on real tasks",
    tolerance="|ZSL − 0.5| < 3 SEM; ICL − ZSL > 2 × its paired SEM; FT < ICL − 2 × (SEM of FT)",
    measure=lambda ctx: _summary(ctx),
    judge=lambda v, ctx: (abs(v.acc["ZSL"] - 0.5) < 3 * v.acc_sem["ZSL"] and v.icl_gain.mean > 2 * v.icl_gain.sem
                          and v.acc["FT"] < v.acc["ICL"] - 2 * v.acc_sem["FT"]),
    show=lambda v: f"accuracy ZSL {v.acc['ZSL']:.3f}, ICL {v.acc['ICL']:.3f}, FT {v.acc['FT']:.3f} "
                   f"(n = {v.icl_gain.n})"))

register(Claim(
    id="D10", chapter=CHAPTER,
    claim="toy GPT, one demonstration, answers scored over all labels (ICL off its ceiling): Rec2FTP exceeds its "
          "null of independence (ICL's accuracy on the zero-shot-wrong examples), and the whole excess is explained "
          "by whether the query's label was shown: within those two strata ICL and FT correctness are independent",
    reference="Dai et al. (2022) §4.2 (Rec2FTP 85.56–89.39 % on GPT, reported via secondary sources); the metric "
              "as in the official compute_sim.py count_f2t",
    tolerance="Rec2FTP − null > 3 × the null's exact hypergeometric SD (given the counts); stratified lift within "
              "3 × its SD plus one example (100 / #FT-fixed points). With 4 demonstrations ICL is at 100 % and "
              "Rec2FTP = 100 % by construction, so it is not judged there",
    measure=lambda ctx: _summary(ctx).rec_test,
    judge=lambda t, ctx: _rec_ok(t),
    score=_rec_excess,
    gap=KnownGap(0.88, "machine-dependent: on one 2-vCPU AMD EPYC machine (2026-12-02) the toy model's trajectory "
                       "differs (model seed 0 leaves the plateau at 3,250 updates, not 1,500) and the stratified lift "
                       "(+2.4 ± 0.5) exceeds its bound by a fraction of a point; the registered value is one "
                       "example's worth (100 / #FT-fixed ≈ 0.88 points), the granularity of the counts"),
    show=lambda t: f"k = {t.k}: Rec2FTP undefined (FT fixed no zero-shot error); accuracy ZSL {t.acc['ZSL']:.3f}, "
                   f"ICL {t.acc['ICL']:.3f}, FT {t.acc['FT']:.3f}" if t.n_fixed == 0 else
                   f"k = {t.k}: Rec2FTP {t.rec2ftp:.1f} %, null {t.null:.1f} ± {t.null_sd:.1f} % (lift "
                   f"{t.lift:+.1f}); stratified lift {t.strat_lift:+.1f} ± {t.strat_sd:.1f}; FT fixed {t.n_fixed} "
                   f"examples, {t.n_fixed_unseen} with an unseen label; accuracy ZSL {t.acc['ZSL']:.3f}, ICL "
                   f"{t.acc['ICL']:.3f}, FT {t.acc['FT']:.3f}"))
