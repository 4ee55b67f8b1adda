"""Tests for :mod:`icl_course.meta_optimizer.dual_form`: the dual form of one and K GD steps (D1, D7) against
``solvers.gd`` and autograd, ΔW_ICL from projections and from RoPE'd, grouped keys (D2), "would be caught" tests for
the error signal's sign, the K-step memory, the RoPE'd keys and the KV-group order, validation, the claim values,
the relaxation sweep, the widget and the chapter's exercises."""

import math

import pytest
import torch

import icl_course.exercises.meta_optimizer.dual_form as ex
from icl_course import attention, runtime, solvers
from icl_course.exercises import REGISTRY
from icl_course.meta_optimizer import (
    DUAL_FORM,
    dual_form_check,
    dual_form_output,
    expand_kv_groups,
    gd_dual_form,
    gd_step_linear_layer,
    icl_update_check,
    icl_weight_update,
    icl_weight_update_from_kv,
    relaxation_sweep,
)
from icl_course.meta_optimizer import dual_form as df

F64 = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def layer(B=3, N=7, d_in=5, d_out=2, Tq=4, seed=0, dtype=F64):
    g = runtime.generator(seed)
    W0 = torch.randn(B, d_out, d_in, generator=g, dtype=dtype)
    X, Y, x = (torch.randn(B, n, d, generator=g, dtype=dtype) for n, d in ((N, d_in), (N, d_out), (Tq, d_in)))
    return W0, X, Y, x


# ------------------------------------------------------------------------------------------------ D1
def test_one_step_equals_solvers_gd_and_dual_form():
    W0, X, Y, x = layer()
    W, e = gd_step_linear_layer(W0, X, Y, 0.3)
    assert W.shape == W0.shape and e.shape == Y.shape and W.dtype == F64
    assert rel(W, solvers.gd(X, Y, 0.3, 1, w0=W0)) < 1e-12
    assert rel(dual_form_output(W0, X, e, x), x @ W.mT) < 1e-10


def test_worked_number():
    W, e = gd_step_linear_layer(torch.zeros(1, 1, 1, dtype=F64), torch.full((1, 1, 1), 2.0, dtype=F64),
                                torch.full((1, 1, 1), 3.0, dtype=F64), 0.5)
    assert float(e) == pytest.approx(1.5) and float(W) == pytest.approx(3.0)


def test_error_signal_sign_would_be_caught():
    """``e_i = −η ∂L/∂y_i``: with the sign flipped (``+η``) the dual form misses the GD-updated layer."""
    W0, X, Y, x = layer(seed=1)
    W, e = gd_step_linear_layer(W0, X, Y, 0.2)
    assert rel(dual_form_output(W0, X, -e, x), x @ W.mT) > 0.01


def test_any_loss_via_autograd_matches_gd_on_W():
    """Error signals from autograd give the same W as autograd's gradient with respect to W itself."""
    W0, X, Y, x = layer(seed=2)

    def ce(pred, target):
        return -(target.softmax(-1) * pred.log_softmax(-1)).sum(-1).mean(-1).sum()

    W, e = gd_step_linear_layer(W0, X, Y, 0.7, loss=ce)
    Wg = W0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ce(X @ Wg.mT, Y), Wg)
    assert rel(W, W0 - 0.7 * grad) < 1e-12
    assert rel(dual_form_output(W0, X, e, x), x @ W.mT) < 1e-10
    sq = gd_step_linear_layer(W0, X, Y, 0.7, loss=lambda p, y: 0.5 * (p - y).pow(2).sum(-1).mean(-1).sum())
    assert rel(sq.W, gd_step_linear_layer(W0, X, Y, 0.7).W) < 1e-12


def test_k_steps_equal_solvers_gd_and_keep_every_step():
    W0, X, Y, x = layer(seed=3)
    d = gd_dual_form(W0, X, Y, 0.2, steps=4)
    assert d.keys.shape == (3, 28, 5) and d.values.shape == (3, 28, 2)
    assert rel(d.W, solvers.gd(X, Y, 0.2, 4, w0=W0)) < 1e-12
    assert rel(dual_form_output(W0, d.keys, d.values, x), x @ d.W.mT) < 1e-10
    # would be caught: keeping only the last step's memory, or errors all taken at W0
    last = dual_form_output(W0, X, d.values[:, -7:], x)
    first = dual_form_output(W0, d.keys, torch.cat([d.values[:, :7]] * 4, 1), x)
    assert rel(last, x @ d.W.mT) > 0.01 and rel(first, x @ d.W.mT) > 0.01


