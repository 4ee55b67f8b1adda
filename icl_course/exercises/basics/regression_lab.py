"""Exercises of Part I, chapter "The linear-regression lab".

The checkers compare with :mod:`icl_course.solvers` and :func:`icl_course.basics.ls_expected_error` on fixed float64
tasks and recognise the classic slips by name: λ inverted or forgotten in the posterior mean, or added to every entry
instead of the diagonal; the inverse-Wishart mean without its −1, or the query's own noise left out; the GD step
summed instead of averaged over the demonstrations; k-NN with k > N, or distances taken over the wrong axis.
"""

from __future__ import annotations

import math

import torch

from ... import runtime, solvers, tasks
from ...basics import ls_expected_error
from .. import exercise

__all__ = ["check_posterior_mean_weights", "check_ls_test_error", "check_gd_step_from_zero", "check_knn_predict"]

PART = "basics"
F64 = torch.float64


def _tasks(seed: int, n: int, dx: int = 4, batch: int = 6, noise_std: float = 0.5, teacher_scale: float = 2.0):
    return tasks.sample_linear_regression(batch, n, dx, input_dist="gaussian", input_range=12**0.5,
                                          teacher_scale=teacher_scale, noise_std=noise_std,
                                          generator=runtime.generator(seed), dtype=F64)


def _expect(value: object, shape: tuple, what: str) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), f"{what} must be a torch.Tensor, got {type(value).__name__}"
    assert tuple(value.shape) == shape, f"{what} must have shape {shape}, got {tuple(value.shape)}"
    return value.to(F64)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------- 1. the posterior mean
@exercise(part=PART, name="posterior_mean_weights", title="The posterior mean is ridge", difficulty="★☆☆", minutes=5,
          hint="The posterior precision is XᵀX/σ² + I/s²; multiply through by σ²: W = Yᵀ X (XᵀX + λ I)⁻¹ with "
               "λ = σ²/s² (variances, noise over prior) on the diagonal only. Use torch.linalg.solve.",
          stub='''def posterior_mean_weights(x, y, noise_std, teacher_scale):
    """x (B, N, dx), y (B, N, dy); label noise σ = noise_std, prior w ~ N(0, s² I) with s = teacher_scale
    -> the posterior mean of the weights, W (B, dy, dx)."""
    # YOUR CODE HERE
    raise NotImplementedError("posterior_mean_weights")
''')
def check_posterior_mean_weights(fn) -> None:
    b = _tasks(31, n=3)  # N < d: the prior matters; σ = 0.5, s = 2 make σ²/s², s²/σ² and σ/s all different
    sigma, s = 0.5, 2.0
    got = _expect(fn(b.x.clone(), b.y.clone(), sigma, s), (6, 1, 4), "posterior_mean_weights(x, y, σ, s)")
    ref = solvers.ridge(b.x, b.y, sigma**2 / s**2)
    if _close(got, ref):
        return
    for lam, slip in ((s**2 / sigma**2, "λ is inverted: it is σ²/s² (noise variance over prior variance), not s²/σ²"),
                      (sigma / s, "λ is a ratio of variances, σ²/s², not of standard deviations σ/s"),
                      (3 * sigma**2 / s**2, "λ does not grow with N: the loss here is the sum over demonstrations, "
                                            "so λ = σ²/s², not N·σ²/s²")):
        assert not _close(got, solvers.ridge(b.x, b.y, lam)), slip
    ones = b.x.transpose(1, 2) @ b.x + sigma**2 / s**2  # λ added to every entry
    wrong = torch.linalg.solve(ones, b.x.transpose(1, 2) @ b.y).transpose(1, 2)
    assert not _close(got, wrong), "λ goes on the diagonal only: XᵀX + λ I, not XᵀX + λ (every entry)"
    assert not _close(got, solvers.least_squares(b.x, b.y)), (
        "that is least squares (no prior): with N < d it interpolates the noise; add λ I with λ = σ²/s²")
    raise AssertionError("the weights differ from the posterior mean Yᵀ X (XᵀX + σ²/s² I)⁻¹")


