"""Exercises of Part III, chapter "One layer, one step".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead.
"""

from __future__ import annotations

import torch

from ... import gd_transformer as gt
from ... import metrics, runtime, solvers
from ...models import LinearSelfAttention, LSAStack
from .. import exercise
from ._common import PART, _batch, _expect


# ---------------------------------------------------------------- 1. one GD step
@exercise(part=PART, name="gd_step", title="One GD step from W = 0", difficulty="★☆☆", minutes=5,
          hint="∇L(W) = (1/N) Σ_i (W x_i − y_i) x_iᵀ; at W = 0 it is −(1/N) Σ_i y_i x_iᵀ = −Yᵀ X / N.",
          stub='''def gd_step(x, y, lr):
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
            f"W differs from one GD step (max abs error {float((got - ref).abs().max()):.3g}, largest entry "
            f"{float(ref.abs().max()):.3g})")


# ---------------------------------------------------------------- 2. Proposition 1's weights
@exercise(part=PART, name="proposition1_weights",
          title="Weights that make one layer one GD step",
          difficulty="★☆☆", minutes=10,
          hint="(W_K e_i)ᵀ(W_Q e_q) should be x_iᵀ x_q, W_V e_i should be (0, −y_i), P should scale the y-slot by η/N.",
          stub='''def proposition1_weights(dx, dy, n_context, lr):
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
@exercise(part=PART, name="optimal_step_size",
          title="The optimal one-step learning rate η*",
          difficulty="★☆☆", minutes=10,
          hint="η* = E tr Σ̂ / E tr Σ̂²; split E tr Σ̂² = Σ_ab E Σ̂_ab² into off-diagonal (σ⁴/N each) and diagonal "
               "((μ₄ + (N−1)σ⁴)/N each) terms; σ² and μ₄ are the variance and fourth moment of U(−r/2, r/2).",
          stub='''def optimal_step_size(d, n, input_range=1.0):
    """η* = E tr Σ̂ / E tr Σ̂² for x ~ U(−r/2, r/2)^d, N = n context points, noise-free teacher."""
    # YOUR CODE HERE
    raise NotImplementedError("optimal_step_size")
''')
def check_optimal_step_size(fn) -> None:
    for d, n, r in ((10, 10, 1.0), (5, 20, 2.0), (3, 4, 0.5), (12, 7, 1.5)):
        got, ref = float(fn(d, n, r)), solvers.optimal_gd_lr(d, n, input_range=r)
        assert abs(got / ref - 1) < 1e-9, f"η*(d={d}, N={n}, r={r}) should be {ref:.6g}, got {got:.6g}"


# ---------------------------------------------------------------- 4. read η off trained weights
@exercise(part=PART, name="read_step_size",
          title="Read η_eff/N off a layer's weights", difficulty="★☆☆",
          minutes=5,
          hint="Only W_Kᵀ W_Q and P W_V are identifiable: multiply the mean diagonal of the x-block of the first by "
               "minus the y-entry of the second.",
          stub='''def read_step_size(W_Q, W_K, W_V, P, dx):
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
@exercise(part=PART, name="implicit_model", title="The implicit model ∂ŷ/∂x_q of a transformer",
          difficulty="★☆☆", minutes=10,
          hint="Make x_query a leaf that requires grad, predict, and take one autograd.grad per output "
               "dimension of the batch sum (tasks do not interact).",
          stub='''def implicit_model(model, x, y, x_query):
    """∂ŷ/∂x_query of the model's prediction for each task: (B, dy, dx)."""
    # YOUR CODE HERE
    raise NotImplementedError("implicit_model")
''')
def check_implicit_model(fn) -> None:
    b = _batch(5, 6, 8, 4, 2)
    model = LSAStack.new(6, 1, generator=runtime.generator(6), init_scale=1.0, dtype=torch.float64)
    got = _expect(fn(model, b.x, b.y, b.x_query), (6, 2, 4), "implicit_model(model, x, y, x_query)")
    ref = metrics.sensitivities(lambda xq: gt.predict(model, gt.make_tokens(b.x, b.y, xq), 4), b.x_query)
    assert torch.allclose(got.detach(), ref, rtol=1e-8, atol=1e-12), (
        f"the Jacobian differs from autograd's (max abs error {float((got.detach() - ref).abs().max()):.3g}, "
        f"largest entry {float(ref.abs().max()):.3g})")
    gd_model = gt.constructed_lsa(4, 2, 8, 1.3, dtype=torch.float64)
    got = fn(gd_model, b.x, b.y, b.x_query)
    assert torch.allclose(got.detach(), solvers.gd(b.x, b.y, 1.3), rtol=1e-8, atol=1e-12), (
        "for the constructed GD layer the implicit model must be GD's weight matrix W")
