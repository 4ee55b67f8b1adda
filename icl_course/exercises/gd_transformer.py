"""Exercises of Part III (all its chapters).

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead.
"""

from __future__ import annotations

import torch

from .. import gd_transformer as gt
from .. import metrics, runtime, solvers, tasks
from ..models import LinearSelfAttention, LSAStack
from . import exercise

PART = "gd_transformer"


def _batch(seed: int, B: int = 4, N: int = 6, dx: int = 3, dy: int = 1) -> tasks.RegressionBatch:
    return tasks.sample_linear_regression(B, N, dx, dy, generator=runtime.generator(seed), dtype=torch.float64)


def _expect(value: object, shape: tuple, what: str) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), f"{what} must be a torch.Tensor, got {type(value).__name__}"
    assert tuple(value.shape) == shape, f"{what} must have shape {shape}, got {tuple(value.shape)}"
    return value


# ---------------------------------------------------------------- 1. one GD step
def gd_step(x, y, lr):
    N = x.shape[1]
    grad = -(y.transpose(1, 2) @ x) / N  # ∇L(W) at W = 0, shape (B, dy, dx)
    return -lr * grad  # W_1 = W_0 − η ∇L(W_0) with W_0 = 0


@exercise(part=PART, name="gd_step", title="One GD step from W = 0", difficulty="★☆☆", minutes=10,
          hint="∇L(W) = (1/N) Σ_i (W x_i − y_i) x_iᵀ; at W = 0 it is −(1/N) Σ_i y_i x_iᵀ = −Yᵀ X / N.",
          solution=gd_step, stub='''def gd_step(x, y, lr):
    """One GD step from W = 0 on L(W) = 1/(2N) Σ_i ||W x_i − y_i||². x (B, N, dx), y (B, N, dy) -> W (B, dy, dx)."""
    # YOUR CODE HERE
    raise NotImplementedError("gd_step")
''')
def check_gd_step(fn) -> None:
    for seed, shape in ((0, (4, 6, 3, 1)), (1, (2, 9, 5, 2))):
        b = _batch(seed, *shape)
        got = _expect(fn(b.x, b.y, 0.7), (shape[0], shape[3], shape[2]), "gd_step(x, y, lr)")
        ref = solvers.gd(b.x, b.y, 0.7)
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
            f"W differs from one GD step (max abs error {float((got - ref).abs().max()):.3g}); "
            "check the sign of the gradient and the 1/N")


# ---------------------------------------------------------------- 2. Proposition 1's weights
def proposition1_weights(dx, dy, n_context, lr):
    D = dx + dy
    W_Q = torch.zeros(D, D, dtype=torch.float64)
    W_Q[:dx, :dx] = torch.eye(dx)  # queries and keys read the x-part of a token
    W_K = W_Q.clone()
    W_V = torch.zeros(D, D, dtype=torch.float64)
    W_V[dx:, dx:] = -torch.eye(dy)  # values carry −y
    P = torch.zeros(D, D, dtype=torch.float64)
    P[dx:, dx:] = lr / n_context * torch.eye(dy, dtype=torch.float64)  # write η/N times the sum into the y-slot
    return W_Q, W_K, W_V, P


@exercise(part=PART, name="proposition1_weights", title="Weights that make one layer one GD step",
          difficulty="★★☆", minutes=20,
          hint="(W_K e_i)ᵀ(W_Q e_q) should be x_iᵀ x_q, W_V e_i should be (0, −y_i), P should scale the y-slot by η/N.",
          solution=proposition1_weights, stub='''def proposition1_weights(dx, dy, n_context, lr):
    """Return (W_Q, W_K, W_V, P), float64 (D, D) matrices in (out, in) layout, D = dx + dy, such that
    one LinearSelfAttention layer with them predicts like one GD step with step size lr."""
    # YOUR CODE HERE
    raise NotImplementedError("proposition1_weights")
''')
def check_proposition1_weights(fn) -> None:
    for seed, (B, N, dx, dy), lr in ((2, (5, 7, 4, 1), 0.9), (3, (3, 5, 2, 2), 1.7)):
        b = _batch(seed, B, N, dx, dy)
        mats = fn(dx, dy, N, lr)
        assert isinstance(mats, (tuple, list)) and len(mats) == 4, "return the four matrices (W_Q, W_K, W_V, P)"
        mats = [_expect(m, (dx + dy, dx + dy), name) for m, name in zip(mats, ("W_Q", "W_K", "W_V", "P"))]
        layer = LinearSelfAttention.from_matrices(*(m.to(torch.float64) for m in mats))
        with torch.no_grad():
            got = gt.readout(layer(b.tokens()), dx)
        ref = solvers.predict(solvers.gd(b.x, b.y, lr), b.x_query)
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
            f"the layer's predictions differ from one GD step (max abs error {float((got - ref).abs().max()):.3g}) "
            f"for dx={dx}, dy={dy}, N={N}, lr={lr}")


