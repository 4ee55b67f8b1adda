"""Part III, chapter "One layer, one step": Proposition 1 and what a trained layer is.

The learned step size read off the weights, the gauge-matched construction and the interpolation between it and a
trained layer, out-of-distribution behaviour (scaled inputs and teachers, and inputs of other distributions), the
damped roll-out of one layer applied many times, the exactness of Proposition 1 for K layers, and the optimal step
size by Monte Carlo.

References
----------
von Oswald et al. (2022), "Transformers learn in-context by gradient descent", Sec. 3, Proposition 1, Fig. 1–3, 6
and 10 (App. A.6).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from .. import _checks, metrics, runtime, solvers, tasks
from ..models import LinearSelfAttention, LSAStack
from ..query import predict, readout
from ._common import ONE_LAYER, PAPER, constructed_lsa, gd_predict, weight_blocks, weight_products

__all__ = ["ONE_LAYER_STEPS", "effective_lr_over_n", "product_layer", "gauge_matched_constructed",
           "interpolate_layers", "ood_sweep", "ood_log_ratios", "interpolation_losses", "proposition1_errors",
           "optimal_lr_monte_carlo", "softmax_heads_capacity", "OTHER_DISTRIBUTIONS", "sample_other_inputs",
           "other_distributions_sweep", "damped_rollout", "rollout_losses"]

ONE_LAYER_STEPS = ONE_LAYER.cpu.steps
"""Training steps of the one-layer experiment (the official notebook runs 5,000; the GD level is reached by ~600)."""


def effective_lr_over_n(layer: LinearSelfAttention, dx: int) -> float:
    """The step size the layer applies, ``η_eff / N``, read off its identifiable products ``W_Kᵀ W_Q`` and ``P W_V``
    (how to read it is the chapter's exercise ``read_step_size``).

    Equals ``η / N`` for :func:`constructed_lsa`. Trained layers land on either sign branch of the two
    factors; only the product is identifiable. Multiply by N for ``η_eff``.
    """
    kq, pv = weight_blocks(layer, dx)
    return float(-torch.diagonal(pv[dx:, dx:]).mean() * torch.diagonal(kq[:dx, :dx]).mean())


def product_layer(W_KQ: torch.Tensor, W_PV: torch.Tensor, include_query: bool = False) -> LinearSelfAttention:
    """A layer with ``W_Kᵀ W_Q = W_KQ`` and ``P W_V = W_PV`` (factors ``W_K = P = I``)."""
    eye = torch.eye(W_KQ.shape[0], dtype=W_KQ.dtype, device=W_KQ.device)
    return LinearSelfAttention.from_matrices(W_KQ, eye, W_PV, eye.clone(), include_query=include_query)


def gauge_matched_constructed(layer: LinearSelfAttention, dx: int, lr_over_n: float) -> LinearSelfAttention:
    """Proposition 1's layer with step ``lr_over_n = η/N``, written in the trained ``layer``'s gauge.

    ``W_Kᵀ W_Q = c·[[I, 0], [0, 0]]`` and ``P W_V = −(η/N)/c·[[0, 0], [0, I]]`` with ``c`` the trained layer's
    ``mean diag((W_Kᵀ W_Q)_xx)`` (sign included), so that weights can be interpolated product by product.
    """
    kq, _ = weight_blocks(layer, dx)
    c = float(torch.diagonal(kq[:dx, :dx]).mean())
    D, kw = kq.shape[0], {"dtype": kq.dtype, "device": kq.device}
    x_block = torch.zeros(D, D, **kw)
    x_block[:dx, :dx] = torch.eye(dx, **kw)
    y_block = torch.zeros(D, D, **kw)
    y_block[dx:, dx:] = torch.eye(D - dx, **kw)
    return product_layer(c * x_block, -(lr_over_n / c) * y_block, include_query=layer.include_query)


def interpolate_layers(a: LinearSelfAttention, b: LinearSelfAttention, alpha: float) -> LinearSelfAttention:
    """The layer whose weight products are ``(1 − α)·a's + α·b's``."""
    kq_a, pv_a = weight_products(a)
    kq_b, pv_b = weight_products(b)
    mix = metrics.interpolate({"kq": kq_a, "pv": pv_a}, {"kq": kq_b, "pv": pv_b}, alpha)
    return product_layer(mix["kq"], mix["pv"], include_query=a.include_query)


def ood_sweep(
    model: torch.nn.Module,
    lrs: dict[str, float],
    *,
    input_ranges: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
    teacher_scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
    n_tasks: int = 10_000,
    seed: int = 0,
) -> list[dict]:
    """Losses of the model and of GD-1 at each named step size, for scaled inputs and scaled teachers.

    Returns one row per setting: ``{"kind", "scale", "loss_tf", "loss_gd[name]"...}``.
    """
    rows = []
    n_context, dx = model.n_context or PAPER.n_context, PAPER.dx
    settings = [("input_range", r) for r in input_ranges] + [("teacher_scale", a) for a in teacher_scales]
    for i, (kind, scale) in enumerate(settings):
        batch = tasks.regression_eval_set(n_tasks, n_context, dx, seed=seed + 1000 + i, **{kind: scale})
        with torch.no_grad():
            row = {"kind": kind, "scale": scale,
                   "loss_tf": float(metrics.half_squared_error(predict(model, batch.tokens(), dx), batch.y_query))}
        for name, lr in lrs.items():
            row[f"loss_gd[{name}]"] = float(metrics.half_squared_error(gd_predict(batch, lr), batch.y_query))
        rows.append(row)
    return rows


def ood_log_ratios(rows: list[dict]) -> dict[str, float]:
    """``max |log(L_TF / L_GD[name])|`` over the rows of :func:`ood_sweep`, per step-size name."""
    if not rows:
        raise ValueError("rows must hold at least one row of ood_sweep, got none")
    names = [k[len("loss_gd["):-1] for k in rows[0] if k.startswith("loss_gd[")]
    return {n: max(abs(float(np.log(r["loss_tf"] / r[f"loss_gd[{n}]"]))) for r in rows) for n in names}


OTHER_DISTRIBUTIONS = ("normal", "exponential", "laplace")
"""The input distributions of the official ``create_ood_data`` (von Oswald et al. 2022, Fig. 6 right)."""


def _standard_draws(dist: str, shape: tuple[int, ...], gen: torch.Generator | None, kw: dict) -> torch.Tensor:
    """I.i.d. draws of a standard normal, Exponential(1) or Laplace(0, 1) (the difference of two Exponential(1))."""
    if dist == "normal":
        return torch.randn(shape, generator=gen, **kw)
    expo = torch.empty(shape, **kw).exponential_(generator=gen)
    if dist == "exponential":
        return expo
    return expo - torch.empty(shape, **kw).exponential_(generator=gen)


def sample_other_inputs(
    n_tasks: int,
    n_context: int,
    dx: int,
    dist: str,
    dy: int = 1,
    *,
    input_range: float = 1.0,
    teacher_scale: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tasks.RegressionBatch:
    """Regression tasks whose inputs come from another distribution, as the official ``create_ood_data`` draws them.

    Each task draws its raw context ``S (N, dx)`` and query ``s_q (dx,)`` i.i.d. from a standard normal, an
    Exponential(1) or a Laplace(0, 1) distribution, then scales both by ``input_range / ‖S‖_F``: every task's context
    matrix has Frobenius norm exactly ``input_range`` (``r``), and the query shares the context's factor. The
    teacher is ``w ~ N(0, s² I)`` as in training, the targets noise-free. ``dist="mixture"`` draws the distribution
    of each task uniformly among the three, which is what the official generator does (it picks one per task).
    Training inputs ``U(−½, ½)`` have ``‖S‖_F ≈ √(N·dx/12)`` (2.9 for N = dx = 10).

    References
    ----------
    von Oswald et al. (2022), Fig. 6 (right); official ``src/data.py::create_ood_data`` and
    ``src/train.py::ood_other_d``.
    """
    B, N = _checks.positive_int("n_tasks", n_tasks), _checks.positive_int("n_context", n_context)
    dx, dy = _checks.positive_int("dx", dx), _checks.positive_int("dy", dy)
    r = _checks.positive_float("input_range", input_range)
    s = _checks.positive_float("teacher_scale", teacher_scale, allow_zero=True)
    names = OTHER_DISTRIBUTIONS + ("mixture",)
    if dist not in names:
        raise ValueError(f"dist must be one of {names}, got {dist!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype}")
    kw = {"dtype": dtype}
    w = s * torch.randn(B, dy, dx, generator=generator, **kw)  # (B, dy, dx)
    if dist == "mixture":
        choice = torch.randint(len(OTHER_DISTRIBUTIONS), (B,), generator=generator)  # (B,) one distribution per task
        draws = torch.stack([_standard_draws(d, (B, N + 1, dx), generator, kw) for d in OTHER_DISTRIBUTIONS])
        raw = draws[choice, torch.arange(B)]  # (B, N+1, dx)
    else:
        raw = _standard_draws(dist, (B, N + 1, dx), generator, kw)  # (B, N+1, dx)
    norm = torch.linalg.vector_norm(raw[:, :N], dim=(1, 2))  # (B,) ‖S‖_F of each task's context
    xs = raw * (r / norm)[:, None, None]
    x, x_query = xs[:, :N], xs[:, N]
    ys = xs @ w.transpose(1, 2)  # (B, N+1, dy)
    return tasks.RegressionBatch(x, ys[:, :N], x_query, ys[:, N], w)


def other_distributions_sweep(
    model: torch.nn.Module,
    lrs: dict[str, float],
    *,
    dists: Sequence[str] = OTHER_DISTRIBUTIONS + ("mixture",),
    input_ranges: Sequence[float] = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0),
    n_tasks: int = 10_000,
    seed: int = 0,
) -> list[dict]:
    """Losses of the model and of GD-1 at each named step size on inputs of other distributions
    (:func:`sample_other_inputs`), for each context norm ``r`` in ``input_ranges``.

    As in the official ``ood_other_d``, the raw draws of one distribution are shared by all ``r`` (only the scale
    changes). Returns one row per setting: ``{"dist", "input_range", "loss_tf", "loss_gd[name]"...}``, which
    :func:`ood_log_ratios` reads.
    """
    if not lrs:
        raise ValueError("lrs must name at least one GD step size, got none")
    ranges = [_checks.positive_float("input_ranges[]", r) for r in input_ranges]
    n_context, dx = model.n_context or PAPER.n_context, PAPER.dx
    rows = []
    for i, dist in enumerate(dists):
        for r in ranges:
            batch = sample_other_inputs(n_tasks, n_context, dx, dist, input_range=r,
                                        generator=runtime.generator(seed + 2000 + i))
            with torch.no_grad():
                loss_tf = metrics.half_squared_error(predict(model, batch.tokens(), dx), batch.y_query)
            row = {"dist": dist, "input_range": r, "loss_tf": float(loss_tf)}
            for name, lr in lrs.items():
                row[f"loss_gd[{name}]"] = float(metrics.half_squared_error(gd_predict(batch, lr), batch.y_query))
            rows.append(row)
    return rows


def _one_layer(layer: torch.nn.Module, tokens: torch.Tensor) -> LinearSelfAttention:
    """The single layer a roll-out repeats: a :class:`LinearSelfAttention`, or the layer of a one-layer stack."""
    if isinstance(layer, LSAStack):
        if not (layer.shared or len(layer.layers) == 1):
            raise ValueError(f"layer must be one layer (a one-layer or shared LSAStack), got a stack of "
                             f"{len(layer.layers)} different layers")
        if layer.n_context is not None and tokens.shape[1] != layer.n_context + 1:
            raise ValueError(f"this model was built for n_context={layer.n_context}: tokens must have shape "
                             f"(B, {layer.n_context + 1}, D), got {tuple(tokens.shape)}")
        return layer.layer(0)
    if not isinstance(layer, LinearSelfAttention):
        raise TypeError(f"layer must be a LinearSelfAttention or a one-layer LSAStack, got {type(layer).__name__}")
    return layer


def damped_rollout(layer: torch.nn.Module, tokens: torch.Tensor, dx: int, *, steps: int = 50,
                   damping: float = 0.75, y_only: bool = True) -> torch.Tensor:
    """Apply one layer ``steps`` times with a damped residual update; the prediction after each application.

    Each application computes the layer's update ``Δ = layer(E) − E`` of *every* token (the context tokens and the
    query; keys and values from the context tokens only) and sets ``E ← E + λ·Δ`` with ``λ = damping``. With
    ``y_only`` (the official roll-out, ``y_update=True``) only the y-slots are written, ``E[:, :, dx:] += λ·Δ_y``; the
    x-slots keep the inputs. For Proposition 1's layer at step η this is GD with step ``λ·η``, one step per
    application (its update of the x-slots is zero, so ``y_only`` changes nothing there).

    Parameters
    ----------
    layer : LinearSelfAttention or a one-layer LSAStack
    tokens : (B, N+1, dx+dy)
    dx : int
    steps : int
        Number of applications K.
    damping : float
        λ > 0 (1 = undamped).

    Returns
    -------
    (steps, B, dy) tensor: ``readout`` after applications 1..K (dtype and device of ``tokens``).

    References
    ----------
    von Oswald et al. (2022), Fig. 1 (right) and App. A.6 (Fig. 10): λ = 0.75, 50 applications; official
    ``src/transformer.py`` (``dampening``, ``y_update``) and the notebook ``constructed_token_setup``.
    """
    _checks.tensor("tokens", tokens, 3, "(B, N+1, dx+dy)")
    one = _one_layer(layer, tokens)
    dx, K = _checks.positive_int("dx", dx), _checks.positive_int("steps", steps)
    lam = _checks.positive_float("damping", damping)
    if dx >= tokens.shape[2]:
        raise ValueError(f"dx must be below the token size D = {tokens.shape[2]} (tokens (x, y)), got {dx}")
    E, preds = tokens, []
    with torch.no_grad():
        for _ in range(K):
            delta = one(E) - E  # (B, N+1, D): the layer's update of every token
            if y_only:
                delta = torch.cat([torch.zeros_like(delta[..., :dx]), delta[..., dx:]], dim=-1)
            E = E + lam * delta
            preds.append(readout(E, dx))
    return torch.stack(preds)


def rollout_losses(layer: torch.nn.Module, batch: tasks.RegressionBatch, lr: float, *, steps: int = 50,
                   damping: float = 0.75, y_only: bool = True) -> dict[str, list[float]]:
    """Loss after each application of the damped layer and after each GD step at the damped step ``λ·lr``.

    Returns ``{"tf": [K losses], "gd": [K losses]}`` (index k−1 holds the loss after k applications or steps), both
    computed in float64 (an undamped roll-out can grow by many orders of magnitude). The official roll-out compares
    the trained layer at ``dampening = λ`` with GD at ``λ·η*``.
    """
    K, lam = _checks.positive_int("steps", steps), _checks.positive_float("damping", damping)
    lr = _checks.positive_float("lr", lr)
    x, y, xq, yq = (t.double() for t in (batch.x, batch.y, batch.x_query, batch.y_query))
    one = copy.deepcopy(_one_layer(layer, batch.tokens())).double()
    preds = damped_rollout(one, tasks.make_tokens(x, y, xq), x.shape[-1], steps=K, damping=lam, y_only=y_only)
    tf = [float(metrics.half_squared_error(p, yq)) for p in preds]
    W, gd = None, []
    for _ in range(K):
        W = solvers.gd(x, y, lam * lr, 1, w0=W)
        gd.append(float(metrics.half_squared_error(solvers.predict(W, xq), yq)))
    return {"tf": tf, "gd": gd}


def interpolation_losses(layer: LinearSelfAttention, batch: tasks.RegressionBatch, lr_over_n: float,
                         alphas: Sequence[float]) -> list[float]:
    """Loss of the layer whose products mix the trained ``layer`` (α = 0) and the gauge-matched construction (α = 1)."""
    constructed = gauge_matched_constructed(layer, batch.dx, lr_over_n)
    tokens, losses = batch.tokens(), []
    for a in alphas:
        mixed = interpolate_layers(layer, constructed, a)
        with torch.no_grad():
            losses.append(float(metrics.half_squared_error(readout(mixed(tokens, query_only=True), batch.dx),
                                                           batch.y_query)))
    return losses


def proposition1_errors(max_layers: int = 5, *, seed: int = 0, dtype: torch.dtype = torch.float64,
                        include_query: bool = False) -> dict[int, float]:
    """Relative difference between :func:`constructed_lsa` and GD for K = 1..max_layers on random shapes.

    Each K draws its own dx, dy, N and η (below 2/λ_max of the tasks' Σ̂, so GD converges).
    ``include_query=True`` shows what goes wrong when the query token is among the keys.
    """
    gen, errors = runtime.generator(seed), {}
    for K in range(1, _checks.positive_int("max_layers", max_layers) + 1):
        dx, dy, N = (int(v) for v in torch.randint(1, 9, (3,), generator=gen))
        batch = tasks.sample_linear_regression(16, N + 1, dx, dy, generator=gen, dtype=dtype, input_range=2.0)
        lam_max = float(torch.linalg.eigvalsh(batch.x.transpose(1, 2) @ batch.x / batch.x.shape[1]).max())
        lr = float(torch.rand((), generator=gen)) * 1.9 / lam_max
        model = constructed_lsa(dx, dy, N + 1, lr, n_layers=K, dtype=dtype)
        for layer in model.layers:
            layer.include_query = include_query
        with torch.no_grad():
            tf = readout(model(batch.tokens()), dx)
        ref = gd_predict(batch, lr, K)
        errors[K] = metrics.relative_error(tf, ref)
    return errors


def optimal_lr_monte_carlo(n_tasks: int = 200_000, *, seed: int = 0, **task_kw) -> tuple[float, float]:
    """Monte-Carlo ``η* = E tr Σ̂ / E tr Σ̂²`` with its delta-method standard error (noise-free tasks)."""
    b = tasks.sample_linear_regression(n_tasks, PAPER.n_context, PAPER.dx, generator=runtime.generator(seed),
                                       dtype=torch.float64, **task_kw)
    cov = b.x.transpose(1, 2) @ b.x / b.x.shape[1]  # (B, dx, dx) = Σ̂
    a, c = torch.diagonal(cov, dim1=1, dim2=2).sum(-1), (cov * cov).sum((1, 2))  # tr Σ̂, tr Σ̂²
    ratio = float(a.mean() / c.mean())
    grad = torch.stack([1 / c.mean(), -a.mean() / c.mean() ** 2])
    cov_ac = torch.cov(torch.stack([a, c])) / n_tasks
    return ratio, float(torch.sqrt(grad @ cov_ac @ grad))


def softmax_heads_capacity(batch: tasks.RegressionBatch, heads: int = 1,
                           scales: Sequence[float] | None = None) -> tuple[float, float, list[float]]:
    """The best loss of softmax attention in GD's shape: ``(best loss, c, [β_h])``.

    One head scores ``c·x_iᵀx_q`` and predicts ``ŷ = β Σ_i softmax_i(c x_iᵀx_q) y_i``
    (``W_Kᵀ W_Q = c·[[I, 0], [0, 0]]``, ``(P W_V)_yy = −β``); two heads score ``+c`` and ``−c`` and add ``β_1`` and
    ``β_2`` times their averages. For each ``c`` on the grid ``scales`` the ``β`` are the least-squares fit on
    ``batch`` (dy = 1, float64); the best ``c`` is kept. One head cannot cancel the softmax's zero-order term
    ``β·ȳ``; two heads with opposite scores can
    (von Oswald et al. 2022, App. A.9, Figs. 11–12). Used by the softmax ablation of "One layer, one step".
    """
    n_heads = _checks.positive_int("heads", heads)
    if n_heads > 2 or batch.y.shape[-1] != 1:
        raise ValueError(f"heads must be 1 or 2 and dy 1, got heads={heads}, dy={batch.y.shape[-1]}")
    x, y, xq, yq = (t.double() for t in (batch.x, batch.y, batch.x_query, batch.y_query))
    grid = torch.logspace(-2, 2.5, 91, dtype=torch.float64) if scales is None else torch.as_tensor(scales).double()

    def fit(c: float) -> tuple[float, torch.Tensor]:
        scores = (x @ xq[..., None])[..., 0]  # (B, N): x_iᵀ x_q
        feats = torch.stack([(torch.softmax(s * c * scores, -1)[..., None] * y).sum((1, 2))
                             for s in (1.0, -1.0)[:n_heads]], dim=-1)  # (B, heads): softmax-weighted mean labels
        beta = torch.linalg.lstsq(feats, yq).solution  # (heads, 1)
        return float(0.5 * ((feats @ beta - yq) ** 2).sum(-1).mean()), beta[:, 0]

    fits = {float(c): fit(float(c)) for c in grid}
    c_best = min(fits, key=lambda c: fits[c][0])
    return fits[c_best][0], c_best, fits[c_best][1].tolist()
