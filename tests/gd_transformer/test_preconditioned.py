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


# ---------------------------------------------------------------- the exercise: Γ* with a teacher scale and noise
def _noisy_population_loss(G, cov, n, noise_std, teacher_scale):
    """2/s² × the expected one-step loss with w ~ N(0, s² I) and noise ε ~ N(0, σ²) on every label: the noise-free
    loss plus (σ²/s²)(tr(ΓΣΓᵀΣ)/N + 1), from the error's extra term (1/N) εᵀXΓx_q − ε_q."""
    return (_population_loss(G, cov, n)
            + noise_std**2 / teacher_scale**2 * (torch.trace(G @ cov @ G.T @ cov) / n + 1))


@pytest.mark.parametrize("condition,n,noise_std,teacher_scale", [(16.0, 10, 0.5, 1.0), (4.0, 25, 1.0, 2.0)])
def test_the_exercise_s_noisy_optimum_is_the_minimiser(condition, n, noise_std, teacher_scale):
    from icl_course.exercises import REGISTRY, all_exercises

    all_exercises()
    A = tasks.anisotropic_matrix(6, condition, seed=1, dtype=F64)
    cov = A @ A.T / 12
    G = REGISTRY["gd_transformer.optimal_preconditioner"].solution(cov, n, noise_std, teacher_scale)
    G = G.requires_grad_(True)
    loss = _noisy_population_loss(G, cov, n, noise_std, teacher_scale)
    (grad,) = torch.autograd.grad(loss, G)
    assert float(grad.abs().max()) < 1e-10 * float(loss)
    noise_free = solvers.optimal_preconditioner_gaussian(cov, n)
    assert _noisy_population_loss(noise_free, cov, n, noise_std, teacher_scale) > loss  # the noise matters


def test_the_exercise_s_noisy_optimum_wins_on_sampled_tasks():
    """Independent of the derivation: on 100,000 sampled noisy tasks the exercise's Γ* has a lower loss than the
    noise-free Γ* (a paired difference of more than 5 standard errors), and is as good as the best Γ fitted to
    another 100,000 tasks by least squares (within 0.5 %)."""
    from icl_course.exercises import REGISTRY, all_exercises

    all_exercises()
    kw, cov = gt.anisotropic_setting(condition=16.0)
    noise = {"noise_std": 0.5, "teacher_scale": 1.0}
    b = tasks.sample_linear_regression(100_000, 10, 10, generator=runtime.generator(5), dtype=F64, **noise, **kw)

    def losses(G):
        pred = solvers.predict(solvers.preconditioned_gd_step(b.x, b.y, G.to(F64)), b.x_query)
        return 0.5 * (pred - b.y_query).pow(2).sum(-1)

    star = losses(REGISTRY["gd_transformer.optimal_preconditioner"].solution(cov, 10, 0.5, 1.0))
    diff = losses(solvers.optimal_preconditioner_gaussian(cov, 10)) - star
    assert float(diff.mean()) > 5 * float(diff.std()) / diff.numel() ** 0.5
    fitted = losses(gt.preconditioner_monte_carlo(100_000, seed=4, **noise, **kw))
    assert float(star.mean()) <= 1.005 * float(fitted.mean())


def test_the_exercise_s_checker_names_the_two_slips():
    from icl_course.exercises import REGISTRY, ExerciseFailed, all_exercises

    all_exercises()
    ex = REGISTRY["gd_transformer.optimal_preconditioner"]
    noise_free = lambda cov, n, sig, s: solvers.optimal_preconditioner_gaussian(cov, n)  # noqa: E731
    inverted = lambda cov, n, sig, s: ex.solution(cov, n, s, sig) if sig else ex.solution(cov, n, sig, s)  # noqa: E731
    with pytest.raises(ExerciseFailed, match="noise-free optimum"):
        ex.check(noise_free)
    with pytest.raises(ExerciseFailed, match="σ²/s², not s²/σ²"):
        ex.check(inverted)


def test_margin_over_gd_is_the_paired_mean_and_its_standard_error():
    b = tasks.regression_eval_set(400, 10, 4, seed=3, dtype=F64)
    model = gt.constructed_lsa(4, 1, 10, 1.5, dtype=F64)  # exactly one GD step at η = 1.5
    per_task = lambda lr: 0.5 * ((solvers.predict(solvers.gd(b.x, b.y, lr), b.x_query) - b.y_query) ** 2).sum(-1)  # noqa: E731
    diff = per_task(2.5) - per_task(1.5)
    mean, se = gt.margin_over_gd(model, b, 2.5)
    assert mean == pytest.approx(float(diff.mean()), rel=1e-10)
    assert se == pytest.approx(float(diff.std() / 20), rel=1e-10)
    # paired: the differences vary much less than either loss, so the paired SE is far below an unpaired one
    unpaired = float((per_task(2.5).var() / 400 + per_task(1.5).var() / 400).sqrt())
    assert se < 0.5 * unpaired
    assert gt.margin_over_gd(model, b, 1.5) == pytest.approx((0.0, 0.0), abs=1e-12)  # GD against itself
    flipped, _ = gt.margin_over_gd(gt.constructed_lsa(4, 1, 10, 2.5, dtype=F64), b, 1.5)
    assert flipped == pytest.approx(-mean, rel=1e-10)


def test_margin_over_gd_checks_its_inputs():
    b = tasks.regression_eval_set(1, 10, 4, seed=3)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        gt.margin_over_gd(gt.constructed_lsa(4, 1, 10, 1.5), b, 1.0)
    with pytest.raises(ValueError, match="lr"):
        gt.margin_over_gd(gt.constructed_lsa(4, 1, 10, 1.5), b, float("nan"))