# ---------------------------------------------------------------- 3. the optimal step size
def optimal_step_size(d, n, input_range=1.0):
    var, mu4 = input_range**2 / 12, input_range**4 / 80  # moments of U(−r/2, r/2)
    e_tr = d * var  # E tr Σ̂
    e_tr2 = d * (d - 1) * var**2 / n + d * (mu4 + (n - 1) * var**2) / n  # E tr Σ̂²
    return e_tr / e_tr2


@exercise(part=PART, name="optimal_step_size", title="The optimal one-step learning rate η*",
          difficulty="★★☆", minutes=25,
          hint="η* = E tr Σ̂ / E tr Σ̂²; split E tr Σ̂² = Σ_ab E Σ̂_ab² into off-diagonal (σ⁴/N each) and diagonal "
               "((μ₄ + (N−1)σ⁴)/N each) terms, with σ² = r²/12 and μ₄ = r⁴/80.",
          solution=optimal_step_size, stub='''def optimal_step_size(d, n, input_range=1.0):
    """η* = E tr Σ̂ / E tr Σ̂² for x ~ U(−r/2, r/2)^d, N = n context points, noise-free teacher."""
    # YOUR CODE HERE
    raise NotImplementedError("optimal_step_size")
''')
def check_optimal_step_size(fn) -> None:
    for d, n, r in ((10, 10, 1.0), (5, 20, 2.0), (3, 4, 0.5), (12, 7, 1.5)):
        got, ref = float(fn(d, n, r)), solvers.optimal_gd_lr(d, n, input_range=r)
        assert abs(got / ref - 1) < 1e-9, f"η*(d={d}, N={n}, r={r}) should be {ref:.6g}, got {got:.6g}"


# ---------------------------------------------------------------- 4. read η off trained weights
def read_step_size(W_Q, W_K, W_V, P, dx):
    kq, pv = W_K.T @ W_Q, P @ W_V  # the only identifiable products
    return float(-torch.diagonal(pv[dx:, dx:]).mean() * torch.diagonal(kq[:dx, :dx]).mean())


@exercise(part=PART, name="read_step_size", title="Read η_eff/N off a layer's weights", difficulty="★☆☆",
          minutes=10,
          hint="Only W_Kᵀ W_Q and P W_V are identifiable: multiply the mean diagonal of the x-block of the first by "
               "minus the y-entry of the second.",
          solution=read_step_size, stub='''def read_step_size(W_Q, W_K, W_V, P, dx):
    """η_eff / N of a layer given its (out, in) matrices; equals lr / N for Proposition 1's layer."""
    # YOUR CODE HERE
    raise NotImplementedError("read_step_size")
''')
def check_read_step_size(fn) -> None:
    gen = runtime.generator(4)
    for lr in (6.06, 2.5):
        base = gt.constructed_lsa(10, 1, 10, lr, dtype=torch.float64).layer(0).matrices()
        A = torch.randn(11, 11, generator=gen, dtype=torch.float64) + 3 * torch.eye(11, dtype=torch.float64)
        c = -1.7  # a gauge transformation and the other sign branch: the products (and η) are unchanged
        mats = {"W_Q": torch.linalg.inv(A).T @ base["W_Q"] * c, "W_K": A @ base["W_K"],
                "W_V": base["W_V"] / c, "P": base["P"]}
        got = float(fn(mats["W_Q"], mats["W_K"], mats["W_V"], mats["P"], 10))
        assert abs(got / (lr / 10) - 1) < 1e-9, (
            f"for a layer equivalent to GD with lr={lr} expected η/N = {lr / 10:.4g}, got {got:.4g}; "
            "individual factors are not identifiable, only the products")


# ---------------------------------------------------------------- 5. the implicit model
def implicit_model(model, x, y, x_query):
    xq = x_query.detach().clone().requires_grad_(True)
    pred = gt.lsa_predict(model, gt.make_tokens(x, y, xq), x.shape[-1])  # (B, dy)
    grads = [torch.autograd.grad(pred[:, j].sum(), xq, retain_graph=True)[0] for j in range(pred.shape[1])]
    return torch.stack(grads, dim=1)  # (B, dy, dx): ∂ŷ_j / ∂x_q


