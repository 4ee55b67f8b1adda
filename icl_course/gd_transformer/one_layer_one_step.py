"""Part III, chapter "One layer, one step": Proposition 1 and what a trained layer is.

The learned step size read off the weights, the gauge-matched construction and the interpolation between it and a
trained layer, out-of-distribution behaviour, the exactness of Proposition 1 for K layers, and the optimal step
size by Monte Carlo.

References
----------
von Oswald et al. (2022), "Transformers learn in-context by gradient descent", Sec. 3, Proposition 1, Fig. 2–3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import _checks, metrics, runtime, tasks
from ..models import LinearSelfAttention
from ..query import predict, readout
from ._common import ONE_LAYER, PAPER, constructed_lsa, gd_predict, weight_blocks, weight_products

__all__ = ["ONE_LAYER_STEPS", "effective_lr_over_n", "product_layer", "gauge_matched_constructed",
           "interpolate_layers", "ood_sweep", "ood_log_ratios", "interpolation_losses", "proposition1_errors",
           "optimal_lr_monte_carlo", "softmax_heads_capacity"]

ONE_LAYER_STEPS = ONE_LAYER.cpu.steps
"""Training steps of the one-layer experiment (the official notebook runs 5,000; GD level is reached by ~500)."""


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
