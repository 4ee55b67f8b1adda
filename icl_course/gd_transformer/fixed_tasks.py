"""Part III, chapter "One layer, one step": the layer trained on a fixed, finite set of tasks.

How many distinct training tasks one linear self-attention layer needs before it learns one GD step rather than its
training set; a matched run on fresh tasks; and the number of parameters the layer's prediction can identify (the
interpolation threshold the sweep crosses).

References
----------
von Oswald et al. (2022), App. A.12 and Fig. 16 (training sets of 128 to 8,192 tasks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _checks, metrics, runtime, solvers, tasks, train
from ..models import LSAStack
from ..query import icl_loss, predict
from ._common import PAPER, compare_with_gd, gd_predict, pool_stream

__all__ = ["FIXED_TASK_SIZES", "FIXED_TASK_STEPS", "FIXED_TASK_BATCH", "fixed_task_sweep", "prediction_rank"]

FIXED_TASK_SIZES = (32, 64, 128, 512, 2048, 8192)
"""Training-set sizes: the paper's range, 128 to 8,192 tasks (Fig. 16), and two below the layer's 120 identifiable
parameters (:func:`prediction_rank`)."""
FIXED_TASK_STEPS = 2500
"""Updates after the training loss leaves the initial plateau (the GD level takes ~600 with fresh tasks)."""
FIXED_TASK_BATCH = 256
"""Minibatch drawn from the fixed pool at every step (the whole pool when it is smaller); an eighth of the
official 2,048, to keep the runs inside the chapter's budget."""


def fixed_task_sweep(sizes: Sequence[int] = FIXED_TASK_SIZES, *, seed: int = 0, after_escape: int = FIXED_TASK_STEPS,
                     max_steps: int = 8000, batch_size: int = FIXED_TASK_BATCH, fresh_control: bool = True,
                     eval_set: tasks.RegressionBatch | None = None, progress: bool | None = None) -> list[dict]:
    """Train one layer on a fixed pool of tasks, for each pool size, and compare it with one GD step at ``η*``.

    For each size the pool is drawn from seed ``seed + 1`` (pools of one generator are nested: the first 32 tasks of
    every pool are the same), the layer starts from the same seeded weights, and minibatches of ``batch_size`` come
    from the pool (:func:`pool_stream`, seed ``seed + 3``) with the official Adam and clipping. Training runs until
    the loss on the pool (its first 2,048 tasks) leaves the initial plateau — the first evaluation below 0.3 — and
    then ``after_escape`` updates more (cap ``max_steps``): a fresh-task loss cannot serve as the escape signal, since
    a memorising layer never lowers it. ``fresh_control`` adds the matched control, a last row with ``n_tasks`` None:
    the same recipe (batch, escape rule, steps) on fresh tasks at every step.

    Returns one row per size: ``n_tasks``, ``escape`` (step, or None), ``steps``; ``train_loss`` and
    ``train_loss_gd`` on the whole pool (the layer's and GD-1's at ``η*``; None for the control); on the fresh tasks
    of ``eval_set`` (default: 10,000 tasks of seed ``seed + 2``, the chapter's evaluation set) ``test_loss``,
    ``test_loss_gd``, ``model_cos`` and ``pred_diff`` (:func:`compare_with_gd`); and ``history``, whose
    ``extras["test_loss"]`` is the loss on 2,000 of those fresh tasks at every evaluation.
    """
    sizes = [_checks.positive_int("sizes", m) for m in sizes]
    if not sizes:
        raise ValueError("sizes must name at least one training-set size")
    after_escape = _checks.positive_int("after_escape", after_escape)
    max_steps = _checks.positive_int("max_steps", max_steps)
    ev = eval_set if eval_set is not None else tasks.regression_eval_set(PAPER.eval_size, PAPER.n_context, PAPER.dx,
                                                                         seed=seed + 2)
    if not isinstance(ev, tasks.RegressionBatch):
        raise TypeError(f"eval_set must be a tasks.RegressionBatch, got {type(ev).__name__}")
    probe = (ev.tokens()[:2000], ev.y_query[:2000])

    def test_loss(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(icl_loss(model, probe))

    eta = solvers.optimal_gd_lr(PAPER.dx, PAPER.n_context)
    rows = []
    for m in [*sizes, *([None] if fresh_control else [])]:
        watch = tasks.regression_eval_set(2048 if m is None else m, PAPER.n_context, PAPER.dx, seed=seed + 1)
        if m is None:
            batches = tasks.regression_stream(batch_size, PAPER.n_context, PAPER.dx, seed=seed + 1)
        else:
            batches = pool_stream(watch, batch_size, seed=seed + 3)
        tokens = watch.tokens()
        model = LSAStack.new(PAPER.dx + PAPER.dy, 1, n_context=PAPER.n_context, generator=runtime.generator(seed))
        run = train.train_run(
            model, icl_loss, batches, max_steps, eval_set=watch, eval_batch=(tokens[:2048], watch.y_query[:2048]),
            escape=train.Escape(0.3, after_escape), lr=PAPER.lr, betas=PAPER.betas, clip=PAPER.clip, eval_every=100,
            callbacks={"test_loss": test_loss}, progress=progress, desc=f"LSA on {m or 'fresh'} tasks")
        train_loss = train_gd = None
        if m is not None:
            with torch.no_grad():
                train_loss = float(icl_loss(run.model, (tokens, watch.y_query)))
                train_gd = float(metrics.half_squared_error(gd_predict(watch, eta), watch.y_query))
        cmp = compare_with_gd(run.model, ev, eta)
        rows.append({"n_tasks": m, "escape": run.escape, "steps": run.history.steps, "train_loss": train_loss,
                     "train_loss_gd": train_gd, "test_loss": cmp["loss_tf"], "test_loss_gd": cmp["loss_gd"],
                     "model_cos": cmp["model_cos"], "pred_diff": cmp["pred_diff"], "history": run.history})
    return rows


def prediction_rank(model: torch.nn.Module, batch: tasks.RegressionBatch, *, rtol: float = 1e-7) -> tuple[int, int]:
    """``(rank, parameters)``: the rank of the Jacobian of ``model``'s predictions on ``batch`` with respect to all
    its weights (float64), and the number of weights. The rank counts the parameter directions the predictions can
    tell apart — for one linear self-attention layer 120 of its 484 (the prediction is bilinear in the 11 entries of
    ``(P W_V)``'s label row and the 110 entries of ``W_Kᵀ W_Q``'s input columns, less one common scale); use more
    tasks than that."""
    params = {k: v.detach().double() for k, v in model.named_parameters()}
    tokens = batch.tokens().double()
    dx = batch.dx

    def preds(flat: torch.Tensor) -> torch.Tensor:
        out, i = {}, 0
        for k, v in params.items():
            out[k] = flat[i:i + v.numel()].reshape(v.shape)
            i += v.numel()
        return predict(lambda E, **kw: torch.func.functional_call(model, out, (E,), kw), tokens, dx).reshape(-1)

    flat = torch.cat([v.reshape(-1) for v in params.values()])
    jac = torch.func.jacrev(preds)(flat)  # (B·dy, parameters)
    sv = torch.linalg.svdvals(jac)
    return int((sv > rtol * sv[0]).sum()), flat.numel()
