"""Tests of Part I's linear-regression lab: the closed-form risks (float64, against Monte Carlo and against each
other), the Bayes optimality of λ* on a grid, the error curves' bookkeeping (prefixes of the same sequences, the
noisy query, standard errors), K-step GD's limit, and the settings' validation."""

import math
from dataclasses import replace

import pytest
import torch

from icl_course import solvers, tasks
from icl_course.basics import (
    LAB,
    LAB_LEARNERS,
    LabCurves,
    LabSettings,
    gd_steps_curves,
    lab_error_curves,
    lab_learners,
    lab_tasks,
    ls_closed_form_check,
    ls_expected_error,
    ridge_bayes_check,
    ridge_bayes_risk,
    ridge_lambda_scan,
)

S = LAB.cpu
SMALL = replace(S, n_tasks=3000, gd_tasks=600, n_max=12, gd_n=(3, 4, 12))


@pytest.fixture(scope="module")
def batch():
    return lab_tasks(SMALL, seed=0)


def test_tasks_are_float64_gaussian_with_the_chapters_setting(batch):
    assert (S.dx, S.noise_std, S.teacher_scale, S.n_max, S.lambda_n) == (4, 0.5, 1.0, 20, 4)  # "Learning to learn"
    assert batch.x.dtype == torch.float64 and batch.x.shape == (3000, 12, 4)
    assert abs(float(batch.x.var()) - 1.0) < 0.03  # x ~ N(0, I), not the default U(-1/2, 1/2) (variance 1/12)
    resid = batch.y - batch.x @ batch.w.transpose(1, 2)
    assert abs(float(resid.std()) - 0.5) < 0.01  # σ = 0.5
    assert torch.equal(lab_tasks(SMALL, seed=0).x, batch.x) and not torch.equal(lab_tasks(SMALL, seed=1).x, batch.x)


def test_ls_closed_form_both_regimes_against_monte_carlo():
    """Conditional on X the expected error is exact: σ²(1 + tr (XᵀX)⁻¹) above d, s²(d − N) + σ²(1 + tr (XXᵀ)⁻¹)
    below; averaging over many X must give the closed form (float64, no label noise in the estimate)."""
    g = torch.Generator().manual_seed(5)
    d, sigma, s = 5, 0.5, 1.3
    for n in (2, 3, 9, 14):
        x = torch.randn(40_000, n, d, generator=g, dtype=torch.float64)
        if n > d:
            mc = sigma**2 * (1 + torch.linalg.inv(x.transpose(1, 2) @ x).diagonal(dim1=1, dim2=2).sum(-1))
        else:
            mc = s**2 * (d - n) + sigma**2 * (1 + torch.linalg.inv(x @ x.transpose(1, 2)).diagonal(dim1=1, dim2=2)
                                               .sum(-1))
        ref = ls_expected_error(d, n, sigma, s)
        assert abs(float(mc.mean()) - ref) < 4 * float(mc.std()) / 200 + 1e-12, (n, float(mc.mean()), ref)
    assert all(math.isinf(ls_expected_error(d, n, sigma)) for n in (d - 1, d, d + 1))
    assert ls_expected_error(d, d, 0.0, s) == 0.0 and ls_expected_error(d, 2, 0.0, s) == s**2 * 3


def test_ls_error_on_the_lab_tasks_matches_the_closed_form(batch):
    curves = lab_error_curves(batch, {LAB_LEARNERS[1]: lab_learners(SMALL)[LAB_LEARNERS[1]]})
    check = ls_closed_form_check(curves, SMALL)
    assert check.n == tuple(range(8, 13)) and check.max_abs_z < 4  # N ≥ d + 4 = 8
    assert check.closed_form[0] == pytest.approx(0.25 * (1 + 4 / 3) / 4, rel=1e-12)


def test_bayes_risk_is_the_exact_conditional_error_of_ridge(batch):
    """Given X, averaging ridge's error over w, ε and the query gives σ²(1 + tr (XᵀX + λ*I)⁻¹): resample w and ε for
    one fixed X many times."""
    g = torch.Generator().manual_seed(7)
    x = batch.x[:1, :3].expand(50_000, 3, 4)  # one fixed X, N = 3 < d = 4
    w = torch.randn(50_000, 1, 4, generator=g, dtype=torch.float64)
    y = x @ w.transpose(1, 2) + 0.5 * torch.randn(50_000, 3, 1, generator=g, dtype=torch.float64)
    err = ((solvers.ridge(x, y, 0.25) - w) ** 2).sum((1, 2)) + 0.25
    risk = float(ridge_bayes_risk(batch.x[:1, :3], 0.5)[0])
    assert abs(float(err.mean()) - risk) < 4 * float(err.std()) / math.sqrt(50_000)
    wrong = float(ridge_bayes_risk(batch.x[:1, :3], 0.5, teacher_scale=2.0)[0])  # a different λ is another number
    assert abs(wrong - risk) > 0.05


