"""Part III, chapter "Anisotropic inputs: one layer learns preconditioned GD".

References
----------
Ahn et al. (2023), "Transformers learn to implement preconditioned gradient descent for in-context learning";
Mahankali et al. (2023), "One step of gradient descent is provably the optimal in-context learner with one layer of
linear self-attention".
"""

from __future__ import annotations

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..models import LinearSelfAttention
from ..query import predict
from ._common import PAPER, train_lsa, weight_blocks

__all__ = ["effective_preconditioner", "preconditioner_monte_carlo", "preconditioner_stationarity",
           "anisotropic_setting", "preconditioner_losses", "margin_over_gd", "ANISOTROPIC_AFTER_ESCAPE",
           "train_anisotropic"]


def effective_preconditioner(layer: LinearSelfAttention, dx: int, n_context: int) -> torch.Tensor:
    """The preconditioner ``Γ_eff (dx, dx)`` a layer applies, read off its products ``W_Kᵀ W_Q`` and ``P W_V`` (how
    to read it is the chapter's exercise ``preconditioner_from_weights``).

    The layer predicts ``ŷ = (1/N) Σ_i y_i x_iᵀ Γ_eff x_q`` when its other blocks vanish; for
    Proposition 1's layer ``Γ_eff = η I``.
    """
    kq, pv = weight_blocks(layer, dx)
    return -_checks.positive_int("n_context", n_context) * torch.diagonal(pv[dx:, dx:]).mean() * kq[:dx, :dx]


def preconditioner_monte_carlo(n_tasks: int = 200_000, *, seed: int = 0, chunk: int = 50_000,
                               **task_kw) -> torch.Tensor:
    """The best one-step preconditioner ``Γ`` for the task distribution, by least squares over random tasks.

    ``ŷ = uᵀ Γ x_q`` with ``u = (1/N) Σ_i y_i x_i`` is linear in ``Γ``'s entries, so the optimum solves normal
    equations accumulated over ``n_tasks`` tasks (float64, dy = 1). No distributional assumption is needed.
    """
    gen, gram, rhs = runtime.generator(seed), None, None
    for start in range(0, _checks.positive_int("n_tasks", n_tasks), chunk):
        b = tasks.sample_linear_regression(min(chunk, n_tasks - start), PAPER.n_context, PAPER.dx,
                                           generator=gen, dtype=torch.float64, **task_kw)
        u = (b.y.transpose(1, 2) @ b.x)[:, 0] / b.x.shape[1]  # (B, dx)
        feats = (u[:, :, None] * b.x_query[:, None, :]).flatten(1)  # (B, dx*dx): entries u_a x_q,b
        gram = feats.T @ feats if gram is None else gram + feats.T @ feats
        rhs = feats.T @ b.y_query[:, 0] if rhs is None else rhs + feats.T @ b.y_query[:, 0]
    dx = PAPER.dx
    return torch.linalg.solve(gram, rhs).reshape(dx, dx)


def preconditioner_stationarity(gamma: torch.Tensor, cov: torch.Tensor, n_tasks: int = 200_000, *, seed: int = 0,
                                chunk: int = 50_000, **task_kw) -> torch.Tensor:
    """z-scores of the population loss's gradient at ``gamma``, one per eigendirection of ``cov`` (``(dx,)``).

    For ``x_i, x_q ~ N(0, Σ)``, ``w ~ N(0, I)``, ``y = wᵀx`` (noise-free, dy = 1) the gradient of
    ``L(Γ) = ½ E (uᵀΓx_q − y_q)²`` (``u = (1/N) Σ_i y_i x_i = Σ̂ w``) is ``E[Σ̂ (Σ̂Γ − I) Σ]``: the expectation over
    ``w`` and ``x_q`` is done exactly, only the contexts' ``Σ̂`` are sampled (``n_tasks`` tasks drawn with
    ``task_kw``, e.g. :func:`anisotropic_setting`'s, float64), which makes the test far more powerful than a
    Monte-Carlo fit of ``Γ``. At the minimiser the mean gradient is zero, so each diagonal entry in ``Σ``'s
    eigenbasis divided by its standard error is ~N(0, 1); a wrong closed form (another ``tr Σ`` coefficient, ``N + 1``
    for ``N``) changes the fourth moment ``E Σ̂²`` it assumes and leaves a gradient many standard errors from zero.
    Used by claim E10 in "Anisotropic inputs: preconditioned GD".
    """
    dx = PAPER.dx
    for name, m in (("gamma", gamma), ("cov", cov)):
        _checks.tensor(name, m, 2, f"({dx}, {dx})")
        if m.shape != (dx, dx):
            raise ValueError(f"{name} must have shape ({dx}, {dx}), got {tuple(m.shape)}")
    cov, gamma = cov.double(), gamma.double()
    _, V = torch.linalg.eigh(cov)
    eye = torch.eye(dx, dtype=torch.float64)
    n, gen = _checks.positive_int("n_tasks", n_tasks), runtime.generator(seed)
    s1 = s2 = torch.zeros(dx, dtype=torch.float64)
    for start in range(0, n, chunk):
        x = tasks.sample_linear_regression(min(chunk, n - start), PAPER.n_context, dx, generator=gen,
                                           dtype=torch.float64, **task_kw).x
        S = x.transpose(1, 2) @ x / x.shape[1]  # (B, dx, dx) = Σ̂
        g = torch.diagonal(V.T @ (S @ (S @ gamma - eye) @ cov) @ V, dim1=1, dim2=2)  # (B, dx)
        s1, s2 = s1 + g.sum(0), s2 + (g * g).sum(0)
    mean = s1 / n
    return mean / ((s2 / n - mean * mean).clamp_min(1e-300).sqrt() / n ** 0.5)