def test_dual_form_validation():
    W0, X, Y, x = layer()
    with pytest.raises(ValueError, match="d_in"):
        gd_step_linear_layer(W0, X[..., :3], Y, 0.1)
    with pytest.raises(ValueError, match=r"\(\.\.\., N, d_out\)"):
        gd_step_linear_layer(W0, X, Y[..., :1], 0.1)
    with pytest.raises(ValueError, match="lr"):
        gd_step_linear_layer(W0, X, Y, -0.1)
    with pytest.raises(ValueError, match="scalar"):
        gd_step_linear_layer(W0, X, Y, 0.1, loss=lambda p, y: p - y)
    with pytest.raises(ValueError, match="x"):
        dual_form_output(W0, X, Y, x[0])
    with pytest.raises(TypeError, match="W0"):
        gd_step_linear_layer(W0.long(), X, Y, 0.1)
    with pytest.raises(ValueError, match="steps"):
        gd_dual_form(W0, X, Y, 0.1, steps=0)


# ------------------------------------------------------------------------------------------------ D2
def projections(d=6, dk=4, dv=3, seed=0):
    g = runtime.generator(seed)
    return torch.randn(dk, d, generator=g, dtype=F64), torch.randn(dv, d, generator=g, dtype=F64)


def test_icl_weight_update_is_linear_attention():
    W_K, W_V = projections()
    g = runtime.generator(1)
    Xd, Xt = torch.randn(2, 5, 7, 6, generator=g, dtype=F64), torch.randn(2, 5, 3, 6, generator=g, dtype=F64)
    q = torch.randn(2, 5, 1, 4, generator=g, dtype=F64)
    W_zsl, dW = icl_weight_update(W_K, W_V, Xd, Xt)
    assert W_zsl.shape == dW.shape == (2, 5, 3, 4)
    X = torch.cat([Xd, Xt], -2)
    lin = attention.linear_attention(q, X @ W_K.T, X @ W_V.T)
    assert rel(q @ (W_zsl + dW).mT, lin) < 1e-10
    assert rel(dW, W_V @ Xd.mT @ Xd @ W_K.T) < 1e-12  # the paper's formula, W_V X_demoᵀ X_demo W_Kᵀ
    zsl_only = attention.linear_attention(q, Xt @ W_K.T, Xt @ W_V.T)
    assert rel(q @ W_zsl.mT, zsl_only) < 1e-10


def test_from_kv_needs_the_recorded_keys():
    """RoPE rotates keys by position: ΔW_ICL from ``W_K x`` would miss the attention over the rotated keys."""
    W_K, W_V = projections(dk=4)
    g = runtime.generator(2)
    Xd, Xt = torch.randn(1, 8, 6, generator=g, dtype=F64), torch.randn(1, 3, 6, generator=g, dtype=F64)
    kd, kt = df._rotate(Xd @ W_K.T, 0), df._rotate(Xt @ W_K.T, 8)
    vd, vt = Xd @ W_V.T, Xt @ W_V.T
    q = torch.randn(1, 1, 4, generator=g, dtype=F64)
    lin = attention.linear_attention(q, torch.cat([kd, kt], 1), torch.cat([vd, vt], 1))
    W_zsl, dW = icl_weight_update_from_kv(kd, vd, kt, vt)
    assert rel(q @ (W_zsl + dW).mT, lin) < 1e-10
    naive = sum(icl_weight_update(W_K, W_V, Xd, Xt))
    assert rel(q @ naive.mT, lin) > 0.01