@exercise(part=PART, name="implicit_model", title="The implicit model ∂ŷ/∂x_q of a transformer",
          difficulty="★★☆", minutes=15,
          hint="Make x_query a leaf that requires grad, predict, and take one autograd.grad per output "
               "dimension of the batch sum (tasks do not interact).",
          solution=implicit_model, stub='''def implicit_model(model, x, y, x_query):
    """∂ŷ/∂x_query of the model's prediction for each task: (B, dy, dx)."""
    # YOUR CODE HERE
    raise NotImplementedError("implicit_model")
''')
def check_implicit_model(fn) -> None:
    b = _batch(5, 6, 8, 4, 2)
    model = LSAStack.new(6, 1, generator=runtime.generator(6), init_scale=1.0, dtype=torch.float64)
    got = _expect(fn(model, b.x, b.y, b.x_query), (6, 2, 4), "implicit_model(model, x, y, x_query)")
    ref = metrics.sensitivities(lambda xq: gt.lsa_predict(model, gt.make_tokens(b.x, b.y, xq), 4), b.x_query)
    assert torch.allclose(got.detach(), ref, rtol=1e-8, atol=1e-12), "the Jacobian differs from autograd's"
    gd_model = gt.constructed_lsa(4, 2, 8, 1.3, dtype=torch.float64)
    got = fn(gd_model, b.x, b.y, b.x_query)
    assert torch.allclose(got.detach(), solvers.gd(b.x, b.y, 1.3), rtol=1e-8, atol=1e-12), (
        "for the constructed GD layer the implicit model must be GD's weight matrix W")


# ================================================================ chapter "Deeper layers learn GD++"
# ---------------------------------------------------------------- 6. one GD++ layer by hand
def gdpp_weights(dx, dy, n_context, lr, gamma):
    D, eye_x, eye_y = dx + dy, torch.eye(dx, dtype=torch.float64), torch.eye(dy, dtype=torch.float64)
    W_Q = torch.zeros(D, D, dtype=torch.float64)
    W_Q[:dx, :dx] = eye_x  # scores x_iᵀ x_j, as in Proposition 1
    W_K, W_V, P = W_Q.clone(), torch.zeros(D, D, dtype=torch.float64), torch.zeros(D, D, dtype=torch.float64)
    W_V[:dx, :dx], W_V[dx:, dx:] = eye_x, -eye_y  # values carry (x_i, −y_i)
    P[:dx, :dx], P[dx:, dx:] = -gamma * eye_x, lr / n_context * eye_y  # x moves by −γ XᵀX x, y by one GD step
    return W_Q, W_K, W_V, P


