"""Exercises of Part III, chapter "Anisotropic inputs: one layer learns preconditioned GD".

Each reference solution below is the exact code the chapter shows in its solution block (a test keeps them
identical); each stub is what the student edition shows instead.
"""

from __future__ import annotations

import torch

from ... import gd_transformer as gt
from ... import runtime, solvers, tasks
from ...models import LinearSelfAttention
from .. import exercise
from ._common import PART, _batch, _expect


# ---------------------------------------------------------------- 10. one preconditioned step
@exercise(part=PART, name="preconditioned_step", title="One preconditioned GD step", difficulty="★☆☆",
          minutes=5,
          hint="Plain GD from 0 gives W_1 = (η/N) Yᵀ X; a preconditioner Γ acting on input space multiplies from the "
               "right: W_1 = (1/N) Yᵀ X Γ.",
          stub='''def preconditioned_step(x, y, precond):
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
@exercise(part=PART, name="optimal_preconditioner",
          title="The optimal preconditioner with a teacher scale and label noise",
          difficulty="★★☆", minutes=25,
          hint="Follow the proof of the proposition with w ~ N(0, s²I) and y = wᵀx + ε: the error gains a term "
               "(1/N) εᵀXΓx_q − ε_q, independent of the rest; take its expected square and set the gradient in Γ "
               "to zero. The noise enters like a ridge term.",
          stub='''def optimal_preconditioner(cov, n_context, noise_std, teacher_scale):
    """Γ* (dx, dx) minimising the expected one-step loss for x ~ N(0, cov), teacher w ~ N(0, s² I) with
    s = teacher_scale, labels y = wᵀx + ε with ε ~ N(0, noise_std²) on every label, N = n_context."""
    # YOUR CODE HERE
    raise NotImplementedError("optimal_preconditioner")
''')
def check_optimal_preconditioner(fn) -> None:
    eye = torch.eye(6, dtype=torch.float64)
    for cond, n, sig, s in ((16.0, 10, 0.5, 1.0), (4.0, 25, 1.0, 2.0), (16.0, 10, 0.0, 1.0)):
        A = tasks.anisotropic_matrix(6, cond, seed=15, dtype=torch.float64)
        cov = A @ A.T / 12
        got = _expect(fn(cov, n, sig, s), (6, 6), "optimal_preconditioner(cov, n_context, noise_std, teacher_scale)")
        ref = torch.linalg.inv((1 + 1 / n) * cov + (torch.trace(cov) + sig**2 / s**2) / n * eye)  # the checker's own
        if torch.allclose(got, ref, rtol=1e-8):
            continue
        noise_free = solvers.optimal_preconditioner_gaussian(cov, n)
        assert sig == 0 or not torch.allclose(got, noise_free, rtol=1e-8), (
            f"that is the noise-free optimum: with noise_std={sig} the noise changes Γ* (N = {n})")
        assert not torch.allclose(got, torch.linalg.inv((1 + 1 / n) * cov + (torch.trace(cov) + s**2 / sig**2) / n
                                                        * eye), rtol=1e-8), "the noise enters as σ²/s², not s²/σ²"
        raise AssertionError(f"Γ* differs from the optimum (max abs error {float((got - ref).abs().max()):.3g}, "
                             f"largest entry {float(ref.abs().max()):.3g}) for condition {cond}, N = {n}, "
                             f"noise_std = {sig}, teacher_scale = {s}")
    iso = fn(torch.eye(4, dtype=torch.float64) / 12, 10, 0.3, 1.0)
    assert torch.allclose(iso, iso[0, 0] * torch.eye(4, dtype=torch.float64)), "isotropic inputs need Γ* = η I"


# ---------------------------------------------------------------- 12. read Γ off trained weights
@exercise(part=PART, name="preconditioner_from_weights",
          title="Read the preconditioner off a layer",
          difficulty="★☆☆", minutes=5,
          hint="The layer predicts −(P W_V)_yy Σ_i y_i x_iᵀ (W_Kᵀ W_Q)_xx x_q; match it with (1/N) Σ_i y_i x_iᵀ Γ x_q.",
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
