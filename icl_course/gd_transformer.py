"""Part III — "Transformers learn in-context by gradient descent" (von Oswald et al. 2022).

Proposition 1 (a hand-built linear self-attention layer is one GD step), the read-out, training a layer on
in-context regression, and the analysis that compares a trained layer with GD: losses, sensitivities,
weight products, the learned step size, out-of-distribution behaviour and weight interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _checks, metrics, runtime, solvers, tasks, train
from .models import LinearSelfAttention, LSAStack
from .tasks import make_tokens

__all__ = [
    "make_tokens",
    "constructed_lsa",
    "readout",
    "lsa_predict",
    "icl_loss",
    "token_stream",
    "eval_batch",
    "gd_predict",
    "weight_products",
    "effective_lr",
    "product_layer",
    "gauge_matched_constructed",
    "interpolate_layers",
    "TrainedLSA",
    "train_lsa",
    "compare_with_gd",
    "ood_sweep",
    "load_golden",
    "golden_agreement",
    "proposition1_errors",
    "optimal_lr_monte_carlo",
    "interpolation_losses",
    "ood_log_ratios",
    "PAPER",
    "ONE_LAYER_STEPS",
    "constructed_gdpp",
    "effective_gamma",
    "GDScalars",
    "fit_gd_scalars",
    "spectra",
    "train_recurrent",
    "depth_sweep",
    "gd_vs_gdpp",
    "RECURRENT_AFTER_ESCAPE",
    "effective_preconditioner",
    "preconditioner_monte_carlo",
    "anisotropic_setting",
    "preconditioner_losses",
    "train_anisotropic",
    "ANISOTROPIC_AFTER_ESCAPE",
]

PAPER = {"dx": 10, "dy": 1, "n_context": 10, "batch_size": 2048, "eval_size": 10_000, "clip": 1e-3,
         "lr": 1e-3, "betas": (0.9, 0.98)}
"""The headline setting of the official ``constructed_token_setup`` notebook."""

ONE_LAYER_STEPS = 3000
"""Training steps of the one-layer experiment (the official notebook runs 5,000; GD level is reached by ~500)."""


def constructed_lsa(
    dx: int,
    dy: int,
    n_context: int,
    lr: float | Sequence[float],
    n_layers: int = 1,
    dtype: torch.dtype = torch.float32,
) -> LSAStack:
    """The hand-built model of Proposition 1: ``n_layers`` linear self-attention layers = that many GD steps.

    Each layer has ``W_K = W_Q = [[I_dx, 0], [0, 0]]``, ``W_V = [[0, 0], [0, −I_dy]]`` and
    ``P = (η_k / N)·[[0, 0], [0, I_dy]]`` (``(out, in)`` layout); keys and values come from the context tokens
    only. After layer k a context token holds ``(x_j, y_j − W_k x_j)`` and the query ``(x_q, −W_k x_q)``.

    Parameters
    ----------
    dx, dy, n_context : int
        Input and output dimension and the context length N the model accepts (other lengths raise).
    lr : float or sequence of ``n_layers`` floats
        GD step size η (per layer if a sequence).
    n_layers : int
        Number of layers = GD steps.

    References
    ----------
    von Oswald et al. (2022), Proposition 1 and Appendix A.1; Part III, "One layer, one step".
    """
    dx, dy = _checks.positive_int("dx", dx), _checks.positive_int("dy", dy)
    N, K = _checks.positive_int("n_context", n_context), _checks.positive_int("n_layers", n_layers)
    if isinstance(lr, Sequence):
        if len(lr) != K:
            raise ValueError(f"lr as a sequence needs one step size per layer ({K}), got {len(lr)}")
        lrs = [float(v) for v in lr]
    else:
        lrs = [_checks.positive_float("lr", lr, allow_zero=True)] * K
    D = dx + dy
    x_block = torch.zeros(D, D, dtype=dtype)
    x_block[:dx, :dx] = torch.eye(dx, dtype=dtype)
    y_block = torch.zeros(D, D, dtype=dtype)
    y_block[dx:, dx:] = torch.eye(dy, dtype=dtype)
    layers = [LinearSelfAttention.from_matrices(x_block, x_block.clone(), -y_block, (eta / N) * y_block)
              for eta in lrs]
    return LSAStack(layers, n_context=N)


def readout(E_out: torch.Tensor, dx: int) -> torch.Tensor:
    """The prediction ``ŷ = −E_out[:, -1, dx:]`` — minus the query token's y-slot. The one place the sign lives."""
    _checks.tensor("E_out", E_out, 3, "(B, T, dx+dy)")
    dx = _checks.positive_int("dx", dx)
    if E_out.shape[2] <= dx:
        raise ValueError(f"E_out must have shape (B, T, dx+dy) with dy ≥ 1 for dx={dx}, got {tuple(E_out.shape)}")
    return -E_out[:, -1, dx:]