def anisotropic_setting(condition: float = 16.0, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """Gaussian inputs with covariance ``Σ = A Aᵀ / 12`` of the given condition number: ``(task_kw, Σ)``.

    ``task_kw`` goes to :func:`train_lsa`, :func:`tasks.regression_eval_set` or :func:`tasks.sample_linear_regression`.
    """
    A = tasks.anisotropic_matrix(PAPER.dx, condition, seed=seed)
    return {"input_dist": "gaussian", "input_matrix": A}, (A.double() @ A.double().T / 12)


def preconditioner_losses(batch: tasks.RegressionBatch, preconds: dict[str, torch.Tensor]) -> dict[str, float]:
    """Loss of one preconditioned GD step on ``batch`` for each named ``Γ``, plus GD at its best scalar η."""
    loss = lambda W: float(metrics.half_squared_error(solvers.predict(W, batch.x_query), batch.y_query))
    out = {name: loss(solvers.preconditioned_gd_step(batch.x, batch.y, G)) for name, G in preconds.items()}
    eta = solvers.line_search(lambda e: loss(solvers.gd(batch.x, batch.y, e)), 0.0, 30.0, tol=1e-4)
    out["gd_best_eta"], out["gd_best"] = eta, loss(solvers.gd(batch.x, batch.y, eta))
    return out


def margin_over_gd(model: torch.nn.Module, batch: tasks.RegressionBatch, lr: float) -> tuple[float, float]:
    """How much less ``model`` loses than one plain GD step at ``lr``, task by task on the same ``batch``: the mean
    of the per-task differences ``½‖ŷ_GD − y‖² − ½‖ŷ_model − y‖²`` and its standard error.

    A paired comparison: both learners see the same tasks, so the task-to-task variation common to both (a hard
    task is hard for both) cancels, and the standard error is that of the differences, not of either loss.
    """
    lr = _checks.positive_float("lr", lr)
    with torch.no_grad():
        pred_tf = predict(model, batch.tokens(), batch.dx)
    pred_gd = solvers.predict(solvers.gd(batch.x, batch.y, lr), batch.x_query)
    if pred_tf.shape != pred_gd.shape:
        raise ValueError(f"model must predict (B, dy) = {tuple(pred_gd.shape)} on batch, got {tuple(pred_tf.shape)}")
    diff = (0.5 * ((pred_gd - batch.y_query) ** 2).sum(-1) - 0.5 * ((pred_tf - batch.y_query) ** 2).sum(-1)).double()
    if diff.numel() < 2:
        raise ValueError(f"batch must hold at least 2 tasks for a standard error, got {diff.numel()}")
    return float(diff.mean()), float(diff.std() / diff.numel() ** 0.5)


ANISOTROPIC_AFTER_ESCAPE = 4000
"""Steps after the escape for the anisotropic experiment: the low-variance directions are learned last."""


def train_anisotropic(*, seed: int = 0, condition: float = 16.0, eval_size: int = PAPER.eval_size,
                      progress: bool | None = None) -> train.TrainedRun:
    """One layer, official settings, on :func:`anisotropic_setting` tasks: to the escape (loss < 0.35, below the
    plateau near the zero predictor's ½ tr Σ ≈ 0.60 for condition 16) plus :data:`ANISOTROPIC_AFTER_ESCAPE` steps."""
    task_kw, _ = anisotropic_setting(condition)
    return train_lsa(seed=seed, steps=12_000, eval_size=eval_size, after_escape=ANISOTROPIC_AFTER_ESCAPE,
                     escape_loss=0.35, progress=progress, **task_kw)