@exercise(part=PART, name="gdpp_weights", title="One GD++ layer by hand", difficulty="★★☆", minutes=15,
          hint="Start from Proposition 1's matrices; the x-block of P W_V must be −γ I so that every token's x "
               "moves by −γ Σ_i x_i x_iᵀ x.",
          solution=gdpp_weights, stub='''def gdpp_weights(dx, dy, n_context, lr, gamma):
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
def curvature_correction(x, gamma):
    cov = x.transpose(1, 2) @ x  # (B, dx, dx): the unnormalised XᵀX
    return x - gamma * x @ cov  # every x_i ↦ (I − γ XᵀX) x_i


@exercise(part=PART, name="curvature_correction", title="The curvature correction and its eigenvalue map",
          difficulty="★☆☆", minutes=10,
          hint="With rows as inputs, x_i ↦ (I − γ XᵀX) x_i is X ↦ X − γ X (XᵀX); XᵀX uses no 1/N.",
          solution=curvature_correction, stub='''def curvature_correction(x, gamma):
    """x (B, N, dx) -> every row x_i mapped to (I − γ XᵀX) x_i, with the unnormalised XᵀX = Σ_i x_i x_iᵀ."""
    # YOUR CODE HERE
    raise NotImplementedError("curvature_correction")
''')
def check_curvature_correction(fn) -> None:
    x = _batch(9, 3, 10, 10).x
    for gamma in (0.1, 0.3):
        got = _expect(fn(x, gamma), tuple(x.shape), "curvature_correction(x, gamma)")
        lam = torch.linalg.eigvalsh(x.transpose(1, 2) @ x)
        lam_new = torch.linalg.eigvalsh(got.transpose(1, 2) @ got)
        expect = torch.sort(lam * (1 - gamma * lam) ** 2, dim=-1).values
        assert torch.allclose(lam_new, expect, rtol=1e-8, atol=1e-12), (
            f"the eigenvalues of XᵀX after your correction (γ={gamma}) should be λ(1 − γλ)²")


# ---------------------------------------------------------------- 8. read γ off trained weights
def read_gamma(W_Q, W_K, W_V, P, dx):
    kq, pv = W_K.T @ W_Q, P @ W_V
    return float(-torch.diagonal(pv[:dx, :dx]).mean() * torch.diagonal(kq[:dx, :dx]).mean())


@exercise(part=PART, name="read_gamma", title="Read γ_eff off a layer's weights", difficulty="★☆☆", minutes=10,
          hint="Like η_eff, but from the x-block of P W_V: γ_eff = −mean diag((P W_V)_xx) · mean diag((W_Kᵀ W_Q)_xx).",
          solution=read_gamma, stub='''def read_gamma(W_Q, W_K, W_V, P, dx):
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
def gdpp_predict(x, y, x_query, lr, gamma, steps):
    N = x.shape[1]
    r, pred = y, torch.zeros_like(y[:, 0])  # y-slots (residuals) and the prediction −(query's y-slot)
    for _ in range(steps):
        pred = pred + lr / N * ((x @ x_query[..., None]).transpose(1, 2) @ r)[:, 0]  # uses pre-layer x's
        r = r - lr / N * (x @ x.transpose(1, 2)) @ r
        cov = x.transpose(1, 2) @ x
        x, x_query = x - gamma * x @ cov, x_query - gamma * (cov @ x_query[..., None])[..., 0]
    return pred


@exercise(part=PART, name="gdpp_predict", title="K steps of GD++, token by token", difficulty="★★★", minutes=30,
          hint="Update the query's prediction and the context residuals with the x's from *before* the step, "
               "then apply the correction to the context x's and to x_query alike.",
          solution=gdpp_predict, stub='''def gdpp_predict(x, y, x_query, lr, gamma, steps):
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


# ================================================================ chapter "Anisotropic inputs: preconditioned GD"
# ---------------------------------------------------------------- 10. one preconditioned step
def preconditioned_step(x, y, precond):
    N = x.shape[1]
    return y.transpose(1, 2) @ x @ precond / N  # W_1 = (1/N) Σ_i y_i x_iᵀ Γ, shape (B, dy, dx)


@exercise(part=PART, name="preconditioned_step", title="One preconditioned GD step", difficulty="★☆☆",
          minutes=10,
          hint="Plain GD from 0 gives W_1 = (η/N) Yᵀ X; a preconditioner Γ acting on input space multiplies from the "
               "right: W_1 = (1/N) Yᵀ X Γ.",
          solution=preconditioned_step, stub='''def preconditioned_step(x, y, precond):
    """W (B, dy, dx) after one preconditioned GD step from 0: x (B, N, dx), y (B, N, dy), precond Γ (dx, dx)."""
    # YOUR CODE HERE
    raise NotImplementedError("preconditioned_step")
''')
def check_preconditioned_step(fn) -> None:
    b = _batch(13, 4, 9, 5, 2)
    G = torch.randn(5, 5, generator=runtime.generator(14), dtype=torch.float64)
    got = _expect(fn(b.x, b.y, G), (4, 2, 5), "preconditioned_step(x, y, precond)")
    ref = solvers.preconditioned_gd_step(b.x, b.y, G)
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), "W differs from (1/N) Yᵀ X Γ"
    eye = 2.5 * torch.eye(5, dtype=torch.float64)
    assert torch.allclose(fn(b.x, b.y, eye), solvers.gd(b.x, b.y, 2.5), rtol=1e-9), "with Γ = η I it must be plain GD"


# ---------------------------------------------------------------- 11. the optimal preconditioner
def optimal_preconditioner(cov, n_context):
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    return torch.linalg.inv((1 + 1 / n_context) * cov + torch.trace(cov) / n_context * eye)


@exercise(part=PART, name="optimal_preconditioner", title="The optimal preconditioner for Gaussian inputs",
          difficulty="★★☆", minutes=25,
          hint="Expand E‖Σ^{1/2}(ΓᵀΣ̂ − I)w‖² with E[Σ̂AΣ̂] = (1 + 1/N) ΣAΣ + tr(AΣ) Σ / N for Gaussian inputs and "
               "set the gradient in Γ to zero.",
          solution=optimal_preconditioner, stub='''def optimal_preconditioner(cov, n_context):
    """Γ* (dx, dx) minimising the one-step loss for x ~ N(0, cov), w ~ N(0, I), N = n_context, no noise."""
    # YOUR CODE HERE
    raise NotImplementedError("optimal_preconditioner")
''')
def check_optimal_preconditioner(fn) -> None:
    for cond, n in ((16.0, 10), (4.0, 25)):
        A = tasks.anisotropic_matrix(6, cond, seed=15, dtype=torch.float64)
        cov = A @ A.T / 12
        got = _expect(fn(cov, n), (6, 6), "optimal_preconditioner(cov, n_context)")
        ref = solvers.optimal_preconditioner_gaussian(cov, n)
        assert torch.allclose(got, ref, rtol=1e-8), f"Γ* differs from the optimum for condition {cond}, N = {n}"
    iso = fn(torch.eye(4, dtype=torch.float64) / 12, 10)
    assert torch.allclose(iso, iso[0, 0] * torch.eye(4, dtype=torch.float64)), "isotropic inputs need Γ* = η I"


# ---------------------------------------------------------------- 12. read Γ off trained weights
def preconditioner_from_weights(W_Q, W_K, W_V, P, dx, n_context):
    kq, pv = W_K.T @ W_Q, P @ W_V
    return -n_context * torch.diagonal(pv[dx:, dx:]).mean() * kq[:dx, :dx]


@exercise(part=PART, name="preconditioner_from_weights", title="Read the preconditioner off a layer",
          difficulty="★☆☆", minutes=10,
          hint="The layer predicts −(P W_V)_yy Σ_i y_i x_iᵀ (W_Kᵀ W_Q)_xx x_q; match it with (1/N) Σ_i y_i x_iᵀ Γ x_q.",
          solution=preconditioner_from_weights,
          stub='''def preconditioner_from_weights(W_Q, W_K, W_V, P, dx, n_context):
    """Γ_eff (dx, dx) such that the layer predicts (1/N) Σ_i y_i x_iᵀ Γ_eff x_q."""
    # YOUR CODE HERE
    raise NotImplementedError("preconditioner_from_weights")
''')
def check_preconditioner_from_weights(fn) -> None:
    gen = runtime.generator(16)
    G = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    kq = torch.zeros(5, 5, dtype=torch.float64)
    kq[:4, :4] = G * -0.8  # another gauge: the products carry c and 1/c
    pv = torch.zeros(5, 5, dtype=torch.float64)
    pv[4, 4] = -1 / 7 / -0.8
    eye = torch.eye(5, dtype=torch.float64)
    got = _expect(fn(kq, eye, pv, eye.clone(), 4, 7), (4, 4), "preconditioner_from_weights(...)")
    assert torch.allclose(got, G, rtol=1e-9), "Γ_eff differs; only the products W_Kᵀ W_Q and P W_V are identifiable"
    b = _batch(17, 3, 7, 4, 1)
    layer = LinearSelfAttention.from_matrices(kq, eye, pv, eye.clone())
    with torch.no_grad():
        pred = gt.readout(layer(b.tokens()), 4)
    assert torch.allclose(pred, solvers.predict(solvers.preconditioned_gd_step(b.x, b.y, got), b.x_query),
                          rtol=1e-9), "the layer must predict like one preconditioned step with your Γ_eff"


# ---------------------------------------------------------------- 13. one GD step on the ideal sine features
def sine_gd_predict(x, y, x_query, lr):
    phi = torch.cat([torch.sin(x), torch.cos(x)], dim=-1)  # (B, N, 2): the features that make the task linear
    phi_q = torch.cat([torch.sin(x_query), torch.cos(x_query)], dim=-1)  # (B, 2)
    w = lr * (y.transpose(1, 2) @ phi) / x.shape[1]  # one GD step from w = 0: (η/N) Σ_i y_i φ(x_i)ᵀ, (B, 1, 2)
    return (w @ phi_q[..., None])[..., 0]  # ŷ = w φ(x_q), (B, 1)


@exercise(part=PART, name="sine_gd_predict", title="One GD step on the ideal sine features", difficulty="★☆☆",
          minutes=10,
          hint="a sin(x + φ) = (a cos φ) sin x + (a sin φ) cos x: one GD step from 0 on features (sin x, cos x) gives "
               "ŷ = (η/N) Σ_i y_i cos(x_i − x_q).",
          solution=sine_gd_predict, stub='''def sine_gd_predict(x, y, x_query, lr):
    """Prediction (B, 1) of one GD step from 0 on features (sin x, cos x): x (B, N, 1), y (B, N, 1), x_query (B, 1)."""
    # YOUR CODE HERE
    raise NotImplementedError("sine_gd_predict")
''')
def check_sine_gd_predict(fn) -> None:
    b = tasks.sample_sine_regression(6, 9, generator=runtime.generator(18), dtype=torch.float64)
    got = _expect(fn(b.x, b.y, b.x_query, 1.8), (6, 1), "sine_gd_predict(x, y, x_query, lr)")
    ref = solvers.predict(solvers.gd(tasks.sine_basis(b.x), b.y, 1.8), tasks.sine_basis(b.x_query))
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), "ŷ differs from one GD step on (sin x, cos x)"
    kernel = (b.y[..., 0] * torch.cos(b.x[..., 0] - b.x_query)).sum(1, keepdim=True) * 1.8 / 9
    assert torch.allclose(got, kernel, rtol=1e-9, atol=1e-12), "the kernel form (η/N) Σ y_i cos(x_i − x_q) must agree"


# ---------------------------------------------------------------- 14. the two routes of a feature layer
def kernel_routes(fa, fb, kq, pv, n_context):
    F = fa.shape[1]  # tokens are (m(x), y): features first, the target last
    value = -n_context * pv[F, F] * (fa @ kq[:F, :F] @ fb.T)  # y in the value, features in key and query
    key = -n_context * torch.outer(fa @ pv[F, :F], fb @ kq[F, :F])  # y in the key, features in the value
    return value, key


@exercise(part=PART, name="kernel_routes", title="Two routes from the targets to the prediction", difficulty="★★☆",
          minutes=25,
          hint="Token e_i = (m_i, y_i), query (m_q, 0). The layer adds −Σ_i (V e_i)_y (e_iᵀ K e_q) with V = P W_V, "
               "K = W_Kᵀ W_Q. Expand both factors and keep the terms with exactly one y_i.",
          solution=kernel_routes, stub='''def kernel_routes(fa, fb, kq, pv, n_context):
    """Value-route and key-route kernels (n, m) for features fa (n, F), fb (m, F) and products
    kq = W_Kᵀ W_Q, pv = P W_V ((F+1, F+1), tokens (m(x), y)): ŷ = (1/N) Σ_i y_i k(x_i, x_q) + terms without y_i."""
    # YOUR CODE HERE
    raise NotImplementedError("kernel_routes")
''')
def check_kernel_routes(fn) -> None:
    from ..models import FeatureLSA, FeatureMap

    gen = runtime.generator(19)
    model = FeatureLSA(FeatureMap(1, 10, 4, generator=gen, dtype=torch.float64),
                       LSAStack([LinearSelfAttention(5, init_scale=5.0, generator=gen, dtype=torch.float64)],
                                n_context=7))
    a = torch.linspace(-5, 5, 6, dtype=torch.float64)[:, None]
    b = torch.linspace(-3, 4, 4, dtype=torch.float64)[:, None]
    kq, pv = gt.weight_products(model.lsa.layer(0))
    with torch.no_grad():
        fa, fb = model.feature_map(a), model.feature_map(b)
    got = fn(fa, fb, kq, pv, 7)
    assert isinstance(got, (tuple, list)) and len(got) == 2, "return the two kernels (value, key)"
    for k, route in zip(got, ("value", "key")):
        _expect(k, (6, 4), f"the {route}-route kernel")
        assert torch.allclose(k, gt.effective_kernel(model, a, b, route), rtol=1e-9, atol=1e-12), (
            f"the {route}-route kernel differs; check which factor holds y_i and the factor −N")


# ---------------------------------------------------------------- 15. the standard token layout
def to_standard_tokens(x, y, x_query):
    B, N, dx = x.shape
    dy, T = y.shape[2], 2 * N + 1
    out = torch.zeros(B, T, dx + dy + T, dtype=x.dtype)
    out[:, 0:2 * N:2, :dx] = x  # input tokens (x_i, 0, p)
    out[:, 1:2 * N:2, dx:dx + dy] = y  # target tokens (0, y_i, p)
    out[:, -1, :dx] = x_query  # the query (x_q, 0, p) comes last
    out[:, :, dx + dy:] = torch.eye(T, dtype=x.dtype)  # one-hot positions
    return out


@exercise(part=PART, name="to_standard_tokens", title="Inputs and targets in separate tokens", difficulty="★☆☆",
          minutes=10,
          hint="Token 2i is (x_{i+1}, 0, e_{2i}), token 2i+1 is (0, y_{i+1}, e_{2i+1}), the last is (x_q, 0, e_{2N}).",
          solution=to_standard_tokens, stub='''def to_standard_tokens(x, y, x_query):
    """The sequence x_1, y_1, …, x_N, y_N, x_q as (B, 2N+1, dx+dy+2N+1) tokens with one-hot positions."""
    # YOUR CODE HERE
    raise NotImplementedError("to_standard_tokens")
''')
def check_to_standard_tokens(fn) -> None:
    b = _batch(20, 3, 5, 2, 2)
    got = _expect(fn(b.x, b.y, b.x_query), (3, 11, 15), "to_standard_tokens(x, y, x_query)")
    ref = tasks.standard_tokens(b.x, b.y, b.x_query)
    assert torch.allclose(got, ref), "the layout differs: check the order x_1, y_1, …, x_N, y_N, x_q and the slots"


# ---------------------------------------------------------------- 16. the copy layer, the other way round
def label_copy_weights(dx, dy, n_context, beta):
    T = 2 * n_context + 1
    D, p0 = dx + dy + T, dx + dy
    W_Q = torch.zeros(D, D, dtype=torch.float64)
    W_Q[p0:, p0:] = beta * torch.eye(T, dtype=torch.float64)  # the query side: β × own position
    W_K = torch.zeros(D, D, dtype=torch.float64)
    W_K[p0:D - 2, p0 + 1:D - 1] = torch.eye(T - 2, dtype=torch.float64)  # key at s answers position s − 1
    W_K[D - 1, p0] = 1.0  # the query (position 2N) reads token 0, whose y-slot is 0
    y_block = torch.zeros(D, D, dtype=torch.float64)
    y_block[dx:p0, dx:p0] = torch.eye(dy, dtype=torch.float64)  # copy the y-slot only
    return W_Q, W_K, y_block, y_block.clone()


@exercise(part=PART, name="label_copy_weights", title="A copy layer that moves each label to its input",
          difficulty="★★★", minutes=30,
          hint="Make token t score β on key t + 1 through the one-hot positions and copy only the y-slot. The query "
               "has no successor: without care it averages all keys and picks up their labels — send it to a token "
               "whose y-slot is 0.",
          solution=label_copy_weights, stub='''def label_copy_weights(dx, dy, n_context, beta):
    """(W_Q, W_K, W_V, P), float64 (D, D), D = dx + dy + 2N + 1, of a softmax layer on standard tokens after which
    every input token holds (x_i, y_i) — the reverse of the chapter's construction; the query must stay (x_q, 0)."""
    # YOUR CODE HERE
    raise NotImplementedError("label_copy_weights")
''')
def check_label_copy_weights(fn) -> None:
    from ..models import StandardTokenLSA

    for seed, (B, N, dx, dy), lr in ((21, (6, 5, 3, 1), 0.8), (22, (4, 7, 2, 1), 1.3)):
        b = _batch(seed, B, N, dx, dy)
        mats = fn(dx, dy, N, 40.0)
        assert isinstance(mats, (tuple, list)) and len(mats) == 4, "return the four matrices (W_Q, W_K, W_V, P)"
        D = dx + dy + 2 * N + 1
        mats = [_expect(m, (D, D), name).to(torch.float64) for m, name in zip(mats, ("W_Q", "W_K", "W_V", "P"))]
        copy = LinearSelfAttention.from_matrices(*mats, attention="softmax")
        gd_layer = gt.constructed_copy_gd(dx, dy, N, lr, dtype=torch.float64).stack.layer(1)
        model = StandardTokenLSA(LSAStack([copy, gd_layer]), dx, dy, N)
        scores = gt.copy_scores(gt.copy_attention(model, b))
        assert scores["x_reads_y"] > 0.999, (
            f"input tokens should attend to their own label (mean weight {scores['x_reads_y']:.3f})")
        with torch.no_grad():
            got = gt.lsa_predict(model, b.tokens(), dx)
        ref = solvers.predict(solvers.gd(b.x, b.y, lr), b.x_query)
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
            f"copy + GD layer differs from one GD step (max abs error {float((got - ref).abs().max()):.3g}); "
            "does the query pick up labels?")


# ---------------------------------------------------------------- 17. Proposition 2's layer
def feature_gd_layer(features, n_context, lr):
    D = features + 1  # tokens (m(x), y)
    W_Q = torch.zeros(D, D, dtype=torch.float64)
    W_Q[:features, :features] = torch.eye(features)  # keys and queries read the features
    W_K = W_Q.clone()
    W_V = torch.zeros(D, D, dtype=torch.float64)
    W_V[features, features] = -1.0  # values carry −y
    P = torch.zeros(D, D, dtype=torch.float64)
    P[features, features] = lr / n_context  # η/N into the y-slot
    return W_Q, W_K, W_V, P


@exercise(part=PART, name="feature_gd_layer", title="The layer that does GD on learned features", difficulty="★☆☆",
          minutes=10,
          hint="Proposition 1 does not care what the inputs are: use its weights with the F features in place of x.",
          solution=feature_gd_layer, stub='''def feature_gd_layer(features, n_context, lr):
    """(W_Q, W_K, W_V, P), float64 (F+1, F+1), such that any feature map followed by this layer predicts like one
    GD step from 0 (step size lr) on the feature map's output layer."""
    # YOUR CODE HERE
    raise NotImplementedError("feature_gd_layer")
''')
def check_feature_gd_layer(fn) -> None:
    from ..models import FeatureLSA, FeatureMap

    for seed, (F, N, lr) in ((23, (6, 10, 1.8)), (24, (3, 7, 0.6))):
        gen = runtime.generator(seed)
        fmap = FeatureMap(1, 12, F, generator=gen, dtype=torch.float64)
        mats = fn(F, N, lr)
        assert isinstance(mats, (tuple, list)) and len(mats) == 4, "return the four matrices (W_Q, W_K, W_V, P)"
        mats = [_expect(m, (F + 1, F + 1), name).to(torch.float64) for m, name in zip(mats, ("W_Q", "W_K", "W_V", "P"))]
        model = FeatureLSA(fmap, LSAStack([LinearSelfAttention.from_matrices(*mats)], n_context=N))
        b = tasks.sample_sine_regression(5, N, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            got = gt.lsa_predict(model, b.tokens(), 1)
            ref = gt.lsa_predict(gt.FeatureGD(fmap, lr=lr), b.tokens(), 1)
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12), (
            f"the model differs from MLP + one GD step for F={F}, N={N}, lr={lr}")


# ---------------------------------------------------------------- 18. how much does a layer copy?
def pair_attention(attn):
    n = attn.shape[1] // 2  # attn: (2N+1 tokens, 2N keys)
    i = torch.arange(n)
    return float(attn[2 * i + 1, 2 * i].mean()), float(attn[2 * i, 2 * i + 1].mean())  # y reads x, x reads y


@exercise(part=PART, name="pair_attention", title="How much does a layer copy?", difficulty="★☆☆", minutes=10,
          hint="Token 2i is x_{i+1} and token 2i+1 is y_{i+1}; the keys are the first 2N tokens.",
          solution=pair_attention, stub='''def pair_attention(attn):
    """From attention weights (2N+1, 2N) on the standard layout: the mean weight each target token puts on its own
    input, and the mean weight each input token puts on its own target."""
    # YOUR CODE HERE
    raise NotImplementedError("pair_attention")
''')
def check_pair_attention(fn) -> None:
    gen = runtime.generator(25)
    attn = torch.softmax(torch.randn(11, 10, generator=gen, dtype=torch.float64) * 3, dim=-1)
    got = fn(attn)
    assert isinstance(got, (tuple, list)) and len(got) == 2, "return the two mean weights (y reads x, x reads y)"
    ref = gt.copy_scores(attn)
    assert abs(float(got[0]) - ref["y_reads_x"]) < 1e-12, "the target tokens' weight on their inputs is wrong"
    assert abs(float(got[1]) - ref["x_reads_y"]) < 1e-12, "the input tokens' weight on their targets is wrong"
    model = gt.constructed_copy_gd(3, 1, 5, 1.0, dtype=torch.float64)
    b = _batch(26, 4, 5, 3, 1)
    y_reads_x, _ = fn(gt.copy_attention(model, b))
    assert abs(float(y_reads_x) - 1) < 1e-12, "the constructed copy layer should score 1 for targets reading inputs"
