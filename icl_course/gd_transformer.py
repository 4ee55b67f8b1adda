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
from .models import FeatureLSA, FeatureMap, LinearSelfAttention, LSAStack, StandardTokenLSA
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
    "SINE",
    "FeatureGD",
    "feature_gd_as_lsa",
    "sine_stream",
    "sine_eval",
    "new_feature_model",
    "train_sine",
    "oracle_feature_loss",
    "proposition2_errors",
    "effective_kernel",
    "kernel_explained",
    "STANDARD",
    "constructed_copy_gd",
    "copy_gd_errors",
    "new_standard_model",
    "train_standard_tokens",
    "copy_attention",
    "copy_scores",
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


def token_stream(batch_size: int, n_context: int, dx: int, dy: int = 1, *, seed: int = 0,
                 device: str | torch.device | None = None, **task_kw):
    """``step -> (tokens, y_query)``: fresh tasks for every training step from one seeded generator (on ``device``)."""
    gen = runtime.generator(seed, device)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = tasks.sample_linear_regression(batch_size, n_context, dx, dy, generator=gen, device=device, **task_kw)
        return b.tokens(), b.y_query

    return batches


def eval_batch(n_tasks: int, n_context: int, dx: int, dy: int = 1, *, seed: int,
               device: str | torch.device | None = None, **task_kw) -> tasks.RegressionBatch:
    """A fixed evaluation set drawn from its own seed (never the training stream's), on ``device``."""
    return tasks.sample_linear_regression(n_tasks, n_context, dx, dy, generator=runtime.generator(seed, device),
                                          device=device, **task_kw)


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


# ------------------------------------------------------------------ non-linear regression: GD on learned features

SINE = {
    "cpu": {"n_context": 10, "input_range": 10.0, "hidden": 64, "features": 16, "batch_size": 512, "steps": 2000,
            "lr": 1e-3, "clip": 100.0},
    "paper": {"n_context": 10, "input_range": 10.0, "hidden": 160, "features": 40, "batch_size": 2048,
              "steps": 20_000, "lr": 1e-3, "clip": 100.0},
}
"""Settings of the sine experiment. ``"paper"``: the official notebook's sizes (MLP 160 → 40, batch 2,048, 20,000
steps; meant for a GPU); ``"cpu"``: the book's (MLP 64 → 16, batch 512, 2,000 steps), which reaches the same
comparison in seconds."""


def _scale(table: dict, scale: str) -> dict:
    if scale not in table:
        raise ValueError(f"scale must be one of {sorted(table)}, got {scale!r}")
    return table[scale]


