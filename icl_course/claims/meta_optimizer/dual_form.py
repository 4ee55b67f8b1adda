"""Part II claims of chapter "The dual form: attention as a gradient-descent update": D1, D7 and D2."""

from __future__ import annotations

from ... import meta_optimizer as mo
from ...reproduce import Claim, Context, register

CHAPTER = "The dual form: attention as a gradient-descent update"

__all__: list[str] = []


def _check(ctx: Context) -> mo.DualFormCheck:
    return ctx.shared("dual_form_check", lambda: mo.dual_form_check(seed=ctx.seed))


register(Claim(
    id="D1", chapter=CHAPTER,
    claim="a linear layer after one GD step = W0 x + linear attention over (inputs as keys, error signals as values)",
    reference="exact (the dual form: Irie et al. 2022, §2; Dai et al. 2022, Eq. 7–8); squared loss and, with error "
              "signals from autograd, a cross-entropy loss",
    tolerance="float64 relative error < 1e-10",
    measure=_check,
    judge=lambda v, ctx: max(v.one_step, v.any_loss) < 1e-10,
    show=lambda v: f"rel. error {max(v.one_step, v.any_loss):.1e} (squared {v.one_step:.1e}, cross-entropy "
                   f"{v.any_loss:.1e})",
    score=lambda v: max(v.one_step, v.any_loss), exact=True))

register(Claim(
    id="D7", chapter=CHAPTER,
    claim="K GD steps = W0 x + linear attention over every step's inputs (keys) and error signals (values)",
    reference="exact (the dual form applied step by step: Irie et al. 2022, §2)",
    tolerance="float64 relative error < 1e-10 (K = 5 steps)",
    measure=_check,
    judge=lambda v, ctx: v.multi_step < 1e-10,
    show=lambda v: f"rel. error {v.multi_step:.1e}",
    score=lambda v: v.multi_step, exact=True))

register(Claim(
    id="D2", chapter=CHAPTER,
    claim="ICL with linear attention = (W_zsl + ΔW_ICL) q, from the projections and from RoPE'd keys shared by KV "
          "groups; the relaxation's cost with softmax restored is reported",
    reference="exact (Dai et al. 2022, Eq. 12); with softmax and the 1/√d scale restored the identity no longer "
              "holds (Dai et al. 2022, §3.2 relax it) — random toy prompts, measured and reported",
    tolerance="float64 relative error < 1e-10 on 4 random prompts (the softmax cosines, mean ± sd over the "
              "relaxation sweep's prompts and heads, are reported, not judged)",
    measure=lambda ctx: mo.icl_update_check(seed=ctx.seed),
    judge=lambda v, ctx: max(v.from_weights, v.from_kv) < 1e-10,
    show=lambda v: f"rel. error {max(v.from_weights, v.from_kv):.1e}; softmax restored ({v.n_prompts} prompts): "
                   f"cos(output, (W_zsl + ΔW) q) {v.softmax_output_cos:.2f} ± {v.softmax_output_std:.2f}, "
                   f"cos(ICL change, ΔW q) {v.softmax_update_cos:.2f} ± {v.softmax_update_std:.2f}",
    score=lambda v: max(v.from_weights, v.from_kv), exact=True))
