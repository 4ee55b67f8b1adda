"""Learners the transformers are compared with: gradient descent, least squares, ridge, averaging, nearest
neighbours, optimal step sizes.

Everything here solves the in-context objective ``L(W) = 1/(2N) Σ_i ||W x_i − y_i||²`` of one task at a time,
batched over tasks. Rows are tokens: ``x (B, N, dx)``, ``y (B, N, dy)``, weights ``W (B, dy, dx)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from . import _checks
from .tasks import input_moments

__all__ = ["gd", "gd_plus_plus", "preconditioned_gd_step", "newton_predict", "optimal_preconditioner_gaussian",
           "least_squares", "ridge", "averaging", "nearest_neighbours", "predict", "optimal_gd_lr",
           "gd_one_step_loss", "expected_trace_cov_sq", "line_search", "causal_pairs", "causal_gd_predict",
           "causal_ridge_predict", "causal_delta_predict"]


def _check_xy(x: torch.Tensor, y: torch.Tensor) -> None:
    _checks.tensor("x", x, 3, "(B, N, dx)")
    _checks.tensor("y", y, 3, "(B, N, dy)")
    _checks.same("x", x.shape[0], "y", y.shape[0], "batch size B")
    _checks.same("x", x.shape[1], "y", y.shape[1], "context length N")
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got x {x.dtype} and y {y.dtype}")


def _step_sizes(lr: object, steps: int, batch: int, like: torch.Tensor) -> list:
    """One entry per step: a float, a 0-dim tensor (differentiable, e.g. a fitted scalar) or a (B, 1, 1) tensor."""
    if isinstance(lr, torch.Tensor) and lr.ndim == 0:
        return [lr.to(like.dtype)] * steps
    if isinstance(lr, torch.Tensor):
        if lr.shape != (batch,):
            raise ValueError(f"lr as a tensor must have shape (B,) = ({batch},), got {tuple(lr.shape)}")
        return [lr.to(like)[:, None, None]] * steps
    if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
        if not math.isfinite(lr):
            raise ValueError(f"lr must be a finite number, got {lr}")
        return [float(lr)] * steps
    if isinstance(lr, Sequence) and not isinstance(lr, str):
        if len(lr) != steps:
            raise ValueError(f"lr as a sequence must have one entry per step ({steps}), got {len(lr)}")
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in lr):
            raise TypeError("lr as a sequence must hold real numbers")
        if not all(map(math.isfinite, lr)):
            raise ValueError(f"lr must hold finite numbers, got {list(lr)}")
        return [float(v) for v in lr]
    raise TypeError(f"lr must be a float, a sequence of `steps` floats or a (B,) tensor, got {type(lr).__name__}")


def gd(
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float | Sequence[float] | torch.Tensor,
    steps: int = 1,
    w0: torch.Tensor | None = None,
) -> torch.Tensor:
    """``steps`` steps of gradient descent on ``L(W) = 1/(2N) Σ_i ||W x_i − y_i||²``, from ``w0`` (zeros).

    Parameters
    ----------
    x : (B, N, dx)
    y : (B, N, dy)
    lr : float, sequence of ``steps`` floats, or (B,) tensor
        The step size η (one per step, or one per task).
    steps : int
        Number of GD steps K.
    w0 : (B, dy, dx) or None
        Starting weights.

    Returns
    -------
    W : (B, dy, dx)

    References
    ----------
    von Oswald et al. (2022), Eq. 1–2; Part III, "One layer, one step".
    """
    _check_xy(x, y)
    steps = _checks.positive_int("steps", steps)
    B, N, dx = x.shape
    dy = y.shape[2]
    lrs = _step_sizes(lr, steps, B, x)
    if w0 is None:
        W = x.new_zeros(B, dy, dx)
    else:
        _checks.tensor("w0", w0, 3, "(B, dy, dx)")
        if tuple(w0.shape) != (B, dy, dx):
            raise ValueError(f"w0 must have shape (B, dy, dx) = {(B, dy, dx)}, got {tuple(w0.shape)}")
        W = w0.to(x)
    for eta in lrs:
        residual = x @ W.transpose(1, 2) - y  # (B, N, dy)
        grad = residual.transpose(1, 2) @ x / N  # (B, dy, dx)
        W = W - eta * grad
    return W


def gd_plus_plus(
    x: torch.Tensor,
    y: torch.Tensor,
    x_query: torch.Tensor,
    lr: float | Sequence[float] | torch.Tensor,
    gamma: float | Sequence[float] | torch.Tensor,
    steps: int = 1,
) -> torch.Tensor:
    """Predictions ``ŷ (B, dy)`` of ``steps`` steps of GD++ from ``W = 0``.

    Each step is a GD step on the current inputs followed by a curvature correction that maps every input,
    context and query alike, to ``(I − γ XᵀX) x`` with the **unnormalised** ``XᵀX = Σ_i x_i x_iᵀ`` of the
    current context inputs; the y-update uses the pre-step inputs (both updates happen simultaneously, as
    in one attention layer). The eigenvalues of ``XᵀX`` move as ``λ ↦ λ (1 − γλ)²``. ``gamma = 0`` is GD.

    Parameters
    ----------
    x, y, x_query : (B, N, dx), (B, N, dy), (B, dx)
    lr, gamma : float, sequence of ``steps`` floats, 0-dim tensor (differentiable) or (B,) tensor

    References
    ----------
    von Oswald et al. (2022), Sec. 3 ("GD++") and Appendix A.10; Part III, "Deeper layers: GD++".
    """
    _check_xy(x, y)
    _checks.tensor("x_query", x_query, 2, "(B, dx)")
    _checks.same("x", x.shape[2], "x_query", x_query.shape[1], "input dimension dx")
    steps = _checks.positive_int("steps", steps)
    B, N, _ = x.shape
    lrs, gammas = _step_sizes(lr, steps, B, x), _step_sizes(gamma, steps, B, x)
    xs, r, q = x, y.to(x.dtype), x_query  # r: the y-slots, which hold the residuals y_i − W x_i
    pred = x.new_zeros(B, y.shape[2])
    for eta, g in zip(lrs, gammas):
        eta_n = eta / N
        pred = pred + eta_n * ((xs @ q[..., None]).transpose(1, 2) @ r)[:, 0]  # + (η/N) Σ_i r_i x_iᵀ x_q
        r = r - eta_n * (xs @ xs.transpose(1, 2)) @ r  # (B, N, dy)
        cov = xs.transpose(1, 2) @ xs  # (B, dx, dx) = XᵀX, unnormalised
        xs, q = xs - g * (xs @ cov), q - g * (cov @ q[..., None])[..., 0]
    return pred


def preconditioned_gd_step(x: torch.Tensor, y: torch.Tensor, precond: torch.Tensor) -> torch.Tensor:
    """One preconditioned GD step from ``W = 0``: ``W = (1/N) Yᵀ X Γ`` (the step size is absorbed in ``Γ``).

    ``precond`` is ``Γ (dx, dx)`` or ``(B, dx, dx)``; ``Γ = η I`` is plain GD. Returns ``W (B, dy, dx)``.

    References
    ----------
    Ahn et al. (2023); Mahankali et al. (2023): the optimal single linear-attention layer is one such step.
    """
    _check_xy(x, y)
    if not isinstance(precond, torch.Tensor) or precond.shape[-2:] != (x.shape[2], x.shape[2]):
        raise ValueError(f"precond must have shape (dx, dx) or (B, dx, dx) with dx={x.shape[2]}, "
                         f"got {getattr(precond, 'shape', type(precond).__name__)}")
    return y.transpose(1, 2) @ x @ precond.to(x) / x.shape[1]  # (B, dy, dx)


def optimal_preconditioner_gaussian(cov: torch.Tensor, n_context: int) -> torch.Tensor:
    """The best one-step preconditioner for Gaussian inputs ``x ~ N(0, Σ)`` and teacher ``w ~ N(0, I)``, noise-free:
    ``Γ* = ((1 + 1/N) Σ + (tr Σ / N) I)⁻¹``, derived in Part III, "Anisotropic inputs: one layer learns preconditioned
    GD" (whose exercise ``optimal_preconditioner`` adds a teacher scale and label noise)."""
    _checks.tensor("cov", cov, 2, "(dx, dx)")
    n = _checks.positive_int("n_context", n_context)
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    return torch.linalg.inv((1 + 1 / n) * cov + torch.trace(cov) / n * eye)


