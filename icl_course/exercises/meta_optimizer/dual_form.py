"""Exercises of Part II, chapter "The dual form: attention as a gradient-descent update".

Each reference solution below is the exact code the chapter shows in its solution block; each stub is what the
student edition shows instead. The checkers compare against the package (:func:`icl_course.meta_optimizer.
gd_step_linear_layer`, :func:`~icl_course.meta_optimizer.gd_dual_form`, :func:`~icl_course.meta_optimizer.
icl_weight_update_from_kv`, :func:`~icl_course.meta_optimizer.simaou`, :func:`~icl_course.meta_optimizer.rec2ftp`)
on fixed seeds and recognise the classic slips by name: the error signal's sign and its 1/N, a forgotten ``W0 x``,
every step's errors taken at ``W0``, a memory holding only one step, a transposed ``ΔW``, outputs not normalised
before the differences (caught by rescaling only the ICL outputs, which must leave SimAOU unchanged), and the wrong
denominator of Rec2FTP. The one-step checker compares outputs only, so it cannot tell the dual form from a formed
``W``; the K-step exercise returns its memory, which the checker compares with :func:`~icl_course.meta_optimizer.
gd_dual_form`'s, and checks that the output is ``W0 x`` plus linear attention over that memory.
"""

from __future__ import annotations

import torch

from ... import meta_optimizer as mo
from ... import runtime
from .. import exercise
from ._common import PART, _expect

F64 = torch.float64

__all__ = ["check_dual_form_predict", "check_delta_w_icl", "check_k_step_dual_form", "check_simaou_from_outputs",
           "check_rec2ftp_by_hand"]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.detach().to(F64), b.to(F64), rtol=1e-9, atol=1e-12))


def _layer(seed: int, N: int = 7, d_in: int = 4, d_out: int = 3, Tq: int = 5):
    g = runtime.generator(seed)
    W0 = torch.randn(d_out, d_in, generator=g, dtype=F64)
    X, Y, x = (torch.randn(n, d, generator=g, dtype=F64) for n, d in ((N, d_in), (N, d_out), (Tq, d_in)))
    return W0, X, Y, x


# ---------------------------------------------------------------- 1. the dual form of one GD step
@exercise(part=PART, name="dual_form_predict", title="The dual form of one GD step", difficulty="★☆☆", minutes=5,
          hint="Error signals e_i = −(η/N)(W0 x_i − y_i); output W0 x + Σ_i e_i (x_i·x): keys are the training "
               "inputs, values the error signals; the updated W is never needed.",
          stub='''def dual_form_predict(W0, X, Y, lr, x):
    """W0 (d_out, d_in), X (N, d_in), Y (N, d_out), step size lr, queries x (Tq, d_in) -> (Tq, d_out):
    the output of W0 after one GD step on L = 1/(2N) Σ ||W x_i − y_i||², computed as W0 x + linear attention."""
    # YOUR CODE HERE
    raise NotImplementedError("dual_form_predict")
''')
def check_dual_form_predict(fn) -> None:
    for seed, lr in ((0, 0.3), (1, 0.05)):
        W0, X, Y, x = _layer(seed)
        got = _expect(fn(W0.clone(), X.clone(), Y.clone(), lr, x.clone()), (x.shape[0], W0.shape[0]),
                      "dual_form_predict(W0, X, Y, lr, x)")
        W, _ = mo.gd_step_linear_layer(W0[None], X[None], Y[None], lr)
        ref = (x @ W[0].T)
        if _close(got, ref):
            continue
        resid, N, base = X @ W0.T - Y, X.shape[0], x @ W0.T
        assert not _close(got, base + (lr / N) * (x @ X.T) @ resid), (
            "the error signal is −η ∂L/∂y: GD moves against the gradient, e_i = −(η/N)(W0 x_i − y_i)")
        assert not _close(got, base - lr * (x @ X.T) @ resid), "the loss averages over the N examples: η/N, not η"
        assert not _close(got, ref - base), "the dual form is W0 x plus the attention term: add W0 x"
        raise AssertionError(f"the output differs from the GD-updated layer's (max abs error "
                             f"{float((got - ref).abs().max()):.3g}) for seed {seed}")


