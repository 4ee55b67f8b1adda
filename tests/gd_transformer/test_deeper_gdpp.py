"""GD++ and deeper models (Part III): constructions, the eigenvalue map, the scalar model, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icl_course import gd_transformer as gt
from icl_course import runtime, solvers, tasks
from icl_course.models import LSAStack
from tests.helpers import F64


def _batch(B, N, dx, dy, seed):
    return tasks.sample_linear_regression(B, N, dx, dy, generator=runtime.generator(seed), dtype=F64)


def _rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@given(B=st.integers(1, 4), N=st.integers(1, 12), dx=st.integers(1, 6), dy=st.integers(1, 3), K=st.integers(1, 4),
       seed=st.integers(0, 10_000), lr=st.floats(0.1, 3.0), gamma=st.floats(0.0, 0.3))
def test_constructed_gdpp_equals_the_solver(B, N, dx, dy, K, seed, lr, gamma):
    b = _batch(B, N, dx, dy, seed)
    model = gt.constructed_gdpp(dx, dy, N, lr, gamma, K, dtype=F64)
    with torch.no_grad():
        tf = gt.readout(model(b.tokens()), dx)
    ref = solvers.gd_plus_plus(b.x, b.y, b.x_query, lr, gamma, K)
    assert torch.allclose(tf, ref, rtol=1e-10, atol=1e-12 * (1 + float(ref.abs().max())))


@given(N=st.integers(1, 12), dx=st.integers(1, 6), K=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_gamma_zero_is_plain_gd(N, dx, K, seed):
    b = _batch(3, N, dx, 2, seed)
    lam = float(torch.linalg.eigvalsh(b.x.transpose(1, 2) @ b.x / N).max())
    lr = 1.5 / lam
    ref = solvers.predict(solvers.gd(b.x, b.y, lr, K), b.x_query)
    assert _rel(solvers.gd_plus_plus(b.x, b.y, b.x_query, lr, 0.0, K), ref) < 1e-10


def test_per_step_sizes_match_sequential_steps():
    b = _batch(4, 9, 5, 1, 3)
    both = solvers.gd_plus_plus(b.x, b.y, b.x_query, [1.0, 2.0], [0.1, 0.05], 2)
    model = gt.constructed_gdpp(5, 1, 9, 1.0, 0.1, 1, dtype=F64)
    second = gt.constructed_gdpp(5, 1, 9, 2.0, 0.05, 1, dtype=F64)
    with torch.no_grad():
        tf = gt.readout(second(model(b.tokens())), 5)
    assert _rel(both, tf) < 1e-10


@given(N=st.integers(2, 12), dx=st.integers(1, 6), seed=st.integers(0, 10_000), gamma=st.floats(0.0, 0.5))
def test_eigenvalue_map(N, dx, seed, gamma):
    x = _batch(2, N, dx, 1, seed).x
    spec = gt.spectra(x, gamma, 2)  # (3, B, dx)
    for k in range(2):
        lam = spec[k]
        mapped = torch.sort(lam * (1 - gamma * lam) ** 2, dim=-1).values
        assert torch.allclose(spec[k + 1], mapped, rtol=1e-9, atol=1e-12)


def test_effective_gamma_and_lr_of_the_construction():
    model = gt.constructed_gdpp(10, 1, 10, 12.0, 0.15, 3)
    for layer in model.layers:
        assert gt.effective_gamma(layer, 10) == pytest.approx(0.15, rel=1e-6)
        assert gt.effective_lr_over_n(layer, 10) == pytest.approx(1.2, rel=1e-6)
    assert gt.effective_gamma(gt.constructed_lsa(10, 1, 10, 6.0).layer(0), 10) == 0.0


def test_gd_scalars_model_is_the_solver_and_differentiable():
    b = _batch(6, 10, 10, 1, 0)
    model = gt.GDScalars(10, 3, lr=5.0, gamma=0.125).double()  # exactly representable in float32
    pred = gt.predict(model, b.tokens(), 10)
    assert _rel(pred, solvers.gd_plus_plus(b.x, b.y, b.x_query, 5.0, 0.125, 3)) < 1e-12
    gt.icl_loss(model, (b.tokens(), b.y_query)).backward()
    assert model.lr.grad is not None and model.gamma.grad is not None
    frozen = gt.GDScalars(10, 2, fit_gamma=False)
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == ["lr"]
    with pytest.raises(ValueError, match="query_only"):
        model(b.tokens(), query_only=False)


def test_fitting_the_scalars_beats_the_initial_step_size():
    ev = tasks.regression_eval_set(2000, 10, 10, seed=5)
    fitted = gt.fit_gd_scalars(2, plus_plus=True, steps=150, progress=False)
    init = gt.GDScalars(10, 2, lr=solvers.optimal_gd_lr(10, 10), gamma=0.0)
    with torch.no_grad():
        loss = [float(gt.icl_loss(m, (ev.tokens(), ev.y_query))) for m in (fitted, init)]
    assert loss[0] < 0.9 * loss[1]
    assert float(fitted.gamma) > 0


def test_depth_sweep_of_a_shared_constructed_stack():
    b = _batch(200, 10, 10, 1, 1)
    layer = gt.constructed_lsa(10, 1, 10, 3.0, dtype=F64).layer(0)
    shared = LSAStack([layer], shared=True, n_layers=1, n_context=10)
    losses = gt.depth_sweep(shared, b, [1, 2, 3])
    for k, loss in zip([1, 2, 3], losses):
        ref = solvers.predict(solvers.gd(b.x, b.y, 3.0, k), b.x_query)
        assert loss == pytest.approx(float(0.5 * ((ref - b.y_query) ** 2).sum(-1).mean()), rel=1e-10)


def test_bad_input():
    b = _batch(2, 5, 3, 1, 0)
    with pytest.raises(ValueError, match="x_query"):
        solvers.gd_plus_plus(b.x, b.y, b.x_query[:, :2], 1.0, 0.1)
    with pytest.raises(ValueError, match="steps"):
        solvers.gd_plus_plus(b.x, b.y, b.x_query, 1.0, 0.1, steps=0)
    with pytest.raises(ValueError, match="one entry per step"):
        solvers.gd_plus_plus(b.x, b.y, b.x_query, 1.0, [0.1], steps=2)
    with pytest.raises(ValueError, match="gamma"):
        gt.constructed_gdpp(3, 1, 5, 1.0, -0.1)
    with pytest.raises(ValueError, match="n_layers"):
        gt.spectra(b.x, 0.1, 0)


def test_train_recurrent_stops_after_the_escape_and_reports_it():
    run, escape = gt.train_recurrent(seed=0, after_escape=100, max_steps=400, escape_loss=0.5, batch_size=64,
                                     eval_size=200, progress=False)
    assert escape == 0 and run.history.steps == 101  # escaped at the first evaluation, then 100 more updates
    assert run.model.shared and run.model.n_layers == 3
    never, none = gt.train_recurrent(seed=0, max_steps=60, escape_loss=0.0, batch_size=64, eval_size=200,
                                     progress=False)
    assert none is None and never.history.steps == 60


def test_history_final_eval_averages_the_last_evaluations():
    from icl_course.train import History

    h = History(eval_loss=[4.0, 3.0, 2.0, 1.0])
    assert h.final_eval() == 1.0 and h.final_eval(2) == 1.5 and h.final_eval(10) == 2.5
    with pytest.raises(ValueError, match="eval_batch"):
        History().final_eval()
    with pytest.raises(ValueError, match="last"):
        h.final_eval(0)


def test_newton_iterations_converge_to_least_squares():
    b = _batch(8, 12, 5, 2, 4)
    ls = solvers.predict(solvers.least_squares(b.x, b.y), b.x_query)
    errs = [_rel(solvers.newton_predict(b.x, b.y, b.x_query, k), ls) for k in (0, 4, 8, 40)]
    assert errs[-1] < 1e-8 and errs[0] > errs[1] > errs[2]
    cov = b.x.transpose(1, 2) @ b.x
    alpha = 1 / torch.linalg.eigvalsh(cov)[:, -1] ** 2
    precond = 12 * alpha[:, None, None] * cov  # steps = 0: W = Yᵀ X (α XᵀX), i.e. (1/N) Yᵀ X Γ with Γ = N α XᵀX
    ref0 = solvers.predict(solvers.preconditioned_gd_step(b.x, b.y, precond), b.x_query)
    assert _rel(solvers.newton_predict(b.x, b.y, b.x_query, 0), ref0) < 1e-10
    with pytest.raises(ValueError, match="steps"):
        solvers.newton_predict(b.x, b.y, b.x_query, -1)


# ---------------------------------------------------------------- the Neumann-series view


@given(B=st.integers(1, 4), N=st.integers(1, 12), dx=st.integers(1, 6), dy=st.integers(1, 3), K=st.integers(1, 4),
       seed=st.integers(0, 10_000), lr=st.floats(0.1, 3.0), gamma=st.floats(0.0, 0.3))
def test_gdpp_is_a_polynomial_in_xtx(B, N, dx, dy, K, seed, lr, gamma):
    """K GD++ steps predict x_qᵀ p(XᵀX) Xᵀy with p = implicit_inverse — the solver is an independent computation
    (it transforms the tokens step by step), so a wrong recursion (order of the updates, a missing square) fails."""
    b = _batch(B, N, dx, dy, seed)
    ref = solvers.gd_plus_plus(b.x, b.y, b.x_query, lr, gamma, K)
    ours = gt.polynomial_predict(b.x, b.y, b.x_query,
                                 lambda lam: gt.implicit_inverse(lam, lr, gamma, steps=K, n_context=N))
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-10 * (1 + float(ref.abs().max())))


@given(K=st.integers(1, 6), lr=st.floats(0.1, 15.0), N=st.integers(1, 20))
def test_k_gd_steps_are_the_neumann_series_truncated_after_k_terms(K, lr, N):
    lam = torch.linspace(0, 30, 61, dtype=F64)
    p = gt.implicit_inverse(lam, lr, 0.0, steps=K, n_context=N)
    assert torch.allclose(p, gt.neumann_inverse(lam, lr / N, K), rtol=1e-12, atol=1e-12)
    assert torch.allclose(1 - lam * p, (1 - lr / N * lam) ** K, rtol=1e-9, atol=1e-9)  # the error factor
    if K > 1:  # one term fewer is a different polynomial
        assert not torch.allclose(p, gt.neumann_inverse(lam, lr / N, K - 1), rtol=1e-6)


def test_gdpp_error_factor_is_the_product_over_the_folded_spectrum():
    lam, lr, gamma, N = torch.linspace(0, 12, 49, dtype=F64), 14.0, 0.17, 10
    p = gt.implicit_inverse(lam, lr, gamma, steps=3, n_context=N)
    a, factor = lam.clone(), torch.ones_like(lam)
    for _ in range(3):  # the chapter's product of the steps' factors 1 − (η/N) f^(k)(λ)
        factor = factor * (1 - lr / N * a)
        a = a * (1 - gamma * a) ** 2
    assert torch.allclose(1 - lam * p, factor, rtol=1e-10, atol=1e-10)


def test_newton_schulz_is_the_neumann_series_with_doubling_terms_and_matches_the_solver():
    lam, alpha = torch.linspace(0.05, 3, 30, dtype=F64), 0.3
    m = torch.full_like(lam, alpha)
    for k in range(1, 4):  # Newton–Schulz from M_0 = αI
        m = 2 * m - m * m * lam
        assert torch.allclose(m, gt.neumann_inverse(lam, alpha, 2**k), rtol=1e-12)
    b = _batch(6, 9, 4, 2, 5)
    lam_max = torch.linalg.eigvalsh(b.x.transpose(1, 2) @ b.x)[:, -1:]
    for k in (0, 1, 4):
        ours = gt.polynomial_predict(b.x, b.y, b.x_query, lambda v, k=k: gt.newton_inverse(v, k, lam_max=lam_max))
        assert _rel(ours, solvers.newton_predict(b.x, b.y, b.x_query, k)) < 1e-10


def test_polynomial_view_bad_input():
    b = _batch(2, 5, 3, 1, 0)
    with pytest.raises(ValueError, match="lam"):
        gt.implicit_inverse(torch.tensor([-1.0, 2.0]), 1.0, steps=2, n_context=5)
    with pytest.raises(ValueError, match="lam"):
        gt.neumann_inverse(torch.tensor([float("nan")]), 0.1, 3)
    with pytest.raises(ValueError, match="lr"):
        gt.implicit_inverse(1.0, float("nan"), steps=2, n_context=5)
    with pytest.raises(ValueError, match="gamma"):
        gt.implicit_inverse(1.0, 1.0, -0.1, steps=2, n_context=5)
    with pytest.raises(ValueError, match="steps"):
        gt.implicit_inverse(1.0, 1.0, steps=0, n_context=5)
    with pytest.raises(ValueError, match="lam_max"):
        gt.newton_inverse(1.0, 2, lam_max=0.0)
    with pytest.raises(ValueError, match="x_query"):
        gt.polynomial_predict(b.x, b.y, b.x_query[:, :2], lambda v: v)
    with pytest.raises(ValueError, match="y"):
        gt.polynomial_predict(b.x, b.y[:, :4], b.x_query, lambda v: v)


def test_polynomial_degree_counts_gd_gdpp_and_newton():
    deg = lambda p: gt.polynomial_degree(p, 4.5)  # noqa: E731
    for K in (1, 2, 3):
        assert deg(lambda v, K=K: gt.implicit_inverse(v, 6.0, 0.0, steps=K, n_context=10)) == K - 1
        assert deg(lambda v, K=K: gt.implicit_inverse(v, 19.5, 0.2, steps=K, n_context=10)) == (3**K - 3) // 2
    assert deg(lambda v: gt.newton_inverse(v, 3, lam_max=2.5)) == 2**4 - 1
    with pytest.raises(ValueError, match="polynomial"):
        gt.polynomial_degree(lambda v: 1 / (v + 0.1), 4.5, max_degree=10)  # not a polynomial