class FeatureGD(torch.nn.Module):
    """A meta-learned feature map and one GD step from ``w = 0`` on the output layer: the kernel-regression view.

    ``ŷ = (η/N) Σ_i y_i m(x_i)·m(x_q)`` — one step on ``L(w) = 1/(2N) Σ_i (w·m(x_i) − y_i)²`` from ``w = 0``.
    ``m`` and ``η`` are trained across tasks (the outer loop); the step itself is the inner loop. Same interface as
    the attention models: tokens ``E (B, N+1, dx+dy)`` in, the query token ``(x_q, −ŷ)`` out.

    References
    ----------
    von Oswald et al. (2022), Sec. 4 and Proposition 2; Part III, "Non-linear regression: GD on learned features".
    """

    def __init__(self, feature_map: FeatureMap, lr: float = 1.0) -> None:
        super().__init__()
        self.feature_map = feature_map
        self.dx = feature_map.dx
        p = feature_map.out.weight
        self.lr = torch.nn.Parameter(torch.tensor(float(lr), dtype=p.dtype, device=p.device))

    def kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``η m(a)·m(b)`` for inputs ``a (…, n, dx)``, ``b (…, m, dx)`` → ``(…, n, m)``."""
        return self.lr * (self.feature_map(a) @ self.feature_map(b).transpose(-2, -1))

    def forward(self, E: torch.Tensor, query_only: bool = True) -> torch.Tensor:
        if not query_only:
            raise ValueError("FeatureGD computes the query token only (query_only=True)")
        _checks.tensor("E", E, 3, "(B, N+1, dx+dy)")
        x, y, xq = E[:, :-1, :self.dx], E[:, :-1, self.dx:], E[:, -1:, :self.dx]
        k = self.kernel(x, xq)  # (B, N, 1)
        pred = (k * y).sum(dim=1) / x.shape[1]  # (B, dy)
        return torch.cat([xq[:, 0], -pred], dim=-1)[:, None]  # (B, 1, dx+dy)


def feature_gd_as_lsa(model: FeatureGD, n_context: int, dy: int = 1) -> FeatureLSA:
    """Proposition 2's construction: the same feature map followed by Proposition 1's layer with step ``η``.

    The result predicts exactly what ``model`` predicts (in any dtype); the feature map is shared, not copied.
    """
    p = model.feature_map.out.weight
    lsa = constructed_lsa(model.feature_map.features, dy, n_context, float(model.lr.detach()), dtype=p.dtype)
    return FeatureLSA(model.feature_map, lsa.to(p.device))


def proposition2_errors(*, seed: int = 0, n_tasks: int = 64, dtype: torch.dtype = torch.float64) -> float:
    """Max relative difference between a random :class:`FeatureGD` and its :func:`feature_gd_as_lsa` (float64)."""
    gen = runtime.generator(seed)
    model = FeatureGD(FeatureMap(1, 32, 8, generator=gen, dtype=dtype),
                      lr=float(torch.rand((), generator=gen, dtype=dtype)) * 3 + 0.5)
    b = tasks.sample_sine_regression(n_tasks, 10, generator=gen, dtype=dtype)
    with torch.no_grad():
        ref = lsa_predict(model, b.tokens(), 1)
        got = lsa_predict(feature_gd_as_lsa(model, 10), b.tokens(), 1)
    return float((got - ref).abs().max() / ref.abs().max())


def sine_stream(batch_size: int, n_context: int, *, seed: int, tied: bool = False,
                device: str | torch.device | None = None, **task_kw):
    """``step -> (tokens, y_query)``: fresh sine tasks for every step from one seeded generator."""
    gen = runtime.generator(seed, device)

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = tasks.sample_sine_regression(batch_size, n_context, tied=tied, generator=gen, device=device, **task_kw)
        return b.tokens(), b.y_query

    return batches


def sine_eval(n_tasks: int, n_context: int = 10, *, seed: int, tied: bool = False,
              device: str | torch.device | None = None, **task_kw) -> tasks.RegressionBatch:
    """A fixed set of sine tasks from its own seed."""
    return tasks.sample_sine_regression(n_tasks, n_context, tied=tied, generator=runtime.generator(seed, device),
                                        device=device, **task_kw)


def new_feature_model(kind: str, *, seed: int = 0, hidden: int = 64, features: int = 16, n_context: int = 10,
                      dx: int = 1, dy: int = 1) -> torch.nn.Module:
    """A fresh ``"lsa"`` (:class:`FeatureLSA`, official init for the attention) or ``"gd"`` (:class:`FeatureGD`,
    ``η = 1``) model; both feature maps start from the same seeded weights."""
    gen = runtime.generator(seed)
    fmap = FeatureMap(dx, hidden, features, generator=gen)
    if kind == "gd":
        return FeatureGD(fmap)
    if kind == "lsa":
        return FeatureLSA(fmap, LSAStack.new(features + dy, 1, n_context=n_context, generator=gen))
    raise ValueError(f"kind must be 'lsa' or 'gd', got {kind!r}")


def train_sine(kind: str, *, seed: int = 0, tied: bool = False, scale: str = "cpu", steps: int | None = None,
               eval_size: int = 10_000, device: str | torch.device | None = None,
               progress: bool | None = None) -> TrainedLSA:
    """Meta-train a feature model (``kind`` ``"lsa"`` or ``"gd"``) on sine tasks through :func:`train.fit`.

    Seeds: initial weights ``seed``, training stream ``seed + 1``, evaluation set ``seed + 2`` (drawn like the
    training tasks, tied or not), evaluated every 100 steps. ``scale`` picks :data:`SINE`'s settings (``steps``
    overrides its step count); ``device`` (e.g. ``"cuda"``) holds the model and draws the data there.
    """
    cfg = _scale(SINE, scale)
    N = cfg["n_context"]
    model = new_feature_model(kind, seed=seed, hidden=cfg["hidden"], features=cfg["features"], n_context=N)
    model = model.to(device) if device is not None else model
    ev = sine_eval(eval_size, N, seed=seed + 2, tied=tied, device=device, input_range=cfg["input_range"])
    hist = train.fit(model, icl_loss,
                     sine_stream(cfg["batch_size"], N, seed=seed + 1, tied=tied, device=device,
                                 input_range=cfg["input_range"]),
                     steps or cfg["steps"], lr=cfg["lr"], betas=PAPER["betas"], clip=cfg["clip"],
                     eval_batch=(ev.tokens(), ev.y_query), eval_every=100, progress=progress,
                     desc=f"sine {kind} seed {seed}")
    return TrainedLSA(model, hist, ev)  # type: ignore[arg-type]


def oracle_feature_loss(batch: tasks.RegressionBatch, lo: float = 0.1, hi: float = 5.0) -> tuple[float, float]:
    """One GD step on the ideal features ``(sin x, cos x)`` at the step size that is best on ``batch``.

    Returns ``(η, loss)``; the kernel is ``η cos(x − x')``. (Least squares on these features is exact: loss 0.)
    """
    fx, fq = tasks.sine_basis(batch.x), tasks.sine_basis(batch.x_query)

    def loss(eta: float) -> float:
        pred = solvers.predict(solvers.gd(fx, batch.y, eta), fq)
        return float(metrics.half_squared_error(pred, batch.y_query))

    eta = solvers.line_search(loss, lo, hi, tol=1e-4)
    return eta, loss(eta)


def effective_kernel(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, route: str = "both") -> torch.Tensor:
    """The kernel ``k (n, m)`` of the part of the prediction that is linear in the targets,
    ``ŷ = (1/N) Σ_i y_i k(x_i, x_q) + …``, for inputs ``a (n, 1)`` and ``b (m, 1)``.

    :class:`FeatureGD`: ``η m(a)·m(b)`` (its whole prediction). :class:`FeatureLSA` with products
    ``K = W_Kᵀ W_Q`` and ``V = P W_V`` on tokens ``(m, y)``: the target can reach the prediction through the
    value (``route="value"``, Proposition 2's construction: ``−N V_yy m(a)ᵀ K_mm m(b)``, any rank) or through the key
    (``route="key"``: ``−N (V_ym·m(a)) (K_ym·m(b))``, rank one); ``"both"`` is their sum. The layer's remaining
    terms do not involve the targets linearly (a mean function of the inputs, and a term in ``y_i²``).
    """
    if route not in ("both", "value", "key"):
        raise ValueError(f"route must be 'both', 'value' or 'key', got {route!r}")
    with torch.no_grad():
        if isinstance(model, FeatureGD):
            if route != "both":
                raise ValueError("FeatureGD has one route only: use route='both'")
            return model.kernel(a, b)
        if isinstance(model, FeatureLSA):
            F, N = model.feature_map.features, model.lsa.n_context or 1
            K, V = weight_products(model.lsa.layer(0))
            ma, mb = model.feature_map(a), model.feature_map(b)  # (n, F), (m, F)
            value = -N * V[F, F] * (ma @ K[:F, :F] @ mb.T)
            key = -N * torch.outer(ma @ V[F, :F], mb @ K[F, :F])
            return {"both": value + key, "value": value, "key": key}[route]
    raise TypeError(f"model must be a FeatureGD or FeatureLSA, got {type(model).__name__}")


def kernel_explained(model: torch.nn.Module, batch: tasks.RegressionBatch) -> float:
    """How much of the model's prediction its kernel term alone gives: ``1 − ‖ŷ_k − ŷ‖² / ‖ŷ − mean ŷ‖²``."""
    with torch.no_grad():
        pred = lsa_predict(model, batch.tokens(), batch.dx)  # (B, 1)
        k = torch.stack([effective_kernel(model, xs, xq[None])[:, 0] for xs, xq in zip(batch.x, batch.x_query)])
        pred_k = (k[..., None] * batch.y).sum(dim=1) / batch.x.shape[1]  # (B, 1)
        return float(1 - ((pred_k - pred) ** 2).sum() / ((pred - pred.mean()) ** 2).sum())


# ------------------------------------------------------------------ standard tokens: copy, then descend

STANDARD = {
    "cpu": {"batch_size": 512, "max_steps": 4000, "after_escape": 1000, "escape_loss": 0.3, "init_scale": 0.01,
            "clip": 10.0},
    "paper": {"batch_size": 2048, "max_steps": 10_000, "after_escape": 10_000, "escape_loss": 0.3,
              "init_scale": 0.01, "clip": 10.0},
}
"""Settings of the standard-token experiment (2 layers; Adam 1e-3; official init ``0.02 / 2`` and clip 10).
``"paper"``: the official notebook's batch 2,048 and 10,000 steps; ``"cpu"``: batch 512, to the escape from the
plateau (first evaluation below 0.3) plus 1,000 steps."""


def constructed_copy_gd(dx: int, dy: int, n_context: int, lr: float, *, beta: float = 40.0,
                        dtype: torch.dtype = torch.float32) -> StandardTokenLSA:
    """Proposition 3's hand-built model: a softmax layer that copies each ``x_i`` into the token of ``y_i``,
    then Proposition 1's linear layer — one GD step at ``lr`` on the standard token layout.

    Layer 1 scores ``β [t = s + 1]`` from the one-hot positions (``W_Q = β I``, ``W_K`` shifts a position to the
    next), so every token attends to its predecessor with weight ``e^β / (e^β + 2N − 1)``; its value copies the
    x-slot. After it a target token holds ``(x_i, y_i, p)``; input tokens keep a zero y-slot, so in layer 2 they add
    nothing and the sum over all ``2N`` tokens is the GD step. Exact as ``β → ∞``; the error falls like ``e^{−β}``.

    References
    ----------
    von Oswald et al. (2022), Proposition 3; Olsson et al. (2022), previous-token and induction heads.
    """
    dx, dy = _checks.positive_int("dx", dx), _checks.positive_int("dy", dy)
    N = _checks.positive_int("n_context", n_context)
    beta = _checks.positive_float("beta", beta)
    T = 2 * N + 1
    D, p0 = dx + dy + T, dx + dy
    W_Q = torch.zeros(D, D, dtype=dtype)
    W_Q[p0:, p0:] = beta * torch.eye(T, dtype=dtype)
    W_K = torch.zeros(D, D, dtype=dtype)
    W_K[p0 + 1:, p0:D - 1] = torch.eye(T - 1, dtype=dtype)  # position s -> e_{s+1}
    x_block = torch.zeros(D, D, dtype=dtype)
    x_block[:dx, :dx] = torch.eye(dx, dtype=dtype)
    copy = LinearSelfAttention.from_matrices(W_Q, W_K, x_block, x_block.clone(), attention="softmax")
    y_block = torch.zeros(D, D, dtype=dtype)
    y_block[dx:p0, dx:p0] = torch.eye(dy, dtype=dtype)
    gd_layer = LinearSelfAttention.from_matrices(x_block.clone(), x_block.clone(), -y_block,
                                                 (_checks.positive_float("lr", lr, allow_zero=True) / N) * y_block)
    return StandardTokenLSA(LSAStack([copy, gd_layer]), dx, dy, N)


def copy_gd_errors(betas: Sequence[float], *, seed: int = 0, lr: float = 1.0, n_tasks: int = 64,
                   dtype: torch.dtype = torch.float64) -> dict[float, float]:
    """Max relative error of :func:`constructed_copy_gd` against one GD step, for each softmax sharpness ``β``."""
    b = tasks.sample_linear_regression(n_tasks, PAPER["n_context"], PAPER["dx"], generator=runtime.generator(seed),
                                       dtype=dtype)
    ref = gd_predict(b, lr)
    out = {}
    for beta in betas:
        model = constructed_copy_gd(b.dx, 1, b.x.shape[1], lr, beta=beta, dtype=dtype)
        with torch.no_grad():
            pred = lsa_predict(model, b.tokens(), b.dx)
        out[float(beta)] = float((pred - ref).abs().max() / ref.abs().max())
    return out


def new_standard_model(first: str = "softmax", *, seed: int = 0, dx: int = PAPER["dx"], dy: int = PAPER["dy"],
                       n_context: int = PAPER["n_context"], init_scale: float = 0.01) -> StandardTokenLSA:
    """A fresh two-layer model on standard tokens: a ``first`` (``"softmax"`` or ``"linear"``) layer, then a
    linear one; official initialisation ``VarianceScaling(init_scale)``."""
    gen = runtime.generator(seed)
    D = dx + dy + 2 * n_context + 1
    layers = [LinearSelfAttention(D, attention=first, init_scale=init_scale, generator=gen),
              LinearSelfAttention(D, init_scale=init_scale, generator=gen)]
    return StandardTokenLSA(LSAStack(layers), dx, dy, n_context)


def train_standard_tokens(first: str = "softmax", *, seed: int = 0, scale: str = "cpu", max_steps: int | None = None,
                          eval_size: int = PAPER["eval_size"], device: str | torch.device | None = None,
                          progress: bool | None = None) -> TrainedLSA:
    """Train :func:`new_standard_model` on the first chapter's tasks (d = N = 10, x ~ U(−0.5, 0.5)).

    Seeds as in :func:`train_lsa` (weights ``seed``, stream ``seed + 1``, eval ``seed + 2``); evaluation every 50
    steps; stops ``after_escape`` steps after the first evaluation below ``escape_loss`` (:data:`STANDARD`) or at
    ``max_steps``. The escape step is recorded.
    """
    cfg = _scale(STANDARD, scale)
    dx, dy, N = PAPER["dx"], PAPER["dy"], PAPER["n_context"]
    model = new_standard_model(first, seed=seed, init_scale=cfg["init_scale"])
    model = model.to(device) if device is not None else model
    ev = eval_batch(eval_size, N, dx, dy, seed=seed + 2, device=device)
    batches = token_stream(cfg["batch_size"], N, dx, dy, seed=seed + 1, device=device)
    escape: list[int] = []
    stop = _escape_rule(escape, cfg["escape_loss"], cfg["after_escape"])
    hist = train.fit(model, icl_loss, batches, max_steps or cfg["max_steps"], lr=PAPER["lr"], betas=PAPER["betas"],
                     clip=cfg["clip"], eval_batch=(ev.tokens(), ev.y_query), eval_every=50, stop=stop,
                     progress=progress, desc=f"standard tokens ({first}) seed {seed}")
    return TrainedLSA(model, hist, ev, escape[0] if escape else None)  # type: ignore[arg-type]


def copy_attention(model: StandardTokenLSA, batch: tasks.RegressionBatch) -> torch.Tensor:
    """The first layer's attention weights, averaged over ``batch``: ``(2N+1, 2N)`` (queries × keys).

    Softmax layers give probabilities; a linear first layer gives its raw scores ``q·k``.
    """
    layer = model.stack.layer(0)
    with torch.no_grad():
        E = model.tokens(batch.tokens())
        scores = layer.W_Q(E) @ layer.W_K(E[:, :-1]).transpose(1, 2)  # (B, 2N+1, 2N)
        if layer.attention == "softmax":
            scores = torch.softmax(scores, dim=-1)
        return scores.mean(dim=0)


def copy_scores(attn: torch.Tensor) -> dict[str, float]:
    """From a ``(2N+1, 2N)`` attention map: the mean weight a target token puts on its own input
    (``"y_reads_x"``), an input token on its own target (``"x_reads_y"``), and the uniform level ``1 / 2N``."""
    _checks.tensor("attn", attn, 2, "(2N+1, 2N)")
    T, K = attn.shape
    if T != K + 1 or K % 2:
        raise ValueError(f"attn must have shape (2N+1, 2N), got {tuple(attn.shape)}")
    i = torch.arange(0, K, 2)
    return {"y_reads_x": float(attn[i + 1, i].mean()), "x_reads_y": float(attn[i, i + 1].mean()),
            "uniform": 1 / K}