def newton_predict(x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor, steps: int) -> torch.Tensor:
    """Predictions ``(B, dy)`` of least squares with ``(XᵀX)⁻¹`` replaced by ``steps`` Newton–Schulz iterations.

    ``M_0 = α XᵀX`` with ``α = 1 / λ_max(XᵀX)²`` (every eigenvalue of ``M_0 XᵀX`` then lies in (0, 1]) and
    ``M_{k+1} = 2 M_k − M_k XᵀX M_k`` (quadratic convergence once every eigenvalue is resolved);
    ``ŷ = x_qᵀ M_k Xᵀ y``. ``steps = 0`` is one step preconditioned by ``α XᵀX``.

    References
    ----------
    Fu et al. (2023), "Transformers learn higher-order optimization methods for in-context learning", Sec. 3.
    """
    _check_xy(x, y)
    _checks.tensor("x_query", x_query, 2, "(B, dx)")
    _checks.same("x", x.shape[2], "x_query", x_query.shape[1], "input dimension dx")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    cov = x.transpose(1, 2) @ x  # (B, dx, dx), unnormalised
    lam_max = torch.linalg.eigvalsh(cov)[:, -1]  # (B,)
    M = cov / lam_max[:, None, None] ** 2
    for _ in range(steps):
        M = 2 * M - M @ cov @ M
    W = (M @ x.transpose(1, 2) @ y).transpose(1, 2)  # (B, dy, dx)
    return (W @ x_query[..., None])[..., 0]