def test_ridge_scan_finds_lambda_star_and_pairs_the_differences(batch):
    scan = ridge_lambda_scan(batch, SMALL)
    assert scan.best == scan.lam_bayes == 0.25 and scan.n == 4
    i = scan.lambdas.index(0.25)
    assert scan.diff[i] == 0 and scan.diff_se[i] == 0
    assert all(d > 3 * e for j, (d, e) in enumerate(zip(scan.diff, scan.diff_se)) if j != i)
    assert all(ds < se for ds, se, j in zip(scan.diff_se, scan.se, range(99)) if j != i)  # pairing helps


def test_error_curves_use_prefixes_of_the_same_sequences_and_the_noisy_query(batch):
    seen = []

    def spy(x, y, q):
        seen.append((x, y))
        return torch.zeros(q.shape[0], 1, dtype=q.dtype)

    curves = lab_error_curves(batch, {"zero": spy}, n_values=(2, 7))
    assert [t[0].shape[1] for t in seen] == [2, 7] and torch.equal(seen[0][0], batch.x[:, :2])
    err = (batch.y_query[:, 0] ** 2) / 4
    assert torch.allclose(curves.mean[0], err.mean().expand(2), rtol=1e-12)
    assert float(curves.se[0, 0]) == pytest.approx(float(err.std() / math.sqrt(3000)), rel=1e-12)
    assert abs(float(curves.mean[0, 0]) - (4 + 0.25) / 4) < 4 * float(curves.se[0, 0])  # (d s² + σ²)/d
    assert curves.curve("zero").shape == (2,)
    assert torch.allclose(curves.median[0], err.median().expand(2), rtol=1e-12)  # the median over tasks, per N
    with pytest.raises(ValueError, match="name"):
        curves.curve("ridge")


def test_the_baselines_order_as_expected(batch):
    c = lab_error_curves(batch, lab_learners(SMALL))
    ridge, ls, gd1, knn, avg = c.mean
    assert bool((ridge[2:] < ls[2:]).all())  # N ≥ 3: the Bayes estimator beats least squares
    assert float(ls[3]) > 10 * float(ridge[3])  # the variance peak at N = d = 4
    assert bool((ridge < knn).all()) and bool((ridge < avg).all()) and bool((gd1 < avg).all())
    assert c.learners == LAB_LEARNERS


def test_gd_one_step_uses_the_gaussian_step_size():
    """η*(N) = N / (d + N + 1 + σ²/s²) for x ~ N(0, I); the solvers' default (uniform inputs of range 1) differs."""
    s = SMALL
    eta = solvers.optimal_gd_lr(4, 10, input_dist="gaussian", input_range=12**0.5, noise_std=0.5)
    assert eta == pytest.approx(10 / (4 + 10 + 1 + 0.25), rel=1e-12)
    b = lab_tasks(replace(s, n_tasks=4), seed=3)
    x, y, q = b.x[:, :10], b.y[:, :10], b.x_query
    got = lab_learners(s)[LAB_LEARNERS[2]](x, y, q)
    assert torch.allclose(got, solvers.predict(solvers.gd(x, y, eta), q), rtol=1e-12)


def test_many_gd_steps_reach_least_squares_and_early_stopping_regularises(batch):
    g = gd_steps_curves(batch, replace(SMALL, gd_steps=(1, 16, 2000)))
    j12, jd = g.n.index(12), g.n.index(4)
    assert float(g.mean[-1, j12]) == pytest.approx(float(g.ls[j12]), rel=1e-6)  # K → ∞ is least squares
    assert float(g.mean[1, jd]) < 0.5 * float(g.ls[jd])  # at N = d = 4, K = 16 beats least squares by far
    assert float(g.ridge[jd]) <= float(g.mean[:, jd].min())  # and nothing beats the Bayes ridge


