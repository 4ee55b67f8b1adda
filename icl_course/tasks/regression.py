"""In-context regression tasks (linear and sine) and the token layouts that feed them to attention; training streams
and fixed evaluation sets.

The defaults follow the official code of von Oswald et al. (2022): inputs ``x ~ U(-r/2, r/2)`` with
``input_range r = 1`` (the paper's text says U(-1, 1), i.e. ``r = 2``), teacher ``w ~ N(0, s² I)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .. import _checks, runtime

__all__ = ["RegressionBatch", "sample_linear_regression", "make_tokens", "interleaved_tokens", "previous_pair_tokens",
           "input_moments", "anisotropic_matrix", "sample_sine_regression", "sine_basis", "standard_tokens",
           "regression_stream", "regression_eval_set", "sine_stream", "sine_eval_set"]


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
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype}")
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
    """Per-coordinate variance ``σ²`` and fourth moment ``μ₄`` of the input distribution: ``"uniform"``,
    U(−r/2, r/2), or ``"gaussian"`` of the same variance (``μ₄ = 3σ⁴``). The uniform moments are part of the exercise
    ``optimal_step_size`` (Part III, "One layer, one step")."""
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


def _check_demonstrations(x: torch.Tensor, y: torch.Tensor) -> None:
    """``x (B, N, dx)`` and ``y (B, N, dy)`` with the same batch size and context length."""
    _checks.tensor("x", x, 3, "(B, N, dx)")
    _checks.tensor("y", y, 3, "(B, N, dy)")
    _checks.same("x", x.shape[0], "y", y.shape[0], "batch size B")
    _checks.same("x", x.shape[1], "y", y.shape[1], "context length N")


def interleaved_tokens(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Demonstrations as a sequence of alternating input and label tokens: ``Z (B, 2N, dx+dy)``.

    Token ``2i`` is ``(x_i, 0)`` and token ``2i+1`` is ``(0, y_i)``. A causal model reading its output at token
    ``2i`` has seen ``i`` labelled demonstrations and the input ``x_i``: one sequence scores every prefix length at
    once. (Garg et al. pad each label to a vector ``(y_i, 0, …, 0)`` in the inputs' own coordinates; separate
    coordinates for inputs and labels keep a token's role readable.)

    Parameters
    ----------
    x : (B, N, dx)
    y : (B, N, dy)

    References
    ----------
    Garg et al. (2022), Sec. 2 and the official ``_combine``; Part I, "Learning to learn in context".
    """
    _check_demonstrations(x, y)
    B, N, dx = x.shape
    z = x.new_zeros(B, N, 2, dx + y.shape[2])  # (B, N, 2, dx+dy)
    z[:, :, 0, :dx] = x
    z[:, :, 1, dx:] = y.to(x.dtype)
    return z.reshape(B, 2 * N, dx + y.shape[2])