def least_squares(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least-squares weights ``W (B, dy, dx)`` (pseudo-inverse; exact interpolation when N ≥ dx)."""
    _check_xy(x, y)
    return (torch.linalg.pinv(x) @ y).transpose(1, 2)  # (B, dx, N) @ (B, N, dy) -> (B, dy, dx)


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Ridge weights ``argmin_W ½ Σ_i ||W x_i − y_i||² + (λ/2) ||W||²``: ``W = Yᵀ X (XᵀX + λ I)⁻¹``.

    With teacher ``w ~ N(0, s² I)`` and label noise ``σ_ε``, ``λ = σ_ε² / s²`` gives the Bayes-optimal
    (posterior-mean) predictor.
    """
    _check_xy(x, y)
    lam = _checks.positive_float("lam", lam, allow_zero=True)
    dx = x.shape[2]
    gram = x.transpose(1, 2) @ x + lam * torch.eye(dx, dtype=x.dtype, device=x.device)  # (B, dx, dx)
    return torch.linalg.solve(gram, x.transpose(1, 2) @ y).transpose(1, 2)  # (B, dy, dx)


def averaging(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Garg et al.'s averaging estimator ``W = (1/N) Σ_i y_i x_iᵀ`` ``(B, dy, dx)``: one GD step of size 1 from 0."""
    _check_xy(x, y)
    return (y.transpose(1, 2) @ x) / x.shape[1]  # (B, dy, dx)


def nearest_neighbours(x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor, k: int = 3) -> torch.Tensor:
    """The mean label of the ``min(k, N)`` demonstrations nearest to the query (Euclidean), ``(B, dy)``: Garg et
    al.'s k-NN baseline (their k = 3)."""
    _check_xy(x, y)
    _checks.tensor("x_query", x_query, 2, "(B, dx)")
    _checks.same("x", x.shape[0], "x_query", x_query.shape[0], "batch size B")
    _checks.same("x", x.shape[2], "x_query", x_query.shape[1], "input dimension dx")
    k = min(_checks.positive_int("k", k), x.shape[1])
    dist = ((x - x_query[:, None]) ** 2).sum(-1)  # (B, N)
    idx = dist.topk(k, dim=1, largest=False).indices  # (B, k)
    return torch.gather(y, 1, idx[..., None].expand(-1, -1, y.shape[2])).mean(1)  # (B, dy)


def predict(W: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
    """Query predictions ``ŷ = W x_query``: ``W (B, dy, dx)``, ``x_query (B, dx)`` → ``(B, dy)``."""
    _checks.tensor("W", W, 3, "(B, dy, dx)")
    _checks.tensor("x_query", x_query, 2, "(B, dx)")
    _checks.same("W", W.shape[2], "x_query", x_query.shape[1], "input dimension dx")
    return (W @ x_query[..., None])[..., 0]


def expected_trace_cov_sq(dx: int, n_context: int, input_range: float = 1.0, input_dist: str = "uniform") -> float:
    """``E tr Σ̂²`` for ``Σ̂ = (1/N) Σ_i x_i x_iᵀ`` with i.i.d. coordinates of variance σ² and fourth moment μ₄
    (:func:`~icl_course.tasks.input_moments`): a sum over the entries of Σ̂, derived in Part III, "One layer, one step"
    (the exercise ``optimal_step_size`` asks for it)."""
    d = _checks.positive_int("dx", dx)
    n = _checks.positive_int("n_context", n_context)
    var, mu4 = input_moments(input_range, input_dist)
    return d * (d - 1) * var**2 / n + d * (mu4 + (n - 1) * var**2) / n


def optimal_gd_lr(
    dx: int,
    n_context: int,
    *,
    input_range: float = 1.0,
    input_dist: str = "uniform",
    teacher_scale: float = 1.0,
    noise_std: float = 0.0,
) -> float:
    """The population-optimal step size of one GD step from ``W = 0``.

    Without noise ``η* = E tr Σ̂ / E tr Σ̂²`` (:func:`expected_trace_cov_sq`); label noise of variance ``σ_ε²`` adds
    ``σ_ε² d σ_x² / N`` to the denominator's ``s² E tr Σ̂²``. The closed form holds for inputs with i.i.d.
    coordinates (``input_dist`` ``"uniform"`` or ``"gaussian"``); any other distribution raises — use
    :func:`line_search` there.

    References
    ----------
    Derived in Part III, "One layer, one step" (target E2a).
    """
    s2 = _checks.positive_float("teacher_scale", teacher_scale) ** 2
    noise = _checks.positive_float("noise_std", noise_std, allow_zero=True) ** 2
    var, _ = input_moments(input_range, input_dist)
    d, n = _checks.positive_int("dx", dx), _checks.positive_int("n_context", n_context)
    return s2 * d * var / (s2 * expected_trace_cov_sq(d, n, input_range, input_dist) + noise * d * var / n)


def gd_one_step_loss(
    lr: float,
    dx: int,
    n_context: int,
    *,
    input_range: float = 1.0,
    input_dist: str = "uniform",
    teacher_scale: float = 1.0,
    noise_std: float = 0.0,
) -> float:
    """Population loss ``E ½ (ŷ − y_q)²`` of one GD step from 0 with step size η (dy = 1).

    ``L(η) = ½ [σ² s² (d − 2η d σ² + η² E tr Σ̂²) + η² σ² σ_ε² d σ² / N + σ_ε²]``.
    """
    eta = float(lr)
    s2 = _checks.positive_float("teacher_scale", teacher_scale, allow_zero=True) ** 2
    noise = _checks.positive_float("noise_std", noise_std, allow_zero=True) ** 2
    var, _ = input_moments(input_range, input_dist)
    d, n = _checks.positive_int("dx", dx), _checks.positive_int("n_context", n_context)
    tr2 = expected_trace_cov_sq(d, n, input_range, input_dist)
    signal = var * s2 * (d - 2 * eta * d * var + eta**2 * tr2)
    return 0.5 * (signal + eta**2 * var * noise * d * var / n + noise)


def line_search(loss: Callable[[float], float], lo: float, hi: float, tol: float = 1e-6, max_iter: int = 200) -> float:
    """Golden-section search for the minimiser of a unimodal ``loss(η)`` on ``[lo, hi]``.

    Used where no closed-form step size exists (e.g. anisotropic inputs, several GD steps).
    """
    if not lo < hi:
        raise ValueError(f"need lo < hi, got lo={lo}, hi={hi}")
    inv_phi = (math.sqrt(5) - 1) / 2
    a, b = float(lo), float(hi)
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(max_iter):
        if b - a < tol:
            break
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = loss(d)
    return (a + b) / 2


# ---------------------------------------------------------------- the in-context objective of a sequence (Part IV)
def causal_pairs(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The regression pairs a sequence offers at each position: inputs ``s_{j−1}`` and targets ``s_j`` (``s_0 = 0``),
    both ``(B, T, D)`` for ``states (B, T, D)`` = ``s_1 … s_T``."""
    _checks.tensor("states", states, 3, "(B, T, D)")
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)  # s_{j-1}, (B, T, D)
    return prev, states


def causal_gd_predict(states: torch.Tensor, lr: float | torch.Tensor, w0: torch.Tensor | None = None) -> torch.Tensor:
    """Predictions ``ŝ_{t+1} = W_t s_t`` ``(B, T, D)`` of one GD step on the mesa objective at every position ``t``.

    The objective is the **unnormalised** causal sum ``L_t(W) = ½ Σ_{j≤t} ‖s_j − W s_{j−1}‖²`` over the pairs seen so
    far (``s_0 = 0``), and the step starts from ``W_0`` (zeros if None):
    ``W_t = W_0 − η ∇L_t(W_0) = W_0 + η Σ_{j≤t} (s_j − W_0 s_{j−1}) s_{j−1}ᵀ``.
    With ``W_0 = 0``: ``ŝ_{t+1} = η Σ_{j≤t} (s_{j−1}·s_t) s_j`` — causal linear attention with queries ``s_t``,
    keys ``s_{j−1}`` and values ``s_j`` (the official ``GDSequenceSolver``, η by line search ≈ 0.03).

    Parameters
    ----------
    states : (B, T, D) ``s_1 … s_T``
    lr : float, 0-dim tensor (differentiable) or (B,) tensor — the step size η
    w0 : (D, D) shared or (B, D, D) per sequence, optional — the initial weights ``W_0``

    References
    ----------
    von Oswald et al. (2023), Proposition 1, and the official ``GDSequenceSolver``; Part IV, "Causal linear
    attention is one GD step".
    """
    prev, cur = causal_pairs(states)
    B, T, D = states.shape
    eta = _step_sizes(lr, 1, B, states)[0]
    eta = eta[:, :, :, None] if isinstance(eta, torch.Tensor) and eta.ndim == 3 else eta  # (B, 1, 1, 1)
    W0 = states.new_zeros(B, D, D) if w0 is None else w0
    if not isinstance(W0, torch.Tensor) or W0.shape not in ((D, D), (B, D, D)):
        raise ValueError(f"w0 must have shape (D, D) or (B, D, D) with D={D}, B={B}, "
                         f"got {tuple(W0.shape) if isinstance(W0, torch.Tensor) else type(W0).__name__}")
    W0 = W0.to(states).expand(B, D, D)
    resid = cur - prev @ W0.transpose(1, 2)  # s_j − W_0 s_{j−1}, (B, T, D)
    grads = torch.cumsum(resid[..., :, None] * prev[..., None, :], dim=1)  # Σ_{j≤t} r_j s_{j−1}ᵀ, (B, T, D, D)
    W_t = W0[:, None] + eta * grads  # (B, T, D, D)
    return (W_t @ states[..., None])[..., 0]  # (B, T, D)


def causal_ridge_predict(states: torch.Tensor, lam: float, pairs: str = "j<=t") -> torch.Tensor:
    """Predictions ``ŝ_{t+1} = W_t s_t`` ``(B, T, D)`` of ridge regression on the pairs seen so far.

    ``W_t = (Σ_j s_j s_{j−1}ᵀ)(Σ_j s_{j−1} s_{j−1}ᵀ + λ I)⁻¹`` — the exact minimiser of the mesa objective
    ``½ Σ_j ‖s_j − W s_{j−1}‖² + λ/2 ‖W‖²``. ``pairs="j<=t"``: every pair up to the current token, what a causal
    mesa layer sees; ``pairs="j<t"``: without the newest pair ``(s_{t−1}, s_t)``, the official least-squares
    baseline. ``lam`` is the ridge λ itself (the official mesa layer's parameter is ``1/λ``).

    References
    ----------
    von Oswald et al. (2023), the mesa layer (which solves this objective), and the official
    ``LeastSquaresSequenceSolver`` (λ = 1e-3, pairs j < t); Part IV, "Causal linear attention is one GD step".
    """
    lam = _checks.positive_float("lam", lam)
    if pairs not in ("j<=t", "j<t"):
        raise ValueError(f"pairs must be 'j<=t' or 'j<t', got {pairs!r}")
    prev, cur = causal_pairs(states)
    D = states.shape[-1]
    A = torch.cumsum(prev[..., :, None] * prev[..., None, :], dim=1)  # Σ s_{j−1} s_{j−1}ᵀ, (B, T, D, D)
    C = torch.cumsum(cur[..., :, None] * prev[..., None, :], dim=1)  # Σ s_j s_{j−1}ᵀ, (B, T, D, D)
    if pairs == "j<t":
        A, C = (torch.cat([torch.zeros_like(M[:, :1]), M[:, :-1]], dim=1) for M in (A, C))  # shift by one pair
    eye = torch.eye(D, dtype=states.dtype, device=states.device)
    z = torch.linalg.solve(A + lam * eye, states[..., None])  # (A + λI)⁻¹ s_t, (B, T, D, 1)
    return (C @ z)[..., 0]  # (B, T, D)


def causal_delta_predict(states: torch.Tensor, beta: float | torch.Tensor,
                         w0: torch.Tensor | None = None) -> torch.Tensor:
    """Predictions ``ŝ_{t+1} = S_t s_t`` ``(B, T, D)`` of the delta rule: one GD step per token on the newest pair.

    ``S_t = S_{t−1} + β_t (s_t − S_{t−1} s_{t−1}) s_{t−1}ᵀ`` from ``S_0 = w0`` (zeros if None) is a step of size
    ``β_t`` on ``½‖s_t − S s_{t−1}‖²`` — keys ``s_{t−1}``, values ``s_t``, query ``s_t``, as in
    :func:`causal_gd_predict`, which takes one step on the whole sum ``L_t`` instead. Each step multiplies the old
    state by ``I − β_t s_{t−1} s_{t−1}ᵀ``: stable while ``0 ≤ β_t ‖s_{t−1}‖² ≤ 2``; ``β_t = 1/‖s_{t−1}‖²`` makes
    ``S_t s_{t−1} = s_t`` exactly. To first order in β the prediction is :func:`causal_gd_predict`'s at ``η = β``.

    Parameters
    ----------
    states : (B, T, D) ``s_1 … s_T``
    beta : float, 0-dim tensor, (B,) tensor (one per sequence) or (B, T) tensor (one per token, DeltaNet's ``β_t``)
    w0 : (D, D) shared or (B, D, D) per sequence, optional — the initial state ``S_0``

    References
    ----------
    Widrow and Hoff (1960) (the delta / LMS rule); Schlag et al. (2021) and Yang et al. (2024) (DeltaNet); Part IV,
    "One family: linear attention, the delta rule, the mesa layer".
    """
    prev, cur = causal_pairs(states)
    B, T, D = states.shape
    if isinstance(beta, torch.Tensor):
        if beta.shape not in ((), (B,), (B, T)):
            raise ValueError(f"beta as a tensor must have shape (), (B,) = ({B},) or (B, T) = ({B}, {T}), "
                             f"got {tuple(beta.shape)}")
        beta = beta.to(states).reshape(-1, 1).expand(B, T) if beta.ndim < 2 else beta.to(states)  # (B, T)
    elif not isinstance(beta, numbers.Real) or isinstance(beta, bool):
        raise TypeError(f"beta must be a float or a tensor of shape (), (B,) or (B, T), got {type(beta).__name__}")
    betas = [beta[:, t, None, None] for t in range(T)] if isinstance(beta, torch.Tensor) else [float(beta)] * T
    S = states.new_zeros(B, D, D) if w0 is None else w0
    if not isinstance(S, torch.Tensor) or S.shape not in ((D, D), (B, D, D)):
        raise ValueError(f"w0 must have shape (D, D) or (B, D, D) with D={D}, B={B}, "
                         f"got {tuple(S.shape) if isinstance(S, torch.Tensor) else type(S).__name__}")
    S, out = S.to(states).expand(B, D, D), []
    for t in range(T):
        k, v = prev[:, t], cur[:, t]  # (B, D): key s_{t−1}, value s_t
        error = v - (S @ k[..., None])[..., 0]  # v_t − S_{t−1} k_t, (B, D)
        S = S + betas[t] * error[..., :, None] * k[..., None, :]  # S_{t−1} + β_t (v_t − S_{t−1} k_t) k_tᵀ
        out.append((S @ states[:, t, :, None])[..., 0])  # S_t s_t
    return torch.stack(out, dim=1)  # (B, T, D)
