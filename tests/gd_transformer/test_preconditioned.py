"""Anisotropic inputs and preconditioned GD (Part III, chapter 3)."""

from __future__ import annotations

import pytest
import torch

from icl_course import gd_transformer as gt
from icl_course import runtime, solvers, tasks
from tests.helpers import F64


def _population_loss(G, cov, n):
    """2 × the expected one-step loss for x ~ N(0, Σ), w ~ N(0, I) (the proof of the chapter's proposition)."""
    trS = torch.trace(cov)
    return ((1 + 1 / n) * torch.trace(cov @ G @ cov @ G.T @ cov) + trS / n * torch.trace(G @ cov @ G.T @ cov)
            - 2 * torch.trace(cov @ G.T @ cov) + trS)


@pytest.mark.parametrize("condition,n", [(16.0, 10), (4.0, 3), (1.0, 20)])
def test_closed_form_is_the_minimiser(condition, n):
    A = tasks.anisotropic_matrix(6, condition, seed=1, dtype=F64)
    cov = A @ A.T / 12
    G = solvers.optimal_preconditioner_gaussian(cov, n).requires_grad_(True)
    (grad,) = torch.autograd.grad(_population_loss(G, cov, n), G)
    assert float(grad.abs().max()) < 1e-10 * float(_population_loss(G, cov, n))
    worse = _population_loss(G.detach() * 1.05, cov, n)
    assert worse > _population_loss(G.detach(), cov, n)


def test_isotropic_case_is_a_scaled_identity():
    d, n, var = 10, 10, 1 / 12
    G = solvers.optimal_preconditioner_gaussian(var * torch.eye(d, dtype=F64), n)
    assert torch.allclose(G, n / (var * (n + 1 + d)) * torch.eye(d, dtype=F64), rtol=1e-12)


def test_monte_carlo_agrees_with_the_closed_form_in_loss():
    kw, cov = gt.anisotropic_setting(condition=16.0)
    mc = gt.preconditioner_monte_carlo(100_000, seed=3, **kw)
    star = solvers.optimal_preconditioner_gaussian(cov, 10)
    # the loss is flat along low-variance directions: compare losses, which is what optimality is about
    assert float(_population_loss(mc, cov, 10)) <= 1.01 * float(_population_loss(star, cov, 10))
    assert float(torch.linalg.matrix_norm(mc - star) / torch.linalg.matrix_norm(star)) < 0.15


def test_preconditioned_step_generalises_gd_and_rejects_bad_shapes():
    b = tasks.sample_linear_regression(3, 7, 4, 2, generator=runtime.generator(0), dtype=F64)
    W = solvers.preconditioned_gd_step(b.x, b.y, 1.7 * torch.eye(4, dtype=F64))
    assert torch.allclose(W, solvers.gd(b.x, b.y, 1.7), rtol=1e-12)
    with pytest.raises(ValueError, match="precond"):
        solvers.preconditioned_gd_step(b.x, b.y, torch.eye(3, dtype=F64))


def test_effective_preconditioner_of_the_construction():
    layer = gt.constructed_lsa(10, 1, 10, 6.0, dtype=F64).layer(0)
    assert torch.allclose(gt.effective_preconditioner(layer, 10, 10), 6.0 * torch.eye(10, dtype=F64), rtol=1e-12)


def test_anisotropic_matrix_and_input_covariance():
    A = tasks.anisotropic_matrix(5, 9.0, seed=2, dtype=F64)
    assert torch.allclose(A, A.T)
    eig = torch.linalg.eigvalsh(A @ A.T)
    assert float(eig.max() / eig.min()) == pytest.approx(9.0, rel=1e-9)
    b = tasks.sample_linear_regression(100_000, 1, 5, generator=runtime.generator(3), dtype=F64,
                                       input_dist="gaussian", input_matrix=A)
    emp = torch.cov(b.x[:, 0].T)
    assert torch.allclose(emp, A @ A.T / 12, atol=5e-3)
    with pytest.raises(ValueError, match="condition"):
        tasks.anisotropic_matrix(5, 0.5)
    with pytest.raises(ValueError, match="input_matrix"):
        tasks.sample_linear_regression(2, 3, 5, input_matrix=torch.eye(4))


def test_escape_rule_needs_a_threshold():
    with pytest.raises(ValueError, match="escape_loss"):
        gt.train_lsa(steps=10, after_escape=5, eval_size=10, batch_size=8, progress=False)