def test_rope_uses_the_rotate_half_convention():
    """SmolLM2/Llama (Hugging Face) pair channel i with i + dh/2; GPT-J's interleaved pairs (2i, 2i+1) are caught."""
    k = torch.eye(4, dtype=F64)[:2]  # e_0, e_1 at positions 1 and 2 (offset 1), dh = 4
    r = df._rotate(k, 1)
    th1 = df._ROPE_BASE ** -0.5  # θ_0 = 1, θ_1 = base^(−2/4)
    assert torch.allclose(r[0], torch.tensor([math.cos(1), 0, math.sin(1), 0], dtype=F64), atol=1e-15)
    assert torch.allclose(r[1], torch.tensor([0, math.cos(2 * th1), 0, math.sin(2 * th1)], dtype=F64), atol=1e-15)
    # a rotation that depends on relative position only: q·k is unchanged when both positions shift
    g = runtime.generator(3)
    q, kk = torch.randn(2, 1, 8, generator=g, dtype=F64)
    assert float(df._rotate(q, 5) @ df._rotate(kk, 2).T) == pytest.approx(float(df._rotate(q, 9) @ df._rotate(kk, 6).T))
    assert rel(df._rotate(q, 7).norm(), q.norm()) < 1e-12


def test_expand_kv_groups_order():
    x = torch.arange(3.0).view(1, 3, 1, 1).expand(1, 3, 2, 2)  # KV head h holds the value h
    y = expand_kv_groups(x, 9)
    assert y.shape == (1, 9, 2, 2)
    assert y[0, :, 0, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # consecutive query heads share a group
    with pytest.raises(ValueError, match="multiple"):
        expand_kv_groups(x, 8)
    with pytest.raises(ValueError, match="H_kv"):
        expand_kv_groups(torch.zeros(3, 4), 3)


def test_icl_weight_update_validation():
    W_K, W_V = projections()
    X = torch.zeros(2, 4, 6, dtype=F64)
    with pytest.raises(ValueError, match="W_V"):
        icl_weight_update(W_K, W_V[:, :5], X, X)
    with pytest.raises(ValueError, match="X_text"):
        icl_weight_update(W_K, W_V, X, X[..., :5])
    with pytest.raises(ValueError, match="leading dims"):
        icl_weight_update(W_K, W_V, X, X[:1])
    with pytest.raises(ValueError, match="X_text"):
        icl_weight_update(W_K, W_V, X, X[0])
    k, v = torch.zeros(2, 4, 3, dtype=F64), torch.zeros(2, 4, 5, dtype=F64)
    with pytest.raises(ValueError, match="token count"):
        icl_weight_update_from_kv(k, v[:, :3], k, v)
    with pytest.raises(ValueError, match="key width"):
        icl_weight_update_from_kv(k, v, k[..., :2], v)
    with pytest.raises(ValueError, match="leading dims"):
        icl_weight_update_from_kv(k, v, k[:1], v[:1])


# ------------------------------------------------------------------------------------------------ claims, sweep
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_claim_values(seed):
    d1 = dual_form_check(seed)
    assert max(d1) < 1e-10
    d2 = icl_update_check(seed)
    assert max(d2.from_weights, d2.from_kv) < 1e-10
    assert -1 <= d2.softmax_update_cos <= d2.softmax_output_cos <= 1
    # the softmax cosines are those of the sweep's prompts (64), not of the 4 prompts of the exactness checks
    assert d2.n_prompts == DUAL_FORM.cpu.n_prompts == 64
    sw = relaxation_sweep([1 / math.sqrt(DUAL_FORM.cpu.d_head)], seed=seed)
    assert (d2.softmax_output_cos, d2.softmax_update_std) == (float(sw.output_cos[0]), float(sw.update_std[0]))


def test_relaxation_sweep_limits():
    sw = relaxation_sweep([1e-5, 1 / math.sqrt(DUAL_FORM.cpu.d_head)], centre_values=True)
    assert sw.output_cos.shape == (2,) and float(sw.output_cos[0]) > 1 - 1e-6
    assert float(sw.update_cos[0]) < 0.9  # the renormalisation keeps the relaxation from being free even here
    raw = relaxation_sweep([1e-5])
    assert abs(float(raw.output_cos[0])) < 0.5  # uncentred: softmax output ≈ mean value, unrelated to (W_zsl+ΔW) q
    assert DUAL_FORM.pick("paper").d_model == 576


def test_widget_renders():
    pytest.importorskip("ipywidgets")
    w = df.dual_form_explorer(max_train=6)
    image = w.children[1]
    assert len(image.value) > 1000
    w.children[0].children[1].value = 3  # N slider redraws
    assert len(image.value) > 1000


# ------------------------------------------------------------------------------------------------ exercises
@pytest.mark.parametrize("name", ["dual_form_predict", "delta_w_icl", "k_step_dual_form", "simaou_from_outputs",
                                  "rec2ftp_by_hand"])
def test_exercise_solutions_pass(name, capsys):
    getattr(ex, f"check_{name}")(REGISTRY[f"meta_optimizer.{name}"].solution)
    assert "passed" in capsys.readouterr().out


def test_simaou_exercise_statement():
    """The exercise's statement, float64: without the normalisation, rescaling only the ICL outputs (or one example's
    ICL output) by 2 changes the score, rescaling all three runs (or all runs of one example) does not; with it,
    none does."""
    from icl_course.meta_optimizer import simaou

    g = runtime.generator(11)
    z, i, f = (torch.randn(10, 5, generator=g, dtype=F64) for _ in range(3))
    c = torch.ones(10, 1, dtype=F64)
    c[3] = 2.0

    def raw(zsl, icl, ft):
        return float(torch.nn.functional.cosine_similarity(icl - zsl, ft - zsl, dim=-1).mean())

    base = raw(z, i, f)
    assert abs(raw(2 * z, 2 * i, 2 * f) - base) < 1e-12 and abs(raw(c * z, c * i, c * f) - base) < 1e-12
    assert abs(raw(z, 2 * i, f) - base) > 1e-3 and abs(raw(z, c * i, f) - base) > 1e-4
    ref = float(simaou(zsl=z, icl=i, ft=f))
    for args in ((2 * z, 2 * i, 2 * f), (z, 2 * i, f), (z, c * i, f)):
        assert abs(float(simaou(zsl=args[0], icl=args[1], ft=args[2])) - ref) < 1e-12
        assert abs(REGISTRY["meta_optimizer.simaou_from_outputs"].solution(*args) - ref) < 1e-12


def _fails(check, fn, match):
    from icl_course.exercises import ExerciseFailed

    with pytest.raises(ExerciseFailed, match=match):
        check(fn)


def test_simaou_checker_catches_the_unnormalised_score():
    def raw(zsl, icl, ft):
        return float(torch.nn.functional.cosine_similarity(icl - zsl, ft - zsl, dim=-1).mean())

    def whole_matrix(zsl, icl, ft):  # normalised by the norm of the whole (n_ex, d) matrix, not per row
        zsl, icl, ft = (h / h.norm() for h in (zsl, icl, ft))
        return float(torch.nn.functional.cosine_similarity(icl - zsl, ft - zsl, dim=-1).mean())

    _fails(ex.check_simaou_from_outputs, raw, "rescaling only the ICL outputs by 2 moved your score")
    _fails(ex.check_simaou_from_outputs, whole_matrix, "each row")


def test_k_step_checker_tests_the_memory():
    def primal_only(W0, X, Y, lr, steps, x):  # right output and keys, values all taken at W0
        out, K, V = REGISTRY["meta_optimizer.k_step_dual_form"].solution(W0, X, Y, lr, steps, x)
        return out, K, torch.cat([V[: X.shape[0]]] * steps)

    def last_step(W0, X, Y, lr, steps, x):
        out, K, V = REGISTRY["meta_optimizer.k_step_dual_form"].solution(W0, X, Y, lr, steps, x)
        return out, K[-X.shape[0]:], V[-X.shape[0]:]

    def output_only(W0, X, Y, lr, steps, x):
        return REGISTRY["meta_optimizer.k_step_dual_form"].solution(W0, X, Y, lr, steps, x)[0]

    _fails(ex.check_k_step_dual_form, primal_only, "the output must be the dual form over the memory")
    _fails(ex.check_k_step_dual_form, last_step, "every step's training points")
    _fails(ex.check_k_step_dual_form, output_only, "triple")