def previous_pair_tokens(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Demonstrations as one token each, paired with the next input: ``Z (B, N, 2dx+dy)``.

    Token ``i`` is ``(x_{i−1}, y_{i−1}, x_i)`` (token 0: ``(0, 0, x_0)``), so a causal model reading its output at
    token ``i`` has seen the ``i`` demonstrations before it, each input next to its label, and the input ``x_i`` to
    predict ``y_i`` for: like :func:`interleaved_tokens`, one sequence scores every prefix length, in half the
    tokens, without a first attention step that brings each label to its input.

    Parameters
    ----------
    x : (B, N, dx)
    y : (B, N, dy)

    References
    ----------
    Part I, "Learning to learn in context" (why this layout, not Garg et al.'s interleaving, trains on a CPU budget).
    """
    _check_demonstrations(x, y)
    pairs = torch.cat([x, y.to(x.dtype)], dim=-1)  # (B, N, dx+dy)
    previous = torch.cat([torch.zeros_like(pairs[:, :1]), pairs[:, :-1]], dim=1)  # (B, N, dx+dy): pair i−1
    return torch.cat([previous, x], dim=-1)  # (B, N, 2dx+dy)


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


def sine_basis(x: torch.Tensor) -> torch.Tensor:
    """The two features that make sine regression linear: ``(…, 1) → (…, 2)``, ``(sin x, cos x)``.

    ``a sin(x + φ) = (a cos φ) sin x + (a sin φ) cos x``, so a sine task is linear regression on these features.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (..., 1), got {shape}")
    return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)


def sample_sine_regression(
    batch_size: int,
    n_context: int,
    *,
    amplitude: tuple[float, float] = (0.1, 0.5),
    phase: tuple[float, float] = (0.0, math.pi),
    input_range: float = 10.0,
    tied: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> RegressionBatch:
    """Draw sine-wave regression tasks ``y = a sin(x + φ)`` with ``x ~ U(−r/2, r/2)`` (one input, one output).

    Parameters
    ----------
    batch_size, n_context : int
        B and N.
    amplitude, phase : (low, high)
        ``a ~ U(amplitude)``, ``φ ~ U(phase)``; the official code's (0.1, 0.5) (the paper's text says
        (0.1, 5)) and (0, π).
    input_range : float
        ``r``; the paper's ``x ~ U(−5, 5)`` is ``r = 10``.
    tied : bool
        Draw ``a`` and ``φ`` from *one* uniform number ``u`` (``a = a_lo + u (a_hi − a_lo)``, ``φ = φ_lo + u (φ_hi −
        φ_lo)``), as the official generator does by passing the same random key to both draws. The task family is
        then a one-parameter curve instead of a two-parameter region.

    Returns
    -------
    RegressionBatch
        ``x (B, N, 1)``, ``y (B, N, 1)``, ``x_query (B, 1)``, ``y_query (B, 1)`` and ``w (B, 1, 2)`` = ``(a cos φ,
        a sin φ)``, the task's weights on :func:`sine_basis` (so ``y = w · (sin x, cos x)``).

    References
    ----------
    von Oswald et al. (2022), Sec. 3 (non-linear regression) and the official ``create_reg_data_sin``; Part III,
    "Non-linear regression: GD on learned features".
    """
    B = _checks.positive_int("batch_size", batch_size)
    N = _checks.positive_int("n_context", n_context)
    r = _checks.positive_float("input_range", input_range)
    for name, (lo, hi) in (("amplitude", amplitude), ("phase", phase)):
        if not float(lo) <= float(hi):
            raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
    kw = {"generator": generator, "dtype": dtype, "device": device}
    u = torch.rand(B, 1, 1, **kw)  # (B, 1, 1)
    v = u if tied else torch.rand(B, 1, 1, **kw)
    a = amplitude[0] + (amplitude[1] - amplitude[0]) * u
    phi = phase[0] + (phase[1] - phase[0]) * v
    xs = (torch.rand(B, N + 1, 1, **kw) - 0.5) * r  # (B, N+1, 1)
    ys = a * torch.sin(xs + phi)  # (B, N+1, 1)
    w = torch.cat([a * torch.cos(phi), a * torch.sin(phi)], dim=-1)  # (B, 1, 2)
    return RegressionBatch(xs[:, :N], ys[:, :N], xs[:, N], ys[:, N], w)


def standard_tokens(x: torch.Tensor, y: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
    """The standard token layout: inputs and targets in *separate* tokens, with one-hot positions.

    The sequence is ``x_1, y_1, x_2, y_2, …, x_N, y_N, x_q``: ``2N + 1`` tokens of width ``dx + dy + 2N + 1``. An
    input token is ``(x_i, 0, p)``, a target token ``(0, y_i, p)``, the query ``(x_q, 0, p)``, where ``p`` is the
    one-hot position (``e_0 … e_2N``).

    Parameters
    ----------
    x : (B, N, dx)
    y : (B, N, dy)
    x_query : (B, dx)

    Returns
    -------
    (B, 2N+1, dx+dy+2N+1) tensor

    References
    ----------
    von Oswald et al. (2022), Sec. 4 and Proposition 3 (the official ``create_reg_data_classic_token`` puts y in
    x's last coordinate and appends a sinusoidal code instead); Part III, "Standard tokens: copy, then descend".
    """
    E = make_tokens(x, y, x_query)  # validates shapes
    B, N, dx, dy = x.shape[0], x.shape[1], x.shape[2], y.shape[2]
    T, D = 2 * N + 1, dx + dy
    out = E.new_zeros(B, T, D + T)
    out[:, 0:2 * N:2, :dx] = x
    out[:, 1:2 * N:2, dx:D] = y.to(E.dtype)
    out[:, -1, :dx] = x_query
    out[:, :, D:] = torch.eye(T, dtype=E.dtype, device=E.device)
    return out


# ---------------------------------------------------------------- training streams and fixed evaluation sets
# Every trained model of the course draws its training tasks from a stream (fresh tasks at every step, one seeded
# generator) and is scored on a fixed evaluation set drawn from a seed of its own, never the stream's.


def _stream(sample, batch_size: int, n_context: int, seed: int, device, **kw):
    gen = runtime.generator(seed, device)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = sample(batch_size, n_context, generator=gen, device=device, **kw)
        return b.tokens(), b.y_query

    return batches


def regression_stream(batch_size: int, n_context: int, dx: int, dy: int = 1, *, seed: int = 0,
                      device: str | torch.device | None = None, **task_kw):
    """``step -> (tokens, y_query)``: fresh :func:`sample_linear_regression` tasks at every step, from one seeded
    generator on ``device``; ``task_kw`` go to the sampler (e.g. ``input_range``)."""
    return _stream(sample_linear_regression, batch_size, n_context, seed, device, dx=dx, dy=dy, **task_kw)


def regression_eval_set(n_tasks: int, n_context: int, dx: int, dy: int = 1, *, seed: int,
                        device: str | torch.device | None = None, **task_kw) -> RegressionBatch:
    """A fixed evaluation set of :func:`sample_linear_regression` tasks drawn from its own ``seed``."""
    return sample_linear_regression(n_tasks, n_context, dx, dy, generator=runtime.generator(seed, device),
                                    device=device, **task_kw)


def sine_stream(batch_size: int, n_context: int, *, seed: int, tied: bool = False,
                device: str | torch.device | None = None, **task_kw):
    """``step -> (tokens, y_query)``: fresh :func:`sample_sine_regression` tasks at every step."""
    return _stream(sample_sine_regression, batch_size, n_context, seed, device, tied=tied, **task_kw)


def sine_eval_set(n_tasks: int, n_context: int = 10, *, seed: int, tied: bool = False,
                  device: str | torch.device | None = None, **task_kw) -> RegressionBatch:
    """A fixed evaluation set of :func:`sample_sine_regression` tasks drawn from its own ``seed``."""
    return sample_sine_regression(n_tasks, n_context, tied=tied, generator=runtime.generator(seed, device),
                                  device=device, **task_kw)
