"""Unit and property tests for :mod:`icl_course.solvers`: GD, least squares, ridge and optimal step sizes."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icl_course import runtime, solvers
from icl_course.solvers import (
    expected_trace_cov_sq,
    gd,
    gd_one_step_loss,
    least_squares,
    line_search,
    optimal_gd_lr,
    predict,
    ridge,
)
from icl_course.tasks import sample_linear_regression
from tests.helpers import F64, SEED, rel

B_ = st.integers(1, 4)
N_ = st.integers(1, 12)
DX = st.integers(1, 8)
DY = st.integers(1, 3)




def data(B, N, dx, dy, seed, **kw):
    b = sample_linear_regression(B, N, dx, dy, generator=runtime.generator(seed), dtype=F64, input_range=2.0, **kw)
    return b.x, b.y


def manual_step(x, y, W, eta):
    """One GD step on L(W) = 1/(2N) Σ_i ||W x_i − y_i||², written as an explicit sum over tasks and examples."""
    B, N, _ = x.shape
    out = W.clone()
    for b in range(B):
        grad = torch.zeros_like(W[b])
        for i in range(N):
            grad += torch.outer(W[b] @ x[b, i] - y[b, i], x[b, i])
        e = eta[b] if isinstance(eta, torch.Tensor) else eta
        out[b] = W[b] - e * grad / N
    return out


# ---------------------------------------------------------------------------------------------------------------
# gd
# ---------------------------------------------------------------------------------------------------------------


@given(B=B_, N=N_, dx=DX, dy=DY, seed=SEED, K=st.integers(1, 5), lr=st.floats(0.01, 2.0), use_w0=st.booleans())
def test_gd_equals_manual_steps(B, N, dx, dy, seed, K, lr, use_w0):
    x, y = data(B, N, dx, dy, seed)
    w0 = torch.randn(B, dy, dx, generator=runtime.generator(seed + 1), dtype=F64) if use_w0 else None
    W = torch.zeros(B, dy, dx, dtype=F64) if w0 is None else w0.clone()
    for _ in range(K):
        W = manual_step(x, y, W, lr)
    out = gd(x, y, lr, steps=K, w0=w0)
    assert out.shape == (B, dy, dx) and out.dtype == F64
    assert rel(out, W) < 1e-12
    # chaining single steps through w0 gives the same
    Wc = w0
    for _ in range(K):
        Wc = gd(x, y, lr, steps=1, w0=Wc)
    assert rel(out, Wc) < 1e-12


def test_gd_does_not_modify_w0():
    x, y = data(2, 5, 3, 1, 0)
    w0 = torch.ones(2, 1, 3, dtype=F64)
    gd(x, y, 0.5, steps=3, w0=w0)
    assert torch.equal(w0, torch.ones(2, 1, 3, dtype=F64))


@given(B=B_, N=N_, dx=DX, dy=DY, seed=SEED, lrs=st.lists(st.floats(0.01, 2.0), min_size=1, max_size=5))
def test_gd_lr_forms_agree(B, N, dx, dy, seed, lrs):
    x, y = data(B, N, dx, dy, seed)
    K = len(lrs)
    # constant: float == sequence of equal floats == (B,) tensor of equal entries
    a = gd(x, y, lrs[0], steps=K)
    b = gd(x, y, [lrs[0]] * K, steps=K)
    c = gd(x, y, torch.full((B,), lrs[0], dtype=F64), steps=K)
    assert rel(b, a) < 1e-13 and rel(c, a) < 1e-13
    # a sequence means one step size per step
    W = None
    for eta in lrs:
        W = gd(x, y, eta, steps=1, w0=W)
    assert rel(gd(x, y, lrs, steps=K), W) < 1e-12
    assert rel(gd(x, y, tuple(lrs), steps=K), W) < 1e-12
    # a tensor means one step size per task
    per_task = torch.linspace(0.1, 1.5, B, dtype=F64)
    Wt = gd(x, y, per_task, steps=K)
    for i in range(B):
        assert rel(Wt[i:i + 1], gd(x[i:i + 1], y[i:i + 1], float(per_task[i]), steps=K)) < 1e-12


def test_gd_lr_tensor_float32_input():
    x, y = (t.float() for t in data(3, 4, 2, 1, 0))
    W = gd(x, y, torch.tensor([0.1, 0.2, 0.3], dtype=F64), steps=2)
    assert W.dtype == torch.float32


@given(B=B_, dx=DX, dy=DY, extra=st.integers(0, 8), seed=SEED, K=st.integers(1, 400))
def test_gd_error_contracts_towards_least_squares(B, dx, dy, extra, seed, K):
    """With N ≥ dx and W0 = 0, W_K − W* = −W* (I − η Σ̂)^K: the error is at most (1 − η λ_min)^K ||W*||."""
    N = dx + extra
    x, y = data(B, N, dx, dy, seed, noise_std=0.1)
    cov = x.transpose(1, 2) @ x / N
    eig = torch.linalg.eigvalsh(cov)  # (B, dx), ascending
    lr = 1.0 / eig[:, -1]  # (B,) per-task step size, inside the stable range
    W_ls = least_squares(x, y)
    W = gd(x, y, lr, steps=K)
    contraction = (1 - lr * eig[:, 0]).clamp_min(0) ** K  # (B,)
    err = torch.linalg.matrix_norm(W - W_ls)
    bound = contraction * torch.linalg.matrix_norm(W_ls)
    assert bool((err <= bound * (1 + 1e-8) + 1e-9 * torch.linalg.matrix_norm(W_ls)).all())


def test_gd_converges_to_least_squares():
    x, y = data(4, 30, 5, 2, 3, noise_std=0.2)
    eig = torch.linalg.eigvalsh(x.transpose(1, 2) @ x / 30)
    assert float((eig[:, 0] / eig[:, -1]).min()) > 0.05  # well-conditioned draw, so 2000 steps suffice
    W = gd(x, y, 0.5 / float(eig[:, -1].max()), steps=2000)
    assert rel(W, least_squares(x, y)) < 1e-8
    assert rel(gd(x, y, 1e-3, steps=5), least_squares(x, y)) > 0.5  # few small steps do not


@given(B=B_, N=N_, dx=DX, dy=DY, seed=SEED)
def test_least_squares_is_min_norm_solution(B, N, dx, dy, seed):
    x, y = data(B, N, dx, dy, seed)
    W = least_squares(x, y)
    assert W.shape == (B, dy, dx)
    # normal equations hold; when N <= dx the fit interpolates; when N >= dx it is the unique solution
    grad = (x @ W.transpose(1, 2) - y).transpose(1, 2) @ x
    assert float(grad.abs().max()) < 1e-9 * (1 + float((y.transpose(1, 2) @ x).abs().max()))
    if N <= dx:
        assert rel(x @ W.transpose(1, 2), y) < 1e-9


@given(B=B_, N=N_, dx=DX, dy=DY, seed=SEED, lam=st.floats(0.1, 10.0))
def test_ridge_closed_form_and_zero_gradient(B, N, dx, dy, seed, lam):
    x, y = data(B, N, dx, dy, seed, noise_std=0.3)
    W = ridge(x, y, lam)
    assert W.shape == (B, dy, dx) and W.dtype == F64
    eye = torch.eye(dx, dtype=F64)
    ref = y.transpose(1, 2) @ x @ torch.linalg.inv(x.transpose(1, 2) @ x + lam * eye)
    assert rel(W, ref) < 1e-10
    # gradient of ½ Σ_i ||W x_i − y_i||² + (λ/2)||W||² vanishes at the solution
    grad = (x @ W.transpose(1, 2) - y).transpose(1, 2) @ x + lam * W
    assert float(torch.linalg.vector_norm(grad)) < 1e-10 * float(torch.linalg.vector_norm(y.transpose(1, 2) @ x))
    # and it is not the gradient of the unregularised objective (λ matters)
    grad0 = (x @ W.transpose(1, 2) - y).transpose(1, 2) @ x
    assert float(torch.linalg.vector_norm(grad0)) > 1e-6 * float(torch.linalg.vector_norm(y.transpose(1, 2) @ x))


@given(B=B_, dx=DX, dy=DY, extra=st.integers(1, 8), seed=SEED)
def test_ridge_approaches_least_squares(B, dx, dy, extra, seed):
    """W_ls − W_λ = λ W_ls (XᵀX + λI)⁻¹, so ||W_ls − W_λ|| ≤ λ ||W_ls|| / (λ_min + λ) → 0."""
    N = dx + extra
    x, y = data(B, N, dx, dy, seed, noise_std=0.1)
    W_ls = least_squares(x, y)
    lam_min = float(torch.linalg.eigvalsh(x.transpose(1, 2) @ x)[:, 0].min())
    errs = []
    for lam in (1e-1, 1e-3, 1e-5):
        err = rel(ridge(x, y, lam), W_ls)
        assert err <= lam / (lam_min + lam) * (1 + 1e-6) + 1e-9
        errs.append(err)
    assert errs[2] <= errs[1] <= errs[0]


def test_ridge_zero_lambda_is_least_squares():
    x, y = data(3, 12, 4, 2, 7)
    assert rel(ridge(x, y, 0.0), least_squares(x, y)) < 1e-10
    with pytest.raises(ValueError, match="lam"):
        ridge(x, y, -1.0)


@given(B=B_, dx=DX, dy=DY, seed=SEED)
def test_predict(B, dx, dy, seed):
    g = runtime.generator(seed)
    W, xq = torch.randn(B, dy, dx, generator=g, dtype=F64), torch.randn(B, dx, generator=g, dtype=F64)
    out = predict(W, xq)
    assert out.shape == (B, dy)
    ref = torch.stack([W[b] @ xq[b] for b in range(B)])
    assert rel(out, ref) < 1e-14


# ---------------------------------------------------------------------------------------------------------------
# optimal step size and one-step loss
# ---------------------------------------------------------------------------------------------------------------


def test_optimal_lr_headline():
    assert optimal_gd_lr(10, 10) == pytest.approx(200 / 33, rel=1e-12)


def test_one_step_loss_headline():
    assert gd_one_step_loss(200 / 33, 10, 10) == pytest.approx(0.20623, abs=1e-4)
    assert gd_one_step_loss(optimal_gd_lr(10, 10), 10, 10) == pytest.approx(0.20623, abs=1e-4)
    assert gd_one_step_loss(0, 10, 10) == pytest.approx(10 / 24, rel=1e-12)


@pytest.mark.parametrize(("r", "target"), [(0.5, 0.0812), (1.0, 0.2062), (1.5, 1.2038), (2.0, 8.4007)])
def test_one_step_loss_e3_input_ranges(r, target):
    assert gd_one_step_loss(200 / 33, 10, 10, input_range=r) == pytest.approx(target, abs=5e-4)


@pytest.mark.parametrize("alpha", [0.5, 1.5, 2.0])
def test_one_step_loss_teacher_scale_is_quadratic(alpha):
    base = gd_one_step_loss(200 / 33, 10, 10)
    assert gd_one_step_loss(200 / 33, 10, 10, teacher_scale=alpha) == pytest.approx(alpha**2 * base, rel=1e-12)


@given(dx=st.integers(1, 20), N=st.integers(1, 20), r=st.floats(0.2, 3.0), s=st.floats(0.2, 3.0),
       noise=st.sampled_from([0.0, 0.05, 0.5, 2.0]), dist=st.sampled_from(["uniform", "gaussian"]))
def test_optimal_lr_minimises_one_step_loss(dx, N, r, s, noise, dist):
    kw = {"input_range": r, "teacher_scale": s, "noise_std": noise, "input_dist": dist}
    eta = optimal_gd_lr(dx, N, **kw)
    assert eta > 0
    h = 0.1 * eta
    lo, mid, hi = (gd_one_step_loss(e, dx, N, **kw) for e in (eta - h, eta, eta + h))
    curvature = lo + hi - 2 * mid
    assert curvature > 0
    # L is quadratic in η, so the central difference is its exact derivative at η*: zero up to rounding
    assert abs(hi - lo) <= 1e-9 * max(abs(lo), abs(hi))
    # line search on the loss agrees
    found = line_search(lambda e: gd_one_step_loss(e, dx, N, **kw), 0.0, 3 * eta, tol=1e-10)
    assert found == pytest.approx(eta, rel=1e-4)  # golden section resolves η to ~√ε of the loss


def test_optimal_lr_with_noise_is_smaller():
    assert optimal_gd_lr(10, 10, noise_std=0.5) < optimal_gd_lr(10, 10)
    # input range r rescales the step size by 1/r² (the paper's U(−1, 1) vs the code's U(−0.5, 0.5))
    assert optimal_gd_lr(10, 10, input_range=2.0) == pytest.approx(optimal_gd_lr(10, 10) / 4, rel=1e-12)


def test_optimal_lr_unknown_distribution_raises():
    with pytest.raises(ValueError, match="input_dist"):
        optimal_gd_lr(10, 10, input_dist="laplace")


def _monte_carlo_loss(lr, n_tasks, seed, dx=10, N=10, **kw):
    b = sample_linear_regression(n_tasks, N, dx, generator=runtime.generator(seed), dtype=F64, **kw)
    pred = predict(gd(b.x, b.y, lr), b.x_query)
    per_task = 0.5 * (pred - b.y_query).pow(2).sum(-1)
    return float(per_task.mean()), float(per_task.std()) / math.sqrt(n_tasks)


def test_one_step_loss_matches_monte_carlo_headline():
    mc, se = _monte_carlo_loss(200 / 33, 200_000, seed=0)
    closed = gd_one_step_loss(200 / 33, 10, 10)
    assert abs(mc - closed) < 4 * se
    assert se < 0.002  # the test has teeth: 4 SE is well below the gap to nearby step sizes
    assert abs(gd_one_step_loss(5.0, 10, 10) - closed) > 4 * se


@pytest.mark.parametrize(
    "kw",
    [
        {"input_range": 2.0},
        {"noise_std": 0.5, "teacher_scale": 1.5},
        {"input_dist": "gaussian", "noise_std": 0.2},
        {"input_dist": "gaussian", "input_range": 0.5, "teacher_scale": 0.7},
    ],
)
def test_one_step_loss_matches_monte_carlo_variants(kw):
    dx, N = 6, 4
    lr = 0.8 * optimal_gd_lr(dx, N, **kw)
    mc, se = _monte_carlo_loss(lr, 50_000, seed=1, dx=dx, N=N, **kw)
    assert abs(mc - gd_one_step_loss(lr, dx, N, **kw)) < 4 * se


@pytest.mark.parametrize(
    ("dx", "N", "r", "dist"),
    [(10, 10, 1.0, "uniform"), (3, 7, 2.0, "uniform"), (5, 2, 1.0, "gaussian"), (1, 1, 0.5, "gaussian")],
)
def test_expected_trace_cov_sq_matches_monte_carlo(dx, N, r, dist):
    n = 50_000
    b = sample_linear_regression(n, N, dx, generator=runtime.generator(2), dtype=F64, input_range=r, input_dist=dist)
    cov = b.x.transpose(1, 2) @ b.x / N
    tr2 = (cov * cov).sum((1, 2))
    se = float(tr2.std()) / math.sqrt(n)
    assert abs(float(tr2.mean()) - expected_trace_cov_sq(dx, N, r, dist)) < 4 * se


def test_expected_trace_cov_sq_headline():
    # d = N = 10, U(−0.5, 0.5): 0.1375, so η* = (10/12) / 0.1375 = 200/33
    assert expected_trace_cov_sq(10, 10) == pytest.approx(0.1375, rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# line search
# ---------------------------------------------------------------------------------------------------------------


@given(m=st.floats(-5.0, 5.0), a=st.floats(0.01, 100.0), c=st.floats(-10.0, 10.0))
def test_line_search_parabola(m, a, c):
    found = line_search(lambda e: a * (e - m) ** 2 + c, -6.0, 7.0, tol=1e-9)
    assert abs(found - m) < 1e-6


def test_line_search_bad_interval():
    with pytest.raises(ValueError, match="lo"):
        line_search(lambda e: e * e, 1.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------


def test_gd_bad_input():
    x, y = data(2, 5, 3, 1, 0)
    with pytest.raises(ValueError, match=r"\blr\b"):
        gd(x, y, [0.1, 0.2], steps=3)
    with pytest.raises(ValueError, match=r"\blr\b"):
        gd(x, y, torch.ones(3, dtype=F64), steps=1)
    with pytest.raises(ValueError, match=r"\blr\b"):
        gd(x, y, torch.ones(2, 1, dtype=F64), steps=1)
    with pytest.raises(TypeError, match=r"\blr\b"):
        gd(x, y, "0.1")
    with pytest.raises(TypeError, match=r"\blr\b"):
        gd(x, y, [0.1, "a"], steps=2)
    with pytest.raises(ValueError, match="steps"):
        gd(x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="steps"):
        gd(x, y, 0.1, steps=-1)
    with pytest.raises(ValueError, match="w0"):
        gd(x, y, 0.1, w0=torch.zeros(2, 3, 1, dtype=F64))
    with pytest.raises(ValueError, match="w0"):
        gd(x, y, 0.1, w0=torch.zeros(1, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"\bx\b"):
        gd(x[0], y, 0.1)
    with pytest.raises(ValueError, match=r"\by\b"):
        gd(x, y[0], 0.1)
    with pytest.raises(ValueError, match=r"\by\b"):
        gd(x, y[:1], 0.1)
    with pytest.raises(ValueError, match=r"\by\b"):
        gd(x, y[:, :4], 0.1)
    with pytest.raises(TypeError, match=r"\bx\b"):
        gd(x.numpy(), y, 0.1)


def test_other_solvers_bad_input():
    x, y = data(2, 5, 3, 1, 0)
    with pytest.raises(ValueError, match=r"\bx\b"):
        least_squares(x[0], y)
    with pytest.raises(ValueError, match=r"\by\b"):
        ridge(x, y[:1], 0.1)
    with pytest.raises(ValueError, match=r"\bW\b"):
        predict(torch.zeros(1, 3, dtype=F64), x[:, 0])
    with pytest.raises(ValueError, match="x_query"):
        predict(torch.zeros(2, 1, 3, dtype=F64), torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="n_context"):
        optimal_gd_lr(10, 0)
    with pytest.raises(ValueError, match="dx"):
        gd_one_step_loss(1.0, 0, 10)
    with pytest.raises(ValueError, match="noise_std"):
        gd_one_step_loss(1.0, 10, 10, noise_std=-1.0)
    with pytest.raises(ValueError, match="teacher_scale"):
        optimal_gd_lr(10, 10, teacher_scale=0.0)


def test_solvers_public_names():
    for name in solvers.__all__:
        assert callable(getattr(solvers, name))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_solvers_on_cuda_match_cpu():
    x, y = data(3, 8, 4, 2, 0)
    xc, yc = x.cuda(), y.cuda()
    for fn in (lambda a, b: gd(a, b, 0.3, steps=3), lambda a, b: gd(a, b, torch.tensor([0.1, 0.2, 0.3]), steps=2),
               least_squares, lambda a, b: ridge(a, b, 0.1)):
        out = fn(xc, yc)
        assert out.device.type == "cuda" and out.dtype == F64
        assert rel(out.cpu(), fn(x, y)) < 1e-10


# ---------------------------------------------------------------- the mesa objective of a sequence (Part IV)
def _dyn(seed, B=3, T=15, D=4):
    from icl_course import runtime, tasks

    return tasks.sample_linear_dynamics(B, T, D, generator=runtime.generator(seed), dtype=F64).inputs


def _gd_loop(s, lr, W0=None):
    """One GD step on L_t(W) = ½ Σ_{j≤t} ‖s_j − W s_{j−1}‖², by autograd, position by position."""
    B, T, D = s.shape
    out = torch.zeros_like(s)
    for b in range(B):
        for t in range(T):
            W = (torch.zeros(D, D, dtype=F64) if W0 is None else W0.clone()).requires_grad_(True)
            prev = torch.cat([torch.zeros(1, D, dtype=F64), s[b, :t]])  # s_0 … s_{t-1}
            loss = 0.5 * ((s[b, :t + 1] - prev @ W.T) ** 2).sum()
            (g,) = torch.autograd.grad(loss, W)
            out[b, t] = (W.detach() - lr * g) @ s[b, t]
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_causal_gd_is_one_step_on_the_unnormalised_causal_sum(seed):
    s = _dyn(seed)
    assert rel(solvers.causal_gd_predict(s, 0.07), _gd_loop(s, 0.07)) < 1e-12
    W0 = torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(seed)) * 0.3
    assert rel(solvers.causal_gd_predict(s, 0.07, W0), _gd_loop(s, 0.07, W0)) < 1e-12


def test_causal_gd_would_catch_a_normalised_or_strict_sum():
    s = _dyn(2)
    ref = _gd_loop(s, 0.05)
    t = torch.arange(1, s.shape[1] + 1, dtype=F64)[None, :, None]
    assert rel(ref / t, ref) > 0.5  # a 1/t would be caught
    prev = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], 1)
    strict = 0.05 * (s @ prev.transpose(1, 2)).tril(-1) @ s
    assert rel(strict, ref) > 0.05  # dropping the pair j = t would be caught


def test_causal_gd_step_sizes_per_sequence_and_differentiable():
    s = _dyn(3)
    per_seq = solvers.causal_gd_predict(s, torch.tensor([0.01, 0.02, 0.03], dtype=F64))
    for b, lr in enumerate((0.01, 0.02, 0.03)):
        assert rel(per_seq[b], solvers.causal_gd_predict(s[b:b + 1], lr)[0]) < 1e-14
    eta = torch.tensor(0.05, dtype=F64, requires_grad=True)
    solvers.causal_gd_predict(s, eta).sum().backward()
    assert eta.grad is not None and torch.isfinite(eta.grad)


def _ridge_loop(s, lam, strict):
    B, T, D = s.shape
    out = torch.zeros_like(s)
    for b in range(B):
        for t in range(T):
            n = t if strict else t + 1  # number of pairs (s_{j-1}, s_j)
            X = torch.cat([torch.zeros(1, D, dtype=F64), s[b, :T - 1]])[:n]  # inputs
            Y = s[b, :n]
            W = torch.linalg.solve(X.T @ X + lam * torch.eye(D, dtype=F64), X.T @ Y).T
            out[b, t] = W @ s[b, t]
    return out


@pytest.mark.parametrize("pairs,strict", [("j<=t", False), ("j<t", True)])
def test_causal_ridge_on_the_pairs_seen_so_far(pairs, strict):
    s = _dyn(4)
    assert rel(solvers.causal_ridge_predict(s, 1e-2, pairs), _ridge_loop(s, 1e-2, strict)) < 1e-10


def test_causal_ridge_takes_the_ridge_lambda_not_its_inverse():
    s = _dyn(5)
    ref = _ridge_loop(s, 0.5, False)
    assert rel(solvers.causal_ridge_predict(s, 0.5), ref) < 1e-10
    assert rel(solvers.causal_ridge_predict(s, 2.0), ref) > 1e-3  # 1/λ would be caught


@pytest.mark.parametrize("call,match", [
    (lambda s: solvers.causal_gd_predict(s[0], 0.1), "states must have shape"),
    (lambda s: solvers.causal_gd_predict(s, 0.1, torch.zeros(3, 3, dtype=F64)), "w0 must have shape"),
    (lambda s: solvers.causal_gd_predict(s, torch.zeros(7, dtype=F64)), r"lr as a tensor must have shape \(B,\)"),
    (lambda s: solvers.causal_ridge_predict(s, 0.0), "lam must be > 0"),
    (lambda s: solvers.causal_ridge_predict(s, 1e-3, "j<=t+1"), "pairs must be"),
])
def test_causal_solvers_reject_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(_dyn(6))


# ------------------------------------------------------------------------------ the delta rule (Part IV, family)
def _delta_loop(s, beta, W0=None):
    """The delta rule written per sequence and per position: one GD step on ½‖s_t − S s_{t−1}‖² by autograd."""
    B, T, D = s.shape
    out = torch.zeros_like(s)
    for b in range(B):
        S = torch.zeros(D, D, dtype=F64) if W0 is None else W0.clone()
        for t in range(T):
            k = s[b, t - 1] if t > 0 else torch.zeros(D, dtype=F64)  # s_{t−1}, s_0 = 0
            step = float(beta[b, t]) if isinstance(beta, torch.Tensor) else beta
            W = S.clone().requires_grad_(True)
            (0.5 * ((s[b, t] - W @ k) ** 2).sum()).backward()
            S = S - step * W.grad
            out[b, t] = S @ s[b, t]
    return out


@pytest.mark.parametrize("kind", ["float", "per_sequence", "per_token", "w0"])
def test_causal_delta_is_one_gd_step_per_token_on_the_newest_pair(kind):
    s = _dyn(7)
    B, T, D = s.shape
    if kind == "float":
        got, ref = solvers.causal_delta_predict(s, 0.2), _delta_loop(s, 0.2)
    elif kind == "per_sequence":
        beta = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
        got, ref = solvers.causal_delta_predict(s, beta), _delta_loop(s, beta[:, None].expand(B, T))
    elif kind == "per_token":
        beta = torch.rand(B, T, generator=runtime.generator(8), dtype=F64) * 0.4
        got, ref = solvers.causal_delta_predict(s, beta), _delta_loop(s, beta)
    else:
        W0 = torch.randn(D, D, generator=runtime.generator(9), dtype=F64) * 0.3
        got, ref = solvers.causal_delta_predict(s, 0.15, W0), _delta_loop(s, 0.15, W0)
    assert got.shape == (B, T, D)
    assert rel(got, ref) < 1e-12


def test_causal_delta_agrees_with_gd_one_to_first_order_and_exactly_at_t_le_2():
    s = _dyn(10)
    # t = 1 sees the key s_0 = 0, so both rules hold S_1 = 0 and S_2 = β s_2 s_1ᵀ: identical predictions
    assert rel(solvers.causal_delta_predict(s, 0.3)[:, :2], solvers.causal_gd_predict(s, 0.3)[:, :2]) < 1e-14
    gaps = [rel(solvers.causal_delta_predict(s, b), solvers.causal_gd_predict(s, b)) for b in (1e-3, 5e-4)]
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.01)  # relative gap O(β): halving β halves it


def test_causal_delta_with_normalised_steps_and_would_catch_hebbian_or_flipped_updates():
    s = _dyn(11, T=12)
    prev = torch.cat([torch.zeros_like(s[:, :1]), s[:, :-1]], dim=1)
    beta = torch.where(prev.pow(2).sum(-1) > 0, 1 / prev.pow(2).sum(-1).clamp_min(1e-300), torch.zeros(()))
    assert rel(solvers.causal_delta_predict(s, beta), _delta_loop(s, beta)) < 1e-12  # β_t = 1/‖s_{t−1}‖² (NLMS)
    hebbian = solvers.causal_gd_predict(s, 0.2)
    flipped = _delta_loop(s, -0.2)
    assert rel(solvers.causal_delta_predict(s, 0.2), hebbian) > 1e-2  # linear attention's update would be caught
    assert rel(solvers.causal_delta_predict(s, 0.2), flipped) > 1e-1  # a flipped sign would be caught


def test_causal_delta_beta_is_differentiable():
    s = _dyn(12)
    beta = torch.tensor(0.2, dtype=F64, requires_grad=True)
    solvers.causal_delta_predict(s, beta).pow(2).sum().backward()
    assert beta.grad is not None and torch.isfinite(beta.grad)


@pytest.mark.parametrize("call,match", [
    (lambda s: solvers.causal_delta_predict(s[0], 0.1), "states must have shape"),
    (lambda s: solvers.causal_delta_predict(s, torch.zeros(7, dtype=F64)), r"beta as a tensor must have shape"),
    (lambda s: solvers.causal_delta_predict(s, torch.zeros(3, 99, dtype=F64)), r"\(B, T\) = \(3, 15\)"),
    (lambda s: solvers.causal_delta_predict(s, "0.1"), "beta must be a float or a tensor"),
    (lambda s: solvers.causal_delta_predict(s, True), "beta must be a float or a tensor"),
    (lambda s: solvers.causal_delta_predict(s, 0.1, torch.zeros(3, 3, dtype=F64)), "w0 must have shape"),
])
def test_causal_delta_rejects_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(_dyn(6))


def test_averaging_is_one_gd_step_of_size_one():
    b = sample_linear_regression(5, 7, 3, 2, generator=runtime.generator(0), dtype=F64)
    W = solvers.averaging(b.x, b.y)
    assert W.shape == (5, 2, 3)
    assert torch.allclose(W, gd(b.x, b.y, 1.0), atol=1e-14)
    by_hand = sum(b.y[:, i, :, None] * b.x[:, i, None, :] for i in range(7)) / 7
    assert torch.allclose(W, by_hand, atol=1e-14)


def test_nearest_neighbours_averages_the_k_closest_labels():
    x = torch.tensor([[[0.0], [1.0], [3.0], [10.0]]], dtype=F64)  # (1, 4, 1)
    y = torch.tensor([[[1.0], [2.0], [4.0], [100.0]]], dtype=F64)
    xq = torch.tensor([[1.2]], dtype=F64)
    assert solvers.nearest_neighbours(x, y, xq, k=1).item() == 2.0
    assert solvers.nearest_neighbours(x, y, xq, k=3).item() == pytest.approx(7 / 3)
    assert solvers.nearest_neighbours(x, y, xq, k=9).item() == pytest.approx(107 / 4)  # k capped at N
    b = sample_linear_regression(4, 6, 3, generator=runtime.generator(0), dtype=F64)
    far = b.x.clone()
    far[:, 1:] += 50.0  # only demonstration 0 stays close to nothing in particular; the query is near the origin
    assert torch.equal(solvers.nearest_neighbours(far, b.y, b.x_query * 0, k=1), b.y[:, 0])
    with pytest.raises(ValueError, match="input dimension dx"):
        solvers.nearest_neighbours(b.x, b.y, b.x_query[:, :2])
    with pytest.raises(ValueError, match="k"):
        solvers.nearest_neighbours(b.x, b.y, b.x_query, k=0)