# ---------------------------------------------------------------- 2. least squares' risk
@exercise(part=PART, name="ls_test_error",
          title="Least squares' test error in closed form", difficulty="★☆☆",
          minutes=5,
          hint="For x ~ N(0, I) the test error of weights ŵ is ‖ŵ − w‖² + σ² (the query's own noise). N ≥ d + 2: "
               "ŵ − w = (XᵀX)⁻¹Xᵀε and E (XᵀX)⁻¹ = I/(N − d − 1). N ≤ d − 2: the component of w outside the span of "
               "the N inputs is lost (s² per missing dimension) and E (XXᵀ)⁻¹ = I/(d − N − 1). In between: math.inf.",
          stub='''def ls_test_error(dx, n, noise_std, teacher_scale):
    """Expected test error E (ŷ − y_query)² of min-norm least squares from n demonstrations, inputs x ~ N(0, I) in
    dx dimensions, teacher w ~ N(0, s² I) (s = teacher_scale), label noise σ = noise_std -> a float (math.inf where
    it diverges)."""
    # YOUR CODE HERE
    raise NotImplementedError("ls_test_error")
''')
def check_ls_test_error(fn) -> None:
    d, sigma, s = 6, 0.5, 1.5
    for n in (10, 14, 40):
        got, ref = float(fn(d, n, sigma, s)), ls_expected_error(d, n, sigma, s)
        if abs(got - ref) <= 1e-10 * ref:
            continue
        assert abs(got - sigma**2 * (1 + d / (n - d))) > 1e-10, (
            "the inverse Wishart mean is I/(N − d − 1), not I/(N − d)")
        assert abs(got - sigma**2 * d / (n - d - 1)) > 1e-10, (
            "add the query label's own noise σ²: σ²(1 + d/(N − d − 1))")
        assert abs(got - ref / d) > 1e-10, "return the error itself, not error/d"
        raise AssertionError(f"N = {n} (overdetermined): expected {ref:.6g}, got {got:.6g}")
    for n in (d + 2, d - 2):  # the boundaries, where a strict inequality (n > d + 2, n < d − 2) wrongly gives inf
        got, ref = float(fn(d, n, sigma, s)), ls_expected_error(d, n, sigma, s)
        assert not math.isinf(got), (
            f"N = {n} = d {'+' if n > d else '−'} 2 is finite ({ref:.6g}): the expectation diverges only at "
            "N ∈ {d − 1, d, d + 1}; check the boundaries of your cases (N ≥ d + 2 and N ≤ d − 2, not > and <)")
        assert abs(got - ref) <= 1e-10 * ref, f"N = {n} (a boundary case): expected {ref:.6g}, got {got:.6g}"
    for n in (1, 3):
        got, ref = float(fn(d, n, sigma, s)), ls_expected_error(d, n, sigma, s)
        assert abs(got - ref) <= 1e-10 * ref, (
            f"N = {n} < d (underdetermined): expected {ref:.6g}, got {got:.6g} — the min-norm solution loses the "
            "s²(d − N) of w outside the inputs' span, and the noise enters through E (XXᵀ)⁻¹ = I/(d − N − 1)")
    for n in (d - 1, d, d + 1):
        assert math.isinf(float(fn(d, n, sigma, s))), (
            f"at N = {n} the expected error is infinite (the inverse Wishart mean diverges): return math.inf")


