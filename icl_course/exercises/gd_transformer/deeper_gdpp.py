"""Exercises of Part III, chapter "Deeper layers learn GD++".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead.
"""

from __future__ import annotations

import torch

from ... import gd_transformer as gt
from ... import runtime, solvers
from ...models import LinearSelfAttention, LSAStack
from .. import exercise
from ._common import PART, _batch, _expect


# ---------------------------------------------------------------- 6. one GD++ layer by hand
@exercise(part=PART, name="gdpp_weights",
          title="One GD++ layer by hand", difficulty="★☆☆", minutes=5,
          hint="Start from Proposition 1's matrices; the x-block of P W_V must be −γ I so that every token's x "
               "moves by −γ Σ_i x_i x_iᵀ x.",
          stub='''def gdpp_weights(dx, dy, n_context, lr, gamma):
    """Return float64 (W_Q, W_K, W_V, P), (D, D) in (out, in) layout, for one GD++ layer: a GD step with step
    size lr on the y-slots and the curvature correction x ↦ (I − γ XᵀX) x on every token's x."""
    # YOUR CODE HERE
    raise NotImplementedError("gdpp_weights")
''')
def check_gdpp_weights(fn) -> None:
    for seed, (B, N, dx, dy), lr, gamma in ((7, (4, 8, 3, 1), 1.3, 0.2), (8, (3, 6, 4, 2), 0.7, 0.05)):
        b = _batch(seed, B, N, dx, dy)
        mats = fn(dx, dy, N, lr, gamma)
        assert isinstance(mats, (tuple, list)) and len(mats) == 4, "return the four matrices (W_Q, W_K, W_V, P)"
        mats = [_expect(m, (dx + dy, dx + dy), name).to(torch.float64)
                for m, name in zip(mats, ("W_Q", "W_K", "W_V", "P"))]
        stack = LSAStack([LinearSelfAttention.from_matrices(*mats)], shared=True, n_layers=2)
        with torch.no_grad():
            got = gt.readout(stack(b.tokens()), dx)  # two applications: the correction shows from layer 2 on
        ref = solvers.gd_plus_plus(b.x, b.y, b.x_query, lr, gamma, 2)
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
            f"two layers with your weights differ from two GD++ steps (max abs error "
            f"{float((got - ref).abs().max()):.3g}) for dx={dx}, dy={dy}, lr={lr}, γ={gamma}")


# ---------------------------------------------------------------- 7. the curvature correction
@exercise(part=PART, name="curvature_correction", title="The curvature correction and its eigenvalue map",
          difficulty="★☆☆", minutes=5,
          hint="With rows as inputs, x_i ↦ (I − γ XᵀX) x_i is X ↦ X − γ X (XᵀX); XᵀX uses no 1/N.",
          stub='''def curvature_correction(x, gamma):
    """x (B, N, dx) -> every row x_i mapped to (I − γ XᵀX) x_i, with the unnormalised XᵀX = Σ_i x_i x_iᵀ."""
    # YOUR CODE HERE
    raise NotImplementedError("curvature_correction")
''')
def check_curvature_correction(fn) -> None:
    x = _batch(9, 3, 10, 10).x
    for gamma in (0.1, 0.3):
        got = _expect(fn(x, gamma), tuple(x.shape), "curvature_correction(x, gamma)")
        ref = x - gamma * x @ (x.transpose(1, 2) @ x)  # (B, N, dx): row i is (I − γ XᵀX) x_i
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
            f"your corrected inputs differ from (I − γ XᵀX) x_i (γ={gamma}, max abs error "
            f"{float((got - ref).abs().max()):.3g}); keep each task's rows in order and each x_i a row")
        lam = torch.linalg.eigvalsh(x.transpose(1, 2) @ x)
        lam_new = torch.linalg.eigvalsh(got.transpose(1, 2) @ got)
        expect = torch.sort(lam * (1 - gamma * lam) ** 2, dim=-1).values
        assert torch.allclose(lam_new, expect, rtol=1e-8, atol=1e-12), (
            f"the eigenvalues of XᵀX after your correction (γ={gamma}) should be λ(1 − γλ)²")


# ---------------------------------------------------------------- 8. read γ off trained weights
@exercise(part=PART, name="read_gamma",
          title="Read γ_eff off a layer's weights", difficulty="★☆☆", minutes=5,
          hint="Like η_eff (the exercise read_step_size), but from the x-block of P W_V instead of its y-entry.",
          stub='''def read_gamma(W_Q, W_K, W_V, P, dx):
    """γ_eff of a layer given its (out, in) matrices; equals γ for the hand-built GD++ layer."""
    # YOUR CODE HERE
    raise NotImplementedError("read_gamma")
''')
def check_read_gamma(fn) -> None:
    gen = runtime.generator(10)
    for gamma in (0.15, 0.04):
        base = gt.constructed_gdpp(10, 1, 10, 12.0, gamma, dtype=torch.float64).layer(0).matrices()
        A = torch.randn(11, 11, generator=gen, dtype=torch.float64) + 3 * torch.eye(11, dtype=torch.float64)
        c = -0.6  # gauge and sign branch change the factors, not the products
        mats = {"W_Q": torch.linalg.inv(A).T @ base["W_Q"] * c, "W_K": A @ base["W_K"],
                "W_V": base["W_V"] / c, "P": base["P"]}
        got = float(fn(mats["W_Q"], mats["W_K"], mats["W_V"], mats["P"], 10))
        assert abs(got / gamma - 1) < 1e-9, f"expected γ = {gamma}, got {got:.4g}: use the products, not the factors"


# ---------------------------------------------------------------- 9. GD++ in full
@exercise(part=PART, name="gdpp_predict", title="K steps of GD++, token by token", difficulty="★★☆", minutes=20,
          hint="Update the query's prediction and the context residuals with the x's from *before* the step, "
               "then apply the correction to the context x's and to x_query alike.",
          stub='''def gdpp_predict(x, y, x_query, lr, gamma, steps):
    """ŷ (B, dy) after `steps` GD++ steps from W = 0: x (B, N, dx), y (B, N, dy), x_query (B, dx)."""
    # YOUR CODE HERE
    raise NotImplementedError("gdpp_predict")
''')
def check_gdpp_predict(fn) -> None:
    for seed, (B, N, dx, dy), lr, gamma, K in ((11, (5, 10, 10, 1), 12.0, 0.15, 3), (12, (3, 6, 4, 2), 1.1, 0.1, 2)):
        b = _batch(seed, B, N, dx, dy)
        got = _expect(fn(b.x, b.y, b.x_query, lr, gamma, K), (B, dy), "gdpp_predict(...)")
        ref = solvers.gd_plus_plus(b.x, b.y, b.x_query, lr, gamma, K)
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
            f"predictions differ from GD++ (max abs error {float((got - ref).abs().max()):.3g}) for K={K}")
        got0 = fn(b.x, b.y, b.x_query, lr / 10, 0.0, K)
        ref0 = solvers.predict(solvers.gd(b.x, b.y, lr / 10, K), b.x_query)
        assert torch.allclose(got0, ref0, rtol=1e-9, atol=1e-12), "with γ = 0 GD++ must be plain GD"