def lsa_predict(model: torch.nn.Module, tokens: torch.Tensor, dx: int) -> torch.Tensor:
    """``readout(model(tokens)) (B, dy)``, computing only the query token in the last layer."""
    return readout(model(tokens, query_only=True), dx)


def icl_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The training loss ``½ mean_B Σ_dy (ŷ − y_q)²`` for ``batch = (tokens (B, N+1, dx+dy), y_query (B, dy))``."""
    tokens, y_query = batch
    dx = tokens.shape[-1] - y_query.shape[-1]
    return metrics.half_squared_error(lsa_predict(model, tokens, dx), y_query)


def token_stream(batch_size: int, n_context: int, dx: int, dy: int = 1, *, seed: int = 0, **task_kw):
    """``step -> (tokens, y_query)``: fresh tasks for every training step from one seeded generator."""
    gen = runtime.generator(seed)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = tasks.sample_linear_regression(batch_size, n_context, dx, dy, generator=gen, **task_kw)
        return b.tokens(), b.y_query

    return batches


def eval_batch(n_tasks: int, n_context: int, dx: int, dy: int = 1, *, seed: int, **task_kw) -> tasks.RegressionBatch:
    """A fixed evaluation set drawn from its own seed (never the training stream's)."""
    return tasks.sample_linear_regression(n_tasks, n_context, dx, dy, generator=runtime.generator(seed), **task_kw)


def gd_predict(batch: tasks.RegressionBatch, lr: float, steps: int = 1) -> torch.Tensor:
    """Predictions ``(B, dy)`` of ``steps`` GD steps from 0 on each task's context."""
    return solvers.predict(solvers.gd(batch.x, batch.y, lr, steps), batch.x_query)


def weight_products(layer: LinearSelfAttention) -> tuple[torch.Tensor, torch.Tensor]:
    """The identifiable parts of a layer: ``W_Kᵀ W_Q`` and ``P W_V`` (both ``(D, D)``, detached).

    Only these products enter the forward pass; the factors have a gauge freedom
    (``W_K → A W_K, W_Q → A⁻ᵀ W_Q``; ``(W_Kᵀ W_Q, P W_V) → (c·W_Kᵀ W_Q, P W_V / c)``).
    """
    m = layer.matrices()
    return m["W_K"].T @ m["W_Q"], m["P"] @ m["W_V"]


def effective_lr(layer: LinearSelfAttention, dx: int) -> float:
    """The step size the layer applies, ``η_eff / N = −mean diag((P W_V)_yy) · mean diag((W_Kᵀ W_Q)_xx)``.

    Equals ``η / N`` for :func:`constructed_lsa`. Trained layers land on either sign branch of the two
    factors; only the product is identifiable. Multiply by N for ``η_eff``.
    """
    kq, pv = weight_products(layer)
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
    kq, _ = weight_products(layer)
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


@dataclass
class TrainedLSA:
    """A trained model with its training history, the evaluation set it was tracked on, and its escape step
    from the initial plateau (when training was run with ``after_escape``)."""

    model: LSAStack
    history: train.History
    eval_set: tasks.RegressionBatch
    escape: int | None = None

    @property
    def layer(self) -> LinearSelfAttention:
        return self.model.layer(0)


def _escape_rule(escape: list[int], escape_loss: float, after_escape: int):
    """A ``fit`` stop rule: note the first evaluation below ``escape_loss``, stop ``after_escape`` steps later."""

    def stop(h: train.History) -> bool:
        if not escape and h.eval_loss[-1] < escape_loss:
            escape.append(h.eval_step[-1])
        return bool(escape) and h.steps >= escape[0] + after_escape

    return stop


def train_lsa(
    *,
    seed: int = 0,
    steps: int = 3000,
    n_layers: int = 1,
    shared: bool = False,
    attention: str = "linear",
    include_query: bool = False,
    batch_size: int = PAPER["batch_size"],
    eval_size: int = PAPER["eval_size"],
    n_context: int = PAPER["n_context"],
    dx: int = PAPER["dx"],
    dy: int = PAPER["dy"],
    clip: float | None = PAPER["clip"],
    eval_every: int = 100,
    after_escape: int | None = None,
    escape_loss: float | None = None,
    callbacks: dict | None = None,
    progress: bool | None = None,
    **task_kw,
) -> TrainedLSA:
    """Train a linear self-attention model on fresh in-context regression tasks with the official settings.

    The seed fixes the initial weights (``seed``), the training stream (``seed + 1``) and the evaluation set
    (``seed + 2``). ``task_kw`` go to :func:`tasks.sample_linear_regression` (e.g. ``input_range``);
    ``callbacks`` (``name -> fn(model)``) are recorded at every evaluation (see :func:`train.fit`).

    Training can sit on a plateau near the zero predictor's loss for a seed-dependent number of steps. With
    ``after_escape`` and ``escape_loss`` it stops ``after_escape`` steps after the first evaluation below
    ``escape_loss`` (the *escape*), and ``steps`` is only the cap; the escape step is recorded (None if the run
    never escaped).
    """
    model = LSAStack.new(dx + dy, n_layers, shared=shared, n_context=n_context, attention=attention,
                         include_query=include_query, generator=runtime.generator(seed))
    ev = eval_batch(eval_size, n_context, dx, dy, seed=seed + 2, **task_kw)
    escape: list[int] = []
    stop = None
    if after_escape is not None:
        if escape_loss is None:
            raise ValueError("after_escape needs escape_loss, the loss below which the plateau counts as left")
        stop = _escape_rule(escape, escape_loss, _checks.positive_int("after_escape", after_escape))
    hist = train.fit(model, icl_loss, token_stream(batch_size, n_context, dx, dy, seed=seed + 1, **task_kw),
                     steps, lr=PAPER["lr"], betas=PAPER["betas"], clip=clip, eval_batch=(ev.tokens(), ev.y_query),
                     eval_every=eval_every, callbacks=callbacks, stop=stop, progress=progress,
                     desc=f"LSA seed {seed}")
    return TrainedLSA(model, hist, ev, escape[0] if escape else None)


def compare_with_gd(model: torch.nn.Module, batch: tasks.RegressionBatch, lr: float, steps: int = 1) -> dict:
    """Trained model vs ``steps`` GD steps at ``lr`` on the same tasks: losses, "Preds diff", "Model cos/diff"."""
    dx = batch.dx
    tokens = batch.tokens()
    with torch.no_grad():
        pred_tf, pred_gd = lsa_predict(model, tokens, dx), gd_predict(batch, lr, steps)
    sens_tf = metrics.sensitivities(lambda xq: lsa_predict(model, make_tokens(batch.x, batch.y, xq), dx), batch.x_query)
    sens_gd = solvers.gd(batch.x, batch.y, lr, steps)  # ∂ŷ/∂x_q of GD is its weight matrix
    return {
        "loss_tf": float(metrics.half_squared_error(pred_tf, batch.y_query)),
        "loss_gd": float(metrics.half_squared_error(pred_gd, batch.y_query)),
        "pred_diff": metrics.prediction_difference(pred_tf, pred_gd),
        "model_cos": metrics.model_cosine(sens_tf, sens_gd),
        "model_diff": metrics.model_difference(sens_tf, sens_gd),
    }


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
    n_context, dx = model.n_context or PAPER["n_context"], PAPER["dx"]
    settings = [("input_range", r) for r in input_ranges] + [("teacher_scale", a) for a in teacher_scales]
    for i, (kind, scale) in enumerate(settings):
        batch = eval_batch(n_tasks, n_context, dx, seed=seed + 1000 + i, **{kind: scale})
        with torch.no_grad():
            row = {"kind": kind, "scale": scale,
                   "loss_tf": float(metrics.half_squared_error(lsa_predict(model, batch.tokens(), dx), batch.y_query))}
        for name, lr in lrs.items():
            row[f"loss_gd[{name}]"] = float(metrics.half_squared_error(gd_predict(batch, lr), batch.y_query))
        rows.append(row)
    return rows


def ood_log_ratios(rows: list[dict]) -> dict[str, float]:
    """``max |log(L_TF / L_GD[name])|`` over the rows of :func:`ood_sweep`, per step-size name."""
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


def load_golden(name: str) -> dict[str, np.ndarray]:
    """Load a golden file of the official implementation (``"train"`` or ``"trained"``) from ``tests/data``."""
    files = {"train": "vonoswald2022_train_seed0.npz", "trained": "vonoswald2022_trained_seed0.npz"}
    if name not in files:
        raise ValueError(f"name must be one of {sorted(files)}, got {name!r}")
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / files[name]
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the golden data ship with the repository, clone it")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def golden_agreement() -> dict[str, float]:
    """Largest relative errors of this package against the official implementation's golden data.

    Re-runs the official 40-step training (same initial weights, same batches, Adam + exact clip) through
    :func:`train.fit` and compares per-step losses, predictions and weights, then checks the official trained
    model's and GD's predictions through :meth:`LinearSelfAttention.from_matrices` and :func:`constructed_lsa`.
    Relative errors use norms over the compared arrays (per step for trajectories).
    """
    g = load_golden("train")
    names = ("W_Q", "W_K", "W_V", "P")
    model = LSAStack([LinearSelfAttention.from_matrices(*(torch.from_numpy(g[n]) for n in names))])
    steps = len(g["loss"])
    batches = [(torch.from_numpy(g["tokens"][t]), torch.from_numpy(g["targets"][t])[:, None]) for t in range(steps)]
    preds, weights = [], {n: [] for n in names}

    def record(step, model, batch, loss):
        with torch.no_grad():
            preds.append(lsa_predict(model, batch[0], PAPER["dx"])[:, 0].numpy())
        for n, m in model.layer(0).matrices().items():
            weights[n].append(m.numpy().copy())

    hist = train.fit(model, icl_loss, batches, steps, lr=float(g["lr"]), betas=(float(g["b1"]), float(g["b2"])),
                     eps=float(g["eps"]), clip=float(g["clip_global_norm"]), on_step=record, progress=False)
    rel = lambda a, b, axis=None: float(np.max(np.linalg.norm(a - b, axis=axis) / np.linalg.norm(b, axis=axis)))
    out = {"loss": float(np.max(np.abs(np.array(hist.loss) - g["loss"]) / np.abs(g["loss"]))),
           "preds": rel(np.stack(preds), g["preds"], axis=1)}
    for n in names:
        out[f"{n}_traj"] = rel(np.stack(weights[n]).reshape(steps, -1), g[f"{n}_traj"].reshape(steps, -1), 1)
        out[f"{n}_final"] = rel(model.layer(0).matrices()[n].numpy(), g[f"{n}_final"])
    t = load_golden("trained")
    trained = LinearSelfAttention.from_matrices(*(torch.from_numpy(t[n]) for n in names))
    tokens = torch.from_numpy(t["tokens"])
    with torch.no_grad():
        out["trained_preds"] = rel(readout(trained(tokens), PAPER["dx"])[:, 0].numpy(), t["preds"])
        gd_model = constructed_lsa(PAPER["dx"], PAPER["dy"], PAPER["n_context"], float(t["gd_lr"]))
        out["gd_preds"] = rel(readout(gd_model(tokens), PAPER["dx"])[:, 0].numpy(), t["gd_preds"])
    return out


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
        errors[K] = float(torch.linalg.vector_norm(tf - ref) / torch.linalg.vector_norm(ref))
    return errors


def optimal_lr_monte_carlo(n_tasks: int = 200_000, *, seed: int = 0, **task_kw) -> tuple[float, float]:
    """Monte-Carlo ``η* = E tr Σ̂ / E tr Σ̂²`` with its delta-method standard error (noise-free tasks)."""
    b = tasks.sample_linear_regression(n_tasks, PAPER["n_context"], PAPER["dx"], generator=runtime.generator(seed),
                                       dtype=torch.float64, **task_kw)
    cov = b.x.transpose(1, 2) @ b.x / b.x.shape[1]  # (B, dx, dx) = Σ̂
    a, c = torch.diagonal(cov, dim1=1, dim2=2).sum(-1), (cov * cov).sum((1, 2))  # tr Σ̂, tr Σ̂²
    ratio = float(a.mean() / c.mean())
    grad = torch.stack([1 / c.mean(), -a.mean() / c.mean() ** 2])
    cov_ac = torch.cov(torch.stack([a, c])) / n_tasks
    return ratio, float(torch.sqrt(grad @ cov_ac @ grad))


# ------------------------------------------------------------------ deeper models: GD++ (Sec. 4 of the paper)


def constructed_gdpp(dx: int, dy: int, n_context: int, lr: float, gamma: float, n_layers: int = 1,
                     dtype: torch.dtype = torch.float32) -> LSAStack:
    """Hand-built GD++: ``n_layers`` layers, ``W_Kᵀ W_Q = [[I, 0], [0, 0]]``, ``P W_V = −[[γ I, 0], [0, (η/N) I]]``.

    Each layer takes a GD step on the y-slots and maps every token's x to ``(I − γ XᵀX) x``; equals
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
    """The curvature correction a layer applies: ``γ_eff = −mean diag((P W_V)_xx) · mean diag((W_Kᵀ W_Q)_xx)``."""
    kq, pv = weight_products(layer)
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
        x, y, xq = E[:, :-1, :dx], E[:, :-1, dx:], E[:, -1, :dx]  # (B, N, dx), (B, N, dy), (B, dx)
        pred = solvers.gd_plus_plus(x, y, xq, self.lr, self.gamma, n_layers or self.n_layers)
        return torch.cat([xq, -pred], dim=-1)[:, None]  # (B, 1, D)


def fit_gd_scalars(n_layers: int, *, plus_plus: bool = True, seed: int = 0, steps: int = 500,
                   batch_size: int = 1024, lr: float = 0.05, progress: bool | None = None) -> GDScalars:
    """Fit the shared step size (and, for GD++, γ) of K-step GD by Adam on fresh tasks, as the paper does."""
    eta0 = solvers.optimal_gd_lr(PAPER["dx"], PAPER["n_context"])  # start from the best single step
    model = GDScalars(PAPER["dx"], n_layers, lr=eta0, gamma=0.0, fit_gamma=plus_plus)
    train.fit(model, icl_loss, token_stream(batch_size, PAPER["n_context"], PAPER["dx"], seed=seed + 11), steps,
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
                    eval_size: int = PAPER["eval_size"], clip: float = 10.0,
                    progress: bool | None = None) -> tuple[TrainedLSA, int | None]:
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


# ------------------------------------------------------------------ anisotropic inputs: preconditioned GD


def effective_preconditioner(layer: LinearSelfAttention, dx: int, n_context: int) -> torch.Tensor:
    """The preconditioner ``Γ_eff = −N · mean diag((P W_V)_yy) · (W_Kᵀ W_Q)_xx`` a layer applies (``(dx, dx)``).

    The layer predicts ``ŷ = (1/N) Σ_i y_i x_iᵀ Γ_eff x_q`` when its other blocks vanish; for
    Proposition 1's layer ``Γ_eff = η I``.
    """
    kq, pv = weight_products(layer)
    return -n_context * torch.diagonal(pv[dx:, dx:]).mean() * kq[:dx, :dx]


def preconditioner_monte_carlo(n_tasks: int = 200_000, *, seed: int = 0, chunk: int = 50_000,
                               **task_kw) -> torch.Tensor:
    """The best one-step preconditioner ``Γ`` for the task distribution, by least squares over random tasks.

    ``ŷ = uᵀ Γ x_q`` with ``u = (1/N) Σ_i y_i x_i`` is linear in ``Γ``'s entries, so the optimum solves normal
    equations accumulated over ``n_tasks`` tasks (float64, dy = 1). No distributional assumption is needed.
    """
    gen, gram, rhs = runtime.generator(seed), None, None
    for start in range(0, _checks.positive_int("n_tasks", n_tasks), chunk):
        b = tasks.sample_linear_regression(min(chunk, n_tasks - start), PAPER["n_context"], PAPER["dx"],
                                           generator=gen, dtype=torch.float64, **task_kw)
        u = (b.y.transpose(1, 2) @ b.x)[:, 0] / b.x.shape[1]  # (B, dx)
        feats = (u[:, :, None] * b.x_query[:, None, :]).flatten(1)  # (B, dx*dx): entries u_a x_q,b
        gram = feats.T @ feats if gram is None else gram + feats.T @ feats
        rhs = feats.T @ b.y_query[:, 0] if rhs is None else rhs + feats.T @ b.y_query[:, 0]
    dx = PAPER["dx"]
    return torch.linalg.solve(gram, rhs).reshape(dx, dx)


def anisotropic_setting(condition: float = 16.0, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """Gaussian inputs with covariance ``Σ = A Aᵀ / 12`` of the given condition number: ``(task_kw, Σ)``.

    ``task_kw`` goes to :func:`train_lsa`, :func:`eval_batch` or :func:`tasks.sample_linear_regression`.
    """
    A = tasks.anisotropic_matrix(PAPER["dx"], condition, seed=seed)
    return {"input_dist": "gaussian", "input_matrix": A}, (A.double() @ A.double().T / 12)


def preconditioner_losses(batch: tasks.RegressionBatch, preconds: dict[str, torch.Tensor]) -> dict[str, float]:
    """Loss of one preconditioned GD step on ``batch`` for each named ``Γ``, plus GD at its best scalar η."""
    loss = lambda W: float(metrics.half_squared_error(solvers.predict(W, batch.x_query), batch.y_query))
    out = {name: loss(solvers.preconditioned_gd_step(batch.x, batch.y, G)) for name, G in preconds.items()}
    eta = solvers.line_search(lambda e: loss(solvers.gd(batch.x, batch.y, e)), 0.0, 30.0, tol=1e-4)
    out["gd_best_eta"], out["gd_best"] = eta, loss(solvers.gd(batch.x, batch.y, eta))
    return out


ANISOTROPIC_AFTER_ESCAPE = 4000
"""Steps after the escape for the anisotropic experiment: the low-variance directions are learned last."""


def train_anisotropic(*, seed: int = 0, condition: float = 16.0, eval_size: int = PAPER["eval_size"],
                      progress: bool | None = None) -> TrainedLSA:
    """One layer, official settings, on :func:`anisotropic_setting` tasks: to the escape (loss < 0.35, below the
    plateau near the zero predictor's 0.5 for condition 16) plus :data:`ANISOTROPIC_AFTER_ESCAPE` steps."""
    task_kw, _ = anisotropic_setting(condition)
    return train_lsa(seed=seed, steps=12_000, eval_size=eval_size, after_escape=ANISOTROPIC_AFTER_ESCAPE,
                     escape_loss=0.35, progress=progress, **task_kw)