# ---------------------------------------------------------------- 3. one GD step from zero
@exercise(part=PART, name="gd_step_from_zero", title="One GD step from zero, and averaging", difficulty="★☆☆",
          minutes=5,
          hint="At W = 0 the gradient of L(W) = 1/(2N) Σ_i ‖W x_i − y_i‖² is −(1/N) Σ_i y_i x_iᵀ, so W₁ = (η/N) Yᵀ X, "
               "shape (B, dy, dx). With η = 1 this is Garg et al.'s averaging estimator.",
          stub='''def gd_step_from_zero(x, y, lr):
    """x (B, N, dx), y (B, N, dy), step size η = lr -> W (B, dy, dx) after one GD step from W = 0 on
    L(W) = 1/(2N) Σ_i ‖W x_i − y_i‖²."""
    # YOUR CODE HERE
    raise NotImplementedError("gd_step_from_zero")
''')
def check_gd_step_from_zero(fn) -> None:
    b = _tasks(32, n=7)
    got = fn(b.x.clone(), b.y.clone(), 0.3)
    assert isinstance(got, torch.Tensor), f"return a tensor W (B, dy, dx), got {type(got).__name__}"
    assert tuple(got.shape) != (6, 4, 1), "W has shape (B, dy, dx) = (6, 1, 4): transpose Xᵀ Y into Yᵀ X"
    got = _expect(got, (6, 1, 4), "gd_step_from_zero(x, y, lr)")
    ref = solvers.gd(b.x, b.y, 0.3)
    if _close(got, ref):
        one = _expect(fn(b.x.clone(), b.y.clone(), 1.0), (6, 1, 4), "gd_step_from_zero(x, y, 1.0)")
        assert _close(one, solvers.averaging(b.x, b.y)), "with η = 1 the step must equal averaging"
        return
    assert not _close(got, -ref), "the sign is flipped: a step goes *against* the gradient, W₁ = −η ∇L(0)"
    assert not _close(got, 7 * ref), "divide by N: the loss is the *mean* over the N demonstrations"
    raise AssertionError("W₁ differs from (η/N) Σ_i y_i x_iᵀ")


# ---------------------------------------------------------------- 4. k nearest neighbours
@exercise(part=PART, name="knn_predict", title="k nearest neighbours", difficulty="★★☆", minutes=15,
          hint="Per task, the squared distance of each of the N inputs to the query is a sum over the dx coordinates "
               "(dist has shape (B, N)); take the k smallest (topk(..., largest=False)), average their labels; when "
               "N < k, use all N.",
          stub='''def knn_predict(x, y, x_query, k):
    """x (B, N, dx), y (B, N, dy), x_query (B, dx), k -> ŷ (B, dy): the mean label of the min(k, N) demonstrations
    nearest to the query (Euclidean distance)."""
    # YOUR CODE HERE
    raise NotImplementedError("knn_predict")
''')
def check_knn_predict(fn) -> None:
    b = _tasks(33, n=9, dx=3)
    got = _expect(fn(b.x.clone(), b.y.clone(), b.x_query.clone(), 3), (6, 1), "knn_predict(x, y, x_query, 3)")
    ref = solvers.nearest_neighbours(b.x, b.y, b.x_query, k=3)
    if not _close(got, ref):
        far = torch.gather(b.y, 1, ((b.x - b.x_query[:, None]) ** 2).sum(-1).topk(3, dim=1).indices[..., None]).mean(1)
        assert not _close(got, far), "those are the k *farthest* demonstrations: topk(..., largest=False)"
        raise AssertionError("the prediction differs from the mean label of the 3 nearest demonstrations — is the "
                             "distance summed over the dx coordinates (last axis), giving one distance per "
                             "demonstration, (B, N)?")
    few = _tasks(34, n=2, dx=3)
    try:
        small = fn(few.x.clone(), few.y.clone(), few.x_query.clone(), 3)
    except (RuntimeError, IndexError) as e:
        raise AssertionError(f"with N = 2 < k = 3 your function raised ({type(e).__name__}); use min(k, N) "
                             "neighbours") from None
    small = _expect(small, (6, 1), "knn_predict with N = 2, k = 3")
    assert _close(small, few.y.mean(1)), "with N < k every demonstration is a neighbour: the mean of all N labels"
