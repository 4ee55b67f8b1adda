"""Exercises of Part IV, chapter "Few-shot learning by prompting".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead. The checkers compare against the package
(:func:`icl_course.mesa.interleave`, :func:`icl_course.mesa.spurious_limit`,
:func:`icl_course.solvers.causal_ridge_predict`) on fixed seeds and name the classic slips: the examples stacked
instead of interleaved, the current example counted as seen, the prediction read one position late, and a limit
that forgets either half.
"""

from __future__ import annotations

import torch

from ... import mesa, solvers
from .. import exercise
from ._common import PART, _expect

F64 = torch.float64


def _examples(seed: int, B: int = 3, K: int = 6, D: int = 4) -> mesa.RegressionExamples:
    return mesa.regression_examples(B, seed=seed, n_examples=K, dim=D, dtype=F64)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    """Equal to float32 round-off; every slip the checkers name is off by far more. The absolute part is ``tol``
    too: a float32 ridge solve (λ = 0.1) lands ~5e-7 from the float64 answer on some CPUs, past the 1e-7 this
    allowed before, while the values are of order one."""
    return bool(torch.allclose(a.detach().to(F64), b.to(F64), rtol=tol, atol=tol))


# ---------------------------------------------------------------- 1. a prompt from examples
@exercise(part=PART, name="interleave_prompt", title="Lay the examples out as one sequence", difficulty="★☆☆",
          minutes=5,
          hint="Stack x and y along a new axis after the example axis — (B, K, 2, D) — and merge the two axes, so "
               "that x_i is followed by its own y_i.",
          stub='''def interleave_prompt(x, y):
    """x, y (B, K, D) -> the prompt [x_1, y_1, x_2, y_2, …], (B, 2K, D)."""
    # YOUR CODE HERE
    raise NotImplementedError("interleave_prompt")
''')
def check_interleave_prompt(fn) -> None:
    ex = _examples(1)
    got = _expect(fn(ex.x.clone(), ex.y.clone()), (3, 12, 4), "interleave_prompt(x, y)")
    ref = mesa.interleave(ex.x, ex.y)[0]
    if _close(got, ref):
        return
    assert not _close(got, torch.cat([ex.x, ex.y], dim=1)), (
        "these are all the x followed by all the y: each x_i must be followed by its own y_i")
    assert not _close(got, mesa.interleave(ex.y, ex.x)[0]), "the prompt starts with x_1, then y_1"
    raise AssertionError(f"the prompt differs (max abs error {float((got - ref).abs().max()):.3g})")


# ---------------------------------------------------------------- 2. GD on the task's pairs
@exercise(part=PART, name="task_pair_gd", title="One GD step on the examples seen so far", difficulty="★☆☆",
          minutes=5,
          hint="One GD step from W = 0 on ½ Σ_j ‖y_j − W x_j‖² gives W = η Σ_j y_j x_jᵀ; apply it to x_i with only "
               "the examples j < i (a strictly lower-triangular mask).",
          stub='''def task_pair_gd(x, y, lr):
    """x, y (B, K, D) -> ŷ_i = η Σ_(j<i) (x_j · x_i) y_j for every example i, (B, K, D)."""
    # YOUR CODE HERE
    raise NotImplementedError("task_pair_gd")
''')
def check_task_pair_gd(fn) -> None:
    for seed, lr in ((2, 0.1), (3, 0.7)):
        ex = _examples(seed)
        got = _expect(fn(ex.x.clone(), ex.y.clone(), lr), tuple(ex.x.shape), "task_pair_gd(x, y, lr)")
        states, queries = mesa.interleave(ex.x, ex.y, torch.zeros(ex.x.shape[-1], dtype=F64))
        ref = solvers.causal_gd_predict(states, lr)[:, queries]  # GD-1 on the zero-separator prompt
        if _close(got, ref):
            continue
        assert not _close(got, lr * (ex.x @ ex.x.transpose(1, 2)).tril() @ ex.y), (
            "example i's own y_i is what is being predicted: sum over j < i only")
        assert not _close(got, lr * (ex.x @ ex.x.transpose(1, 2)).tril(-1) @ ex.x), "the values are the targets y_j"
        raise AssertionError(f"the predictions differ (max abs error {float((got - ref).abs().max()):.3g})")