@pytest.mark.parametrize("kw, match", [({"dx": 0}, "dx"), ({"noise_std": 0.0}, "noise_std"),
                                       ({"n_tasks": 1}, "n_tasks"), ({"lambda_factors": (0.5, 2.0)}, "lambda_factors"),
                                       ({"gd_steps": (4, 1)}, "gd_steps"), ({"gd_n": (30,)}, "gd_n")])
def test_bad_settings_are_named(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        replace(S, **kw)


def test_bad_inputs_are_named(batch):
    with pytest.raises(TypeError, match="batch"):
        lab_error_curves((batch.x, batch.y), lab_learners(SMALL))
    with pytest.raises(ValueError, match="n_values"):
        lab_error_curves(batch, lab_learners(SMALL), n_values=(13,))
    with pytest.raises(ValueError, match="learner 'bad'"):
        lab_error_curves(batch, {"bad": lambda x, y, q: q})
    with pytest.raises(TypeError, match="settings"):
        ridge_lambda_scan(batch, {"dx": 5})
    with pytest.raises(ValueError, match="x"):
        ridge_bayes_risk(batch.x[0], 0.5)
    with pytest.raises(ValueError, match="N >= d"):
        ls_closed_form_check(LabCurves(("least squares",), (3,), torch.ones(1, 1), torch.ones(1, 1)), SMALL)
    assert isinstance(LAB.paper, LabSettings) and LAB.paper.dx == 20
    assert isinstance(tasks.RegressionBatch(*batch), tasks.RegressionBatch)


def test_gd_curves_continue_the_same_iterates(batch):
    """The K-th entry is K steps of solvers.gd from 0 with η = 1/λ_max(Σ̂), not K − K_prev steps (float64)."""
    g = gd_steps_curves(batch, replace(SMALL, gd_steps=(2, 5), gd_n=(6,), gd_tasks=50))
    x, y, w = batch.x[:50, :6], batch.y[:50, :6], batch.w[:50]
    lr = 1 / torch.linalg.eigvalsh(x.transpose(1, 2) @ x / 6)[:, -1]
    err = (((solvers.gd(x, y, lr, steps=5) - w) ** 2).sum((1, 2)) + 0.25) / 4
    assert float(g.mean[1, 0]) == pytest.approx(float(err.mean()), rel=1e-10)
    ls_err = (((solvers.least_squares(x, y) - w) ** 2).sum((1, 2)) + 0.25) / 4
    assert float(g.ls_median[0]) == pytest.approx(float(ls_err.median()), rel=1e-10)
    assert float(g.ls[0]) == pytest.approx(float(ls_err.mean()), rel=1e-10)


def test_ridge_bayes_check_agrees_for_lambda_star_and_not_for_another_lambda(batch):
    c = lab_error_curves(batch, {LAB_LEARNERS[0]: lab_learners(SMALL)[LAB_LEARNERS[0]]})
    chk = ridge_bayes_check(c, batch, SMALL)
    assert chk.n == tuple(range(1, 13)) and chk.max_abs_z < 4
    assert chk.bayes_risk[2] == pytest.approx(float(ridge_bayes_risk(batch.x[:, :3], 0.5).mean()) / 4, rel=1e-12)
    wrong = lab_error_curves(batch, {LAB_LEARNERS[0]: lambda x, y, q: solvers.predict(solvers.ridge(x, y, 4.0), q)})
    assert ridge_bayes_check(wrong, batch, SMALL).max_abs_z > 4  # ridge at 16 λ* is not at the Bayes risk


def test_ls_test_error_checker_tests_the_boundaries_n_equals_d_plus_minus_2():
    """F13: a solution with strict inequalities (inf at N = d ± 2, where the expectation is finite) is rejected."""
    from icl_course.exercises import REGISTRY
    from icl_course.exercises.basics.regression_lab import check_ls_test_error

    ls_test_error = REGISTRY["basics.ls_test_error"].solution

    check_ls_test_error(ls_test_error)

    def strict(dx, n, noise_std, teacher_scale):
        d, var, s2 = dx, noise_std**2, teacher_scale**2
        if n > d + 2:
            return var * (1 + d / (n - d - 1))
        if n < d - 2:
            return s2 * (d - n) + var * (1 + n / (d - n - 1))
        return math.inf

    with pytest.raises(AssertionError, match="boundaries"):
        check_ls_test_error(strict)

    def strict_low(dx, n, noise_std, teacher_scale):
        return math.inf if n == dx - 2 else ls_test_error(dx, n, noise_std, teacher_scale)

    with pytest.raises(AssertionError, match="d − 2 is finite"):
        check_ls_test_error(strict_low)