# ---------------------------------------------------------------- 2. ΔW_ICL from keys and values
@exercise(part=PART, name="delta_w_icl", title="The zero-shot weights and ΔW_ICL from keys and values",
          difficulty="★☆☆", minutes=5,
          hint="Linear attention Σ_j v_j (k_j·q) = (Σ_j v_j k_jᵀ) q: W_zsl sums v kᵀ over the query-text tokens, "
               "ΔW_ICL over the demonstrations; each is (d_v, d_k) = Vᵀ K.",
          stub='''def delta_w_icl(k_demo, v_demo, k_text, v_text):
    """Keys (T, d_k) and values (T, d_v) of the demonstrations and of the query text
    -> (W_zsl, dW_icl), each (d_v, d_k), with linear attention over both sets = (W_zsl + dW_icl) q."""
    # YOUR CODE HERE
    raise NotImplementedError("delta_w_icl")
''')
def check_delta_w_icl(fn) -> None:
    g = runtime.generator(5)
    kd, kt = (torch.randn(n, 4, generator=g, dtype=F64) for n in (6, 3))
    vd, vt = (torch.randn(n, 5, generator=g, dtype=F64) for n in (6, 3))
    out = fn(kd.clone(), vd.clone(), kt.clone(), vt.clone())
    assert isinstance(out, (tuple, list)) and len(out) == 2, "return the pair (W_zsl, dW_icl)"
    W_zsl, dW = (_expect(m, (5, 4), name) for m, name in zip(out, ("W_zsl", "dW_icl")))
    ref_zsl, ref_dw = mo.icl_weight_update_from_kv(kd, vd, kt, vt)
    if _close(W_zsl, ref_zsl) and _close(dW, ref_dw):
        return
    assert not (_close(W_zsl, ref_dw) and _close(dW, ref_zsl)), "swapped: W_zsl comes from the query text, ΔW_ICL " \
                                                                "from the demonstrations"
    assert not _close(dW, ref_dw + ref_zsl), "ΔW_ICL is the demonstrations' part only; the text's part is W_zsl"
    raise AssertionError("(W_zsl + ΔW_ICL) q must equal Σ_j v_j (k_j·q) over [demo; text]")


# ---------------------------------------------------------------- 3. the K-step dual form
@exercise(part=PART, name="k_step_dual_form", title="The dual form of K GD steps", difficulty="★★☆", minutes=15,
          hint="Each step t has its own errors e_i^(t) = −(η/N)(W_t x_i − y_i), computed at that step's weights W_t; "
               "the memory keeps every step's inputs as keys and errors as values, step 0 first (steps·N rows), and "
               "the output is W0 x + Σ_t Σ_i e_i^(t)(x_i·x) over that memory.",
          stub='''def k_step_dual_form(W0, X, Y, lr, steps, x):
    """W0 (d_out, d_in), X (N, d_in), Y (N, d_out), step size lr, number of steps, queries x (Tq, d_in)
    -> (output (Tq, d_out), keys (steps·N, d_in), values (steps·N, d_out)): the output after `steps` full-batch GD
    steps, as W0 x + linear attention over the memory of all steps (step 0 first), and that memory."""
    # YOUR CODE HERE
    raise NotImplementedError("k_step_dual_form")
''')
def check_k_step_dual_form(fn) -> None:
    W0, X, Y, x = _layer(7)
    lr, steps, (N, d_in), d_out = 0.4, 4, X.shape, W0.shape[0]
    out = fn(W0.clone(), X.clone(), Y.clone(), lr, steps, x.clone())
    assert isinstance(out, (tuple, list)) and len(out) == 3, "return the triple (output, keys, values)"
    got = _expect(out[0], (x.shape[0], d_out), "the output of k_step_dual_form")
    keys, values = out[1], out[2]
    for what, m, width in (("keys", keys, d_in), ("values", values, d_out)):
        assert not (isinstance(m, torch.Tensor) and tuple(m.shape) == (N, width)), (
            f"the memory holds every step's training points: {steps}·{N} = {steps * N} {what}, not the last step's {N}")
        _expect(m, (steps * N, width), what)
    dual = mo.gd_dual_form(W0[None], X[None], Y[None], lr, steps)
    ref = x @ dual.W[0].T
    assert _close(got, x @ W0.T + (x @ keys.T) @ values), (
        "the output must be the dual form over the memory you return: W0 x + Σ_j values_j (keys_j · x)")
    assert _close(keys, dual.keys[0]), "the keys are the training inputs X, once per step, step 0 first"
    if _close(values, dual.values[0]) and _close(got, ref):
        return
    first = mo.gd_step_linear_layer(W0[None], X[None], Y[None], lr).errors[0]
    assert not _close(values, first.repeat(steps, 1)), (
        "every step's errors were computed at W0: recompute e_i^(t) at the current weights W_t")
    assert not _close(values.reshape(steps, N, d_out).flip(0).reshape(-1, d_out), dual.values[0]), (
        "the values are in reverse step order: step 0's error signals come first, like the keys")
    raise AssertionError(f"the values differ from the {steps} GD steps' error signals (max abs error "
                         f"{float((values - dual.values[0]).abs().max()):.3g}); the output differs from the GD-updated "
                         f"layer's by {float((got - ref).abs().max()):.3g}")