# ---------------------------------------------------------------- 3. the limit of the spurious pairs
@exercise(part=PART, name="spurious_limit_loss",
          title="Half of the answer: the loss of ridge on every pair",
          difficulty="★★☆", minutes=20,
          hint="With x ~ U(−r, r)^D, E x xᵀ = (r²/3) I and, W being orthogonal, E y yᵀ = α² (r²/3) I for y = α W x. "
               "The spurious pairs (y_i, x_(i+1)) add E y yᵀ to the Gram matrix but nothing to the cross term on "
               "average. What does the fit tend to, and what is ½ E‖ŷ − y‖² then?",
          stub='''def spurious_limit_loss(dim, x_range, scale):
    """½ E||ŷ − y||² on the query of ridge fitted on all pairs of an infinitely long prompt of the task y = scale · W x
    (W orthogonal), x ~ U(−x_range, x_range)^dim; a float."""
    # YOUR CODE HERE
    raise NotImplementedError("spurious_limit_loss")
''')
def check_spurious_limit_loss(fn) -> None:
    for dim, r, a in ((10, 1.0, 1.0), (4, 2.5, 1.0), (10, 1.0, 2.0), (6, 0.5, 0.5)):
        got = float(fn(dim, r, a))
        ref = a**6 * dim * r**2 / (6 * (1 + a**2) ** 2)  # the checker's own: the fit tends to W a/(1 + a²)
        if abs(got - ref) <= 1e-9 * ref:
            continue
        assert abs(got - a**2 * dim * r**2 / 6) > 1e-9, (
            "that is the zero predictor's loss: the fit does not tend to 0")
        assert a == 1 or abs(got - a**2 * dim * r**2 / 24) > 1e-9, (
            f"for scale={a:g} the fit is no longer W/2 times the scale: the spurious pairs' Gram term scales too")
        assert abs(got - 2 * ref) > 1e-9 * ref, "keep the factor ½ of the loss"
        assert r == 1 or abs(got - ref / r) > 1e-9 * ref, (
            "E x_d² = r²/3 for x_d ~ U(−r, r): the range enters squared")
        raise AssertionError(f"got {got:.6g}, expected {ref:.6g} for dim={dim}, x_range={r}, scale={a}")


# ---------------------------------------------------------------- 4. what the mesa layer answers on a prompt
@exercise(part=PART, name="prompted_ridge", title="Ridge regression on every pair of a prompt", difficulty="★☆☆",
          minutes=10,
          hint="Build the prompt, run mesa ridge regression on it (solvers.causal_ridge_predict fits W_t on the "
               "pairs (s_(j−1), s_j), j ≤ t, and predicts s_(t+1) = W_t s_t), and keep the outputs at the positions "
               "of the x_i.",
          stub='''def prompted_ridge(x, y, lam):
    """x, y (B, K, D) -> ridge's answer for each y_i from the prompt [x_1, y_1, x_2, y_2, …] up to x_i, (B, K, D)."""
    # YOUR CODE HERE
    raise NotImplementedError("prompted_ridge")
''')
def check_prompted_ridge(fn) -> None:
    for seed, lam in ((4, 0.1), (5, 1.0)):
        ex = _examples(seed)
        got = _expect(fn(ex.x.clone(), ex.y.clone(), lam), tuple(ex.x.shape), "prompted_ridge(x, y, lam)")
        states, queries = mesa.interleave(ex.x, ex.y)
        pred = solvers.causal_ridge_predict(states, lam)
        ref = pred[:, queries]
        if _close(got, ref):
            continue
        assert not _close(got, pred[:, queries + 1]), (
            "read at the position of x_i (its output predicts the next token, y_i), not at y_i")
        assert not _close(got, solvers.causal_ridge_predict(states, lam, "j<t")[:, queries]), (
            "a causal mesa layer fits every pair up to the current token, j ≤ t (pairs='j<=t')")
        raise AssertionError(f"the answers differ (max abs error {float((got - ref).abs().max()):.3g})")


__all__ = ["check_interleave_prompt", "check_task_pair_gd", "check_spurious_limit_loss", "check_prompted_ridge"]
