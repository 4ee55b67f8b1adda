"""Part III, chapter "Deeper layers learn GD++": curvature-corrected GD, learned by deeper and recurrent models.

References
----------
von Oswald et al. (2022), Sec. 3 ("GD++"), Fig. 3 and Appendix A.10.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _checks, metrics, solvers, tasks, train
from ..models import LinearSelfAttention, LSAStack
from ..query import icl_loss, predict, readout
from ..tasks import make_tokens
from ._common import PAPER, _alignment, constructed_lsa, train_lsa, weight_blocks

__all__ = ["constructed_gdpp", "effective_gamma", "GDScalars", "fit_gd_scalars", "spectra", "RECURRENT_AFTER_ESCAPE",
           "train_recurrent", "depth_sweep", "gd_vs_gdpp", "compare_with_gdpp", "implicit_inverse", "neumann_inverse",
           "newton_inverse", "polynomial_predict", "polynomial_degree"]


def constructed_gdpp(dx: int, dy: int, n_context: int, lr: float, gamma: float, n_layers: int = 1,
                     dtype: torch.dtype = torch.float32) -> LSAStack:
    """Hand-built GD++: ``n_layers`` layers of :func:`constructed_lsa` whose ``P W_V`` also acts on the x-slots.

    (The weights are an exercise of the chapter, ``gdpp_weights``.) Each layer takes a GD step on the y-slots and
    maps every token's x to ``(I − γ XᵀX) x``; equals
    :func:`solvers.gd_plus_plus`. ``gamma = 0`` gives :func:`constructed_lsa`.
    """
    gamma = _checks.positive_float("gamma", gamma, allow_zero=True)
    model = constructed_lsa(dx, dy, n_context, lr, n_layers, dtype)
    for layer in model.layers:
        with torch.no_grad():
            layer.W_V.weight[:dx, :dx] = torch.eye(dx, dtype=dtype)
            layer.P.weight[:dx, :dx] = -gamma * torch.eye(dx, dtype=dtype)
    return model


def effective_gamma(layer: LinearSelfAttention, dx: int) -> float:
    """The curvature correction ``γ_eff`` a layer applies to the x-slots, read off its identifiable products
    ``W_Kᵀ W_Q`` and ``P W_V`` (how to read it is the chapter's exercise ``read_gamma``); equals ``γ`` for
    :func:`constructed_gdpp`."""
    kq, pv = weight_blocks(layer, dx)
    return float(-torch.diagonal(pv[:dx, :dx]).mean() * torch.diagonal(kq[:dx, :dx]).mean())


class GDScalars(torch.nn.Module):
    """K steps of GD (``fit_gamma=False``) or GD++ with one shared, learnable ``(η, γ)`` — a "model" whose only
    parameters are the two scalars, trained on the meta-loss by :func:`train.fit` like any transformer.

    ``forward(E, query_only=True)`` returns the query token ``(x_q, −ŷ)``, so :func:`icl_loss` applies.
    """

    def __init__(self, dx: int, n_layers: int, lr: float = 1.0, gamma: float = 0.0, fit_gamma: bool = True):
        super().__init__()
        self.dx, self.n_layers = _checks.positive_int("dx", dx), _checks.positive_int("n_layers", n_layers)
        self.lr = torch.nn.Parameter(torch.tensor(float(lr)))
        self.gamma = torch.nn.Parameter(torch.tensor(float(gamma)), requires_grad=fit_gamma)

    def forward(self, E: torch.Tensor, query_only: bool = True, n_layers: int | None = None) -> torch.Tensor:
        if not query_only:
            raise ValueError("GDScalars computes the query token only (query_only=True)")
        dx = self.dx
        _checks.tensor("E", E, 3, f"(B, N+1, {dx}+dy)")
        if E.shape[1] < 2 or E.shape[2] <= dx:
            raise ValueError(f"E must have shape (B, N+1, {dx}+dy) with N ≥ 1 and dy ≥ 1, got {tuple(E.shape)}")
        K = self.n_layers if n_layers is None else _checks.positive_int("n_layers", n_layers)
        x, y, xq = E[:, :-1, :dx], E[:, :-1, dx:], E[:, -1, :dx]  # (B, N, dx), (B, N, dy), (B, dx)
        pred = solvers.gd_plus_plus(x, y, xq, self.lr, self.gamma, K)
        return torch.cat([xq, -pred], dim=-1)[:, None]  # (B, 1, D)


def fit_gd_scalars(n_layers: int, *, plus_plus: bool = True, seed: int = 0, steps: int = 500,
                   batch_size: int = 1024, lr: float = 0.05, n_context: int = PAPER.n_context,
                   progress: bool | None = None) -> GDScalars:
    """Fit the shared step size (and, for GD++, γ) of K-step GD by Adam on fresh tasks with ``n_context``
    demonstrations (the paper's 10 by default), as the paper does."""
    n_context = _checks.positive_int("n_context", n_context)
    eta0 = solvers.optimal_gd_lr(PAPER.dx, n_context)  # start from the best single step
    model = GDScalars(PAPER.dx, n_layers, lr=eta0, gamma=0.0, fit_gamma=plus_plus)
    train.fit(model, icl_loss, tasks.regression_stream(batch_size, n_context, PAPER.dx, seed=seed + 11), steps,
              lr=lr, clip=None, progress=progress, desc=f"fit {'GD++' if plus_plus else 'GD'}-{n_layers}")
    return model


def spectra(x: torch.Tensor, gamma: float, n_layers: int) -> torch.Tensor:
    """Sorted eigenvalues of the unnormalised ``XᵀX`` after 0..K curvature corrections: ``(K+1, B, dx)``."""
    _checks.tensor("x", x, 3, "(B, N, dx)")
    out = []
    for _ in range(_checks.positive_int("n_layers", n_layers) + 1):
        cov = x.transpose(1, 2) @ x  # (B, dx, dx)
        out.append(torch.linalg.eigvalsh(cov))
        x = x - gamma * (x @ cov)
    return torch.stack(out)


RECURRENT_AFTER_ESCAPE = 3000
"""Steps trained after the escape from the plateau: enough for the slow drift from GD-3's loss to GD++-3's."""


def train_recurrent(*, seed: int = 0, n_layers: int = 3, after_escape: int = RECURRENT_AFTER_ESCAPE,
                    max_steps: int = 6000, escape_loss: float = 0.3, batch_size: int = 1024,
                    eval_size: int = PAPER.eval_size, clip: float = 10.0,
                    progress: bool | None = None) -> tuple[train.TrainedRun, int | None]:
    """Train a weight-shared K-layer LSA until it escapes the initial plateau, then ``after_escape`` steps more.

    The official settings for deeper models (batch 1,024, clip 10); evaluation every 50 steps. Returns the run
    and its escape step (None if it never escaped within ``max_steps``).
    """
    run = train_lsa(seed=seed, steps=max_steps, n_layers=n_layers, shared=True, batch_size=batch_size,
                    eval_size=eval_size, clip=clip, eval_every=50, after_escape=after_escape,
                    escape_loss=escape_loss, progress=progress)
    return run, run.escape


def depth_sweep(model: torch.nn.Module, batch: tasks.RegressionBatch, depths: Sequence[int]) -> list[float]:
    """Eval loss of a shared (recurrent) model applied ``depth`` times, for each depth."""
    tokens, losses = batch.tokens(), []
    for k in depths:
        with torch.no_grad():
            pred = readout(model(tokens, query_only=True, n_layers=k), batch.dx)
        losses.append(float(metrics.half_squared_error(pred, batch.y_query)))
    return losses


def gd_vs_gdpp(depths: Sequence[int], batch: tasks.RegressionBatch, *, seed: int = 0,
               progress: bool | None = None) -> dict[int, dict]:
    """For each depth K: GD-K and GD++-K with fitted shared scalars, and their losses on ``batch``."""
    out = {}
    for K in depths:
        row = {"gd_model": fit_gd_scalars(K, plus_plus=False, seed=seed, progress=progress),
               "gdpp_model": fit_gd_scalars(K, plus_plus=True, seed=seed, progress=progress)}
        with torch.no_grad():
            for name in ("gd", "gdpp"):
                row[name] = float(icl_loss(row[f"{name}_model"], (batch.tokens(), batch.y_query)))
        out[K] = row
    return out


def compare_with_gdpp(model: torch.nn.Module, batch: tasks.RegressionBatch, lr: float, gamma: float,
                      steps: int) -> dict:
    """Trained model vs ``steps`` GD++ steps at ``(lr, gamma)`` on the same tasks: losses, "Preds diff" and
    "Model cos/diff" (the implicit models ``∂ŷ/∂x_q``, by autograd for both — GD++'s prediction is linear in ``x_q``).

    The alignment the official notebook logs as "Cosine sim TF vs GD++" (von Oswald et al. 2022, Fig. 3);
    :func:`compare_with_gd` is the same comparison with plain GD.
    """
    dx = batch.dx
    ours = lambda xq: predict(model, make_tokens(batch.x, batch.y, xq), dx)  # noqa: E731
    ref = lambda xq: solvers.gd_plus_plus(batch.x, batch.y, xq, lr, gamma, steps)  # noqa: E731
    with torch.no_grad():
        pred_tf, pred_ref = ours(batch.x_query), ref(batch.x_query)
    sens_tf, sens_ref = metrics.sensitivities(ours, batch.x_query), metrics.sensitivities(ref, batch.x_query)
    return _alignment(batch, "gdpp", pred_tf, pred_ref, sens_tf, sens_ref)


# ---------------------------------------------------------------- the Neumann-series view (App. A.10)
# GD, GD++ and Newton–Schulz from zero all predict ŷ = x_qᵀ p(XᵀX) Xᵀy for a polynomial p; least squares has
# p(λ) = 1/λ. Along an eigenvector of XᵀX with eigenvalue λ each recovers the fraction λ p(λ) of the least-squares
# solution, so 1 − λ p(λ) is that direction's remaining error factor.


def _eigenvalues(lam: torch.Tensor | float) -> torch.Tensor:
    lam = torch.as_tensor(lam)
    if not lam.is_floating_point():
        lam = lam.double()
    if not torch.isfinite(lam).all() or (lam < 0).any():
        raise ValueError("lam must hold eigenvalues of XᵀX: finite and ≥ 0")
    return lam


def implicit_inverse(lam: torch.Tensor | float, lr: float, gamma: float = 0.0, *, steps: int,
                     n_context: int) -> torch.Tensor:
    """``p(λ)``, elementwise, of ``steps`` steps of GD++ (GD for ``gamma = 0``) from ``W = 0``: the polynomial with
    ``solvers.gd_plus_plus(x, y, x_q, lr, gamma, steps) = x_qᵀ p(XᵀX) Xᵀy`` exactly, ``XᵀX`` unnormalised.

    With ``c = lr / N``, ``s_0 = 0``, ``q_0 = 1`` and ``a_0 = λ`` (the eigenvalue after ``k`` corrections is
    ``a_k = λ q_k²``, the eigenvalue map applied ``k`` times)::

        s_{k+1} = s_k + c q_k² (1 − λ s_k),   q_{k+1} = q_k (1 − γ a_k),   p = s_K,

    so ``1 − λ p(λ) = Π_k (1 − c a_k)``: the product of the steps' error factors. For ``gamma = 0`` this is
    ``(1 − cλ)^K`` and ``p`` is the Neumann series of ``1/λ`` truncated after ``K`` terms
    (:func:`neumann_inverse` with ``alpha = c``); GD++'s ``p`` has degree ``(3^K − 3)/2`` in ``λ``, GD's ``K − 1``.

    Parameters
    ----------
    lam : tensor or float
        Eigenvalues of the unnormalised ``XᵀX`` (any shape, ≥ 0).
    lr, gamma : float
        GD step size η (the step is ``η/N``) and the curvature correction γ.
    steps, n_context : int
        Number of steps K and context length N.

    References
    ----------
    von Oswald et al. (2022), App. A.10 (GD++ and the truncated Neumann series for ``(XXᵀ)⁻¹``).
    """
    lam = _eigenvalues(lam)
    c = _checks.positive_float("lr", lr) / _checks.positive_int("n_context", n_context)
    gamma = _checks.positive_float("gamma", gamma, allow_zero=True)
    s, q = torch.zeros_like(lam), torch.ones_like(lam)
    for _ in range(_checks.positive_int("steps", steps)):
        a = lam * q**2  # the eigenvalue after the corrections so far
        s = s + c * q**2 * (1 - lam * s)
        q = q * (1 - gamma * a)
    return s


def neumann_inverse(lam: torch.Tensor | float, alpha: float, terms: int) -> torch.Tensor:
    """The Neumann series of ``1/λ`` truncated after ``terms`` terms: ``α Σ_{k<terms} (1 − αλ)^k``, elementwise.

    Converges to ``1/λ`` when ``0 < αλ < 2``; its error factor is ``1 − λ p(λ) = (1 − αλ)^terms``. ``K`` GD steps of
    size η from zero are ``terms = K`` with ``α = η/N`` (:func:`implicit_inverse`); ``k`` Newton–Schulz iterations
    from ``M_0 = αI`` are ``terms = 2^k``.
    """
    lam = _eigenvalues(lam)
    alpha = _checks.positive_float("alpha", alpha)
    out, power = torch.zeros_like(lam), torch.ones_like(lam)
    for _ in range(_checks.positive_int("terms", terms)):
        out = out + alpha * power
        power = power * (1 - alpha * lam)
    return out


def newton_inverse(lam: torch.Tensor | float, steps: int, *, lam_max: torch.Tensor | float) -> torch.Tensor:
    """``p(λ)`` of :func:`solvers.newton_predict`: ``steps`` Newton–Schulz iterations ``m ← 2m − m²λ`` from
    ``m_0 = λ / λ_max²``, elementwise; ``lam_max`` (broadcast against ``lam``) is each task's largest eigenvalue of
    ``XᵀX``. Its error factor is ``1 − λ p(λ) = (1 − λ²/λ_max²)^(2^steps)``."""
    lam = _eigenvalues(lam)
    lam_max = torch.as_tensor(lam_max, dtype=lam.dtype)
    if not torch.isfinite(lam_max).all() or (lam_max <= 0).any():
        raise ValueError("lam_max must be finite and > 0")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    m = lam / lam_max**2
    for _ in range(steps):
        m = 2 * m - m**2 * lam
    return m


def polynomial_predict(x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor, p) -> torch.Tensor:
    """``ŷ = x_qᵀ p(XᵀX) Xᵀy`` through the eigendecomposition of the unnormalised ``XᵀX``: ``p`` maps a ``(B, dx)``
    tensor of eigenvalues to the polynomial's values (e.g. ``lambda lam: implicit_inverse(lam, ...)``).

    Returns ``(B, dy)``; with :func:`implicit_inverse` it equals :func:`solvers.gd_plus_plus` (float64: to
    round-off), with :func:`newton_inverse` :func:`solvers.newton_predict`.
    """
    _checks.tensor("x", x, 3, "(B, N, dx)")
    _checks.tensor("y", y, 3, "(B, N, dy)")
    _checks.tensor("x_query", x_query, 2, "(B, dx)")
    _checks.same("x", x.shape[2], "x_query", x_query.shape[1], "input dimension dx")
    _checks.same("x", tuple(x.shape[:2]), "y", tuple(y.shape[:2]), "(B, N)")
    lam, V = torch.linalg.eigh(x.transpose(1, 2) @ x)  # (B, dx), (B, dx, dx)
    vals = p(lam.clamp_min(0))
    M = V @ torch.diag_embed(vals.to(V.dtype)) @ V.transpose(1, 2)  # p(XᵀX), (B, dx, dx)
    W = (M @ x.transpose(1, 2) @ y).transpose(1, 2)  # (B, dy, dx)
    return (W @ x_query[..., None])[..., 0]


def polynomial_degree(p, lam_max: float, *, max_degree: int = 40, tol: float = 1e-9) -> int:
    """The degree of the polynomial ``p`` (a function of a float64 tensor of eigenvalues, e.g. a
    :func:`implicit_inverse`), found numerically: the smallest ``d`` whose least-squares Chebyshev fit on
    ``[0, lam_max]`` (``4·max_degree`` Chebyshev nodes) matches ``p`` to ``tol`` relative to ``p``'s largest value."""
    import numpy as np

    lam_max = _checks.positive_float("lam_max", lam_max)
    max_degree = _checks.positive_int("max_degree", max_degree)
    n = 4 * max_degree
    nodes = lam_max / 2 * (1 - np.cos(np.pi * (np.arange(n) + 0.5) / n))
    values = np.asarray(p(torch.as_tensor(nodes, dtype=torch.float64)), dtype=np.float64)
    scale = np.abs(values).max()
    for d in range(max_degree + 1):
        fit = np.polynomial.Chebyshev.fit(nodes, values, d)
        if np.abs(fit(nodes) - values).max() <= tol * scale:
            return d
    raise ValueError(f"p is not a polynomial of degree ≤ {max_degree} to tol={tol} on [0, {lam_max}]")