# ---------------------------------------------------------------- 4. SimAOU from attention outputs
@exercise(part=PART, name="simaou_from_outputs", title="SimAOU from attention outputs", difficulty="★☆☆",
          minutes=10,
          hint="Normalise each output row to unit length first, then take the updates ĥ_ICL − ĥ_ZSL and ĥ_FT − ĥ_ZSL, "
               "their cosine per example, and the mean over examples.",
          stub='''def simaou_from_outputs(zsl, icl, ft):
    """Attention outputs at the last token (n_ex, d) of the zero-shot, in-context and fine-tuned model
    -> SimAOU (a float): the mean cosine of the ICL update and the FT update."""
    # YOUR CODE HERE
    raise NotImplementedError("simaou_from_outputs")
''')
def check_simaou_from_outputs(fn) -> None:
    g = runtime.generator(9)
    z, i, f = (torch.randn(12, 6, generator=g, dtype=F64) * s for s in (1.0, 3.0, 0.5))
    i, f = i + 2 * z, f + z  # updates correlated with the zero-shot output, as in a real model
    one = torch.ones(12, 1, dtype=F64)
    one[0] = 2.0  # rescales example 0 only
    ref = float(mo.simaou(zsl=z, icl=i, ft=f))

    def raw(zsl, icl, ft):
        return float(torch.nn.functional.cosine_similarity(icl - zsl, ft - zsl, dim=-1).mean())

    got = float(fn(z.clone(), i.clone(), f.clone()))
    # Dai's normalisation makes the score blind to the scale of each output row: rescaling only the ICL outputs, or
    # only example 0's ICL output, must leave it unchanged (an unnormalised score changes; rescaling all three runs
    # by the same factor changes neither)
    for what, args in (("only the ICL outputs", (z, 2 * i, f)), ("only example 0's ICL output", (z, one * i, f)),
                       ("every output", (2 * z, 2 * i, 2 * f))):
        moved = float(fn(*(a.clone() for a in args)))
        if abs(moved - got) > 1e-9:
            unnormalised = abs(got - raw(z, i, f)) < 1e-9 and abs(moved - raw(*args)) < 1e-9
            assert not unnormalised, (
                f"rescaling {what} by 2 moved your score from {got:.4f} to {moved:.4f}: without the normalisation "
                "the score depends on each run's output norm. Normalise each output row before taking the "
                "differences (Dai's SimAOU)")
            per_row = " (normalise each row, i.e. each example's output, on its own)" if "example" in what else ""
            raise AssertionError(f"rescaling {what} by 2 moved your score from {got:.4f} to {moved:.4f}; SimAOU "
                                 f"must not depend on the outputs' norms{per_row}")
    if abs(got - ref) < 1e-9:
        return
    plain = float(torch.nn.functional.cosine_similarity(i, f, dim=-1).mean())
    assert abs(got - plain) > 1e-9, "compare the updates (ICL − ZSL, FT − ZSL), not the outputs themselves"
    raise AssertionError(f"SimAOU should be {ref:.6f}, got {got:.6f}")


# ---------------------------------------------------------------- 5. Rec2FTP by hand
@exercise(part=PART, name="rec2ftp_by_hand", title="Rec2FTP by hand", difficulty="★☆☆", minutes=5,
          hint="Denominator: examples ZSL gets wrong and FT gets right; numerator: those of them ICL gets right too; "
               "report a percentage.",
          stub='''def rec2ftp_by_hand(zsl, icl, ft):
    """Boolean "correct" vectors (n_ex,) of the zero-shot, in-context and fine-tuned model -> Rec2FTP in percent."""
    # YOUR CODE HERE
    raise NotImplementedError("rec2ftp_by_hand")
''')
def check_rec2ftp_by_hand(fn) -> None:
    g = runtime.generator(4)
    zsl, icl, ft = (torch.rand(40, generator=g) < p for p in (0.3, 0.6, 0.7))
    got = float(fn(zsl.clone(), icl.clone(), ft.clone()))
    ref = mo.rec2ftp(zsl=zsl, icl=icl, ft=ft)
    if abs(got - ref) < 1e-9:
        return
    assert abs(got - ref / 100) > 1e-12, "Rec2FTP is a percentage: multiply by 100"
    icl_fixed = 100.0 * float((~zsl & ft & icl).sum()) / float((~zsl & icl).sum())
    assert abs(got - icl_fixed) > 1e-9, "divide by the examples FT fixed (ZSL wrong, FT right), not those ICL fixed"
    assert abs(got - 100.0 * float((~zsl & ft & icl).sum()) / float((~zsl).sum())) > 1e-9, (
        "the denominator counts ZSL-wrong examples that FT gets right, not all ZSL-wrong ones")
    raise AssertionError(f"Rec2FTP should be {ref:.4f} %, got {got:.4f}")
