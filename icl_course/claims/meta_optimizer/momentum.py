"""Part II claims of chapter "Momentum attention": D6 and D13–D15."""

from __future__ import annotations

import dataclasses

from ... import meta_optimizer as mo
from ...reproduce import Claim, Context, KnownGap, register

__all__: list[str] = []

CHAPTER = "Momentum attention"


QUICK_SEEDS, FULL_SEEDS = 4, 16
"""Paired seeds of D6: ``--quick`` (about 45 s of CPU) and the full run; the notebook trains ``RECALL.cpu.seeds``."""


def _comparison(ctx: Context) -> mo.MomentumComparison:
    """Both mixers on ``FULL_SEEDS`` seeds from ``ctx.seed`` (``QUICK_SEEDS`` and 500 evaluation sequences with
    ``--quick``)."""
    settings = dataclasses.replace(mo.RECALL.pick(ctx.scale), seeds=QUICK_SEEDS if ctx.quick else FULL_SEEDS)
    return ctx.shared("momentum_comparison", lambda: mo.momentum_comparison(
        settings, first_seed=ctx.seed, eval_size=500 if ctx.quick else None, device=ctx.device))


def _exactness(ctx: Context) -> mo.MomentumExactness:
    return ctx.shared("momentum_exactness", lambda: mo.momentum_exactness(seed=ctx.seed))


def _show_d6(v: mo.MomentumComparison) -> str:
    t = v.sign_test()
    esc = {k: ", ".join("—" if e is None else str(e) for e in v.escape[k]) for k in mo.MIXERS}
    return (f"escape step (first eval loss < {v.escape_loss:g}; — = not within {v.cap}) on seeds {v.seeds}: softmax "
            f"{esc['softmax']}; momentum {esc['momentum']}; momentum sooner on {t.lower}, later on {t.higher}, tied "
            f"on {t.ties} (sign test p = {t.p:.3f}); never escaped: softmax {v.not_escaped('softmax')}, momentum "
            f"{v.not_escaped('momentum')}; escaped runs with accuracy ≥ 0.9 at the stop: softmax "
            f"{v.solved('softmax')}, momentum {v.solved('momentum')}")


register(Claim(
    id="D6", chapter=CHAPTER,
    claim="momentum attention vs softmax attention in the same small GPT (same init, batches and optimiser) on "
          "in-context associative recall, paired seeds: the step of the escape from the loss plateau, measured and "
          "reported whatever the sign, with a paired sign test",
    reference="Dai et al. (2022), §5: momentum attention reported to lower the perplexity and raise the in-context "
              "accuracy of a 350M-parameter GPT (reported, unverified); not this task or scale",
    tolerance="every run that escaped the plateau (eval loss < 1 nat within 1,000 updates) reaches accuracy ≥ 0.9 "
              "150 updates later; runs that never escaped are counted, not passed as trained; the paired sign of the "
              "escape-step difference is reported with its sign-test p, not asserted "
              "(measured, escape steps softmax / momentum, — = none within 1,000: seeds 0-8 325/425, 500/500, 650/400, "
              "900/775, —/700, —/675, —/500, —/500, —/625: momentum sooner on 7, later on 1, tied on 1, p = 0.070; "
              "the notebook's seeds 0-5: 4, 1, 1, p = 0.375)",
    measure=_comparison,
    judge=lambda v, ctx: v.converged(),
    score=lambda v: float(sum(a < 0.9 for k in mo.MIXERS for e, a in zip(v.escape[k], v.final_acc[k])
                              if e is not None)),
    gap=KnownGap(1.0, "machine-dependent: on one 2-vCPU AMD EPYC machine (2026-12-02) the trajectories differ and "
                      "one momentum run that left the plateau late is still below 0.9 accuracy 150 updates later; "
                      "the score counts escaped runs that did not reach 0.9 (0 on the machine the notebook was first "
                      "run on)"),
    show=_show_d6))

register(Claim(
    id="D13", chapter=CHAPTER,
    claim="the causal EMA of the values by one product with the decay matrix = the recursion m_t = η (m_{t−1} + "
          "v_{t−1})",
    reference="exact (the momentum term Σ_{i<t} η^{t−i} v_i of Dai et al. 2022, §5; closed form)",
    tolerance="float64 relative error < 1e-10 (η = 0.5 and 0.9, T = 40)",
    measure=_exactness,
    judge=lambda v, ctx: v.ema_vs_loop < 1e-10, show=lambda v: f"rel. error {v.ema_vs_loop:.1e}", exact=True))

register(Claim(
    id="D14", chapter=CHAPTER,
    claim="heavy-ball updates of a linear layer driven by error signals e_i = W0 + linear attention with values "
          "c_i e_i, c_i = (1 − η^{N−i+1})/(1 − η)",
    reference="exact (the dual form of Dai et al. 2022, Eq. 8–10, unrolled for momentum (Polyak 1964); closed form)",
    tolerance="float64 relative error < 1e-10 (N = 12, η = 0.9)",
    measure=_exactness,
    judge=lambda v, ctx: v.dual_vs_primal < 1e-10, show=lambda v: f"rel. error {v.dual_vs_primal:.1e}",
    exact=True))

register(Claim(
    id="D15", chapter=CHAPTER,
    claim="a GPT with MoAttn at η = 0 and one with the softmax mixer, built from one seed, start from the same "
          "weights and compute the same logits",
    reference="exact (MoAttn(V, K, q_t) = Attn(V, K, q_t) when η = 0, Dai et al. 2022, §5; same weight shapes)",
    tolerance="float64 relative error < 1e-10",
    measure=_exactness,
    judge=lambda v, ctx: v.eta0_vs_softmax < 1e-10, show=lambda v: f"rel. error {v.eta0_vs_softmax:.1e}",
    exact=True))
