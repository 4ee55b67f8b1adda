"""Data for every part: in-context linear regression and the token layout that feeds it to attention.

The defaults follow the official code of von Oswald et al. (2022): inputs ``x ~ U(-r/2, r/2)`` with
``input_range r = 1`` (the paper's text says U(-1, 1), i.e. ``r = 2``), teacher ``w ~ N(0, s² I)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import _checks

__all__ = ["RegressionBatch", "sample_linear_regression", "make_tokens", "input_moments", "anisotropic_matrix"]


class RegressionBatch(NamedTuple):
    """A batch of in-context regression tasks.

    Attributes
    ----------
    x : (B, N, dx) context inputs
    y : (B, N, dy) context targets
    x_query : (B, dx) query input
    y_query : (B, dy) query target
    w : (B, dy, dx) teacher weights, ``y = w x + noise``
    """

    x: torch.Tensor
    y: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor
    w: torch.Tensor

    def tokens(self) -> torch.Tensor:
        """The token matrix ``E (B, N+1, dx+dy)`` of :func:`make_tokens`."""
        return make_tokens(self.x, self.y, self.x_query)

    @property
    def dx(self) -> int:
        return self.x.shape[-1]


def sample_linear_regression(
    batch_size: int,
    n_context: int,
    dx: int,
    dy: int = 1,
    *,
    input_range: float = 1.0,
    query_range: float | None = None,
    input_dist: str = "uniform",
    input_matrix: torch.Tensor | None = None,
    teacher_scale: float = 1.0,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> RegressionBatch:
    """Draw ``batch_size`` noisy linear-regression tasks, each with ``n_context`` demonstrations and a query.

    Parameters
    ----------
    batch_size, n_context, dx, dy : int
        B, N, input and output dimension.
    input_range : float
        ``r``: inputs ``x ~ U(-r/2, r/2)`` (``input_dist="uniform"``, the official code's convention) or
        ``x ~ N(0, (r²/12) I)`` (``"gaussian"``, same variance). ``r = 2`` is the paper text's U(-1, 1).
    query_range : float or None
        A different ``r`` for the query only (out-of-distribution queries); defaults to ``input_range``.
    input_matrix : (dx, dx) tensor, optional
        Anisotropic inputs: every input becomes ``A x``, so its covariance is ``(r²/12) A Aᵀ``.
    teacher_scale : float
        ``s``: teacher ``w ~ N(0, s² I)``. Scaling it by α scales every squared error by α².
    noise_std : float
        Label noise ``σ_ε`` on context and query targets.

    Returns
    -------
    RegressionBatch

    References
    ----------
    von Oswald et al. (2022), Sec. 2 and the official ``data_creator``; used in Part III, "One layer, one step".
    """
    B = _checks.positive_int("batch_size", batch_size)
    N = _checks.positive_int("n_context", n_context)
    dx = _checks.positive_int("dx", dx)
    dy = _checks.positive_int("dy", dy)
    r = _checks.positive_float("input_range", input_range)
    rq = r if query_range is None else _checks.positive_float("query_range", query_range)
    s = _checks.positive_float("teacher_scale", teacher_scale, allow_zero=True)
    sig = _checks.positive_float("noise_std", noise_std, allow_zero=True)
    if input_dist not in ("uniform", "gaussian"):
        raise ValueError(f"input_dist must be 'uniform' or 'gaussian', got {input_dist!r}")
    kw = {"generator": generator, "dtype": dtype, "device": device}
    w = s * torch.randn(B, dy, dx, **kw)  # (B, dy, dx)
    if input_dist == "uniform":
        xs = torch.rand(B, N + 1, dx, **kw) - 0.5  # (B, N+1, dx), U(-1/2, 1/2)
    else:
        xs = torch.randn(B, N + 1, dx, **kw) / 12**0.5
    if input_matrix is not None:
        _checks.tensor("input_matrix", input_matrix, 2, "(dx, dx)")
        if tuple(input_matrix.shape) != (dx, dx):
            raise ValueError(f"input_matrix must have shape (dx, dx) = {(dx, dx)}, got {tuple(input_matrix.shape)}")
        xs = xs @ input_matrix.to(xs).T  # (B, N+1, dx): rows A x
    x, x_query = xs[:, :N] * r, xs[:, N] * rq
    ys = torch.cat([x, x_query[:, None]], dim=1) @ w.transpose(1, 2)  # (B, N+1, dy)
    if sig > 0:
        ys = ys + sig * torch.randn(B, N + 1, dy, **kw)
    return RegressionBatch(x, ys[:, :N], x_query, ys[:, N], w)


def input_moments(input_range: float = 1.0, input_dist: str = "uniform") -> tuple[float, float]:
    """Per-coordinate variance ``σ²`` and fourth moment ``μ₄`` of the input distribution.

    U(-r/2, r/2): ``σ² = r²/12``, ``μ₄ = r⁴/80``; Gaussian of the same variance: ``μ₄ = 3σ⁴``.
    """
    r = _checks.positive_float("input_range", input_range)
    var = r**2 / 12
    if input_dist == "uniform":
        return var, r**4 / 80
    if input_dist == "gaussian":
        return var, 3 * var**2
    raise ValueError(f"input_dist must be 'uniform' or 'gaussian', got {input_dist!r}")


def make_tokens(x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
    """Stack demonstrations and query into tokens: ``E (B, N+1, dx+dy)``.

    Context token i is ``(x_i, y_i)``; the last token is the query ``(x_query, 0)``.

    Parameters
    ----------
    x : (B, N, dx)
    y : (B, N, dy)
    x_query : (B, dx)

    References
    ----------
    von Oswald et al. (2022), Eq. 4 (token construction); Part III, "One layer, one step".
    """
    _checks.tensor("x", x, 3, "(B, N, dx)")
    _checks.tensor("y", y, 3, "(B, N, dy)")
    _checks.tensor("x_query", x_query, 2, "(B, dx)")
    _checks.same("x", x.shape[0], "y", y.shape[0], "batch size B")
    _checks.same("x", x.shape[1], "y", y.shape[1], "context length N")
    _checks.same("x", x.shape[0], "x_query", x_query.shape[0], "batch size B")
    _checks.same("x", x.shape[2], "x_query", x_query.shape[1], "input dimension dx")
    query = torch.cat([x_query, x_query.new_zeros(x_query.shape[0], y.shape[2])], dim=-1)  # (B, dx+dy)
    context = torch.cat([x, y.to(x.dtype)], dim=-1)  # (B, N, dx+dy)
    return torch.cat([context, query[:, None]], dim=1)  # (B, N+1, dx+dy)


def anisotropic_matrix(dx: int, condition: float, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A symmetric ``A (dx, dx)`` with a random orientation whose ``A Aᵀ`` has condition number ``condition``.

    Used as ``input_matrix``: the input covariance ``(r²/12) A Aᵀ`` then has eigenvalues spread
    log-uniformly over a factor ``condition``, with geometric mean ``r²/12``.
    """
    dx = _checks.positive_int("dx", dx)
    cond = _checks.positive_float("condition", condition)
    if cond < 1:
        raise ValueError(f"condition must be >= 1, got {condition}")
    q, _ = torch.linalg.qr(torch.randn(dx, dx, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    scales = torch.logspace(-0.25, 0.25, dx, base=cond, dtype=torch.float64)  # singular values of A
    return (q @ torch.diag(scales) @ q.T).to(dtype)
