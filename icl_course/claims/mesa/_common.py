"""What the claims of Part IV's chapters share: the evaluation sequences, GD-1's step size and the baselines' curves,
computed once per ``reproduce`` run."""

from __future__ import annotations

import torch

from ... import mesa, tasks
from ...reproduce import Context

LAM = 1e-3  # the official least-squares baseline's ridge λ


def eval_set(ctx: Context) -> tasks.DynamicsBatch:
    return ctx.shared("mesa_eval", lambda: mesa.dynamics_eval_set(ctx.eval_size, seed=ctx.seed + 2))


def eta(ctx: Context) -> tuple[float, float]:
    return ctx.shared("mesa_eta", lambda: mesa.gd_lr_line_search(eval_set(ctx)))


def baselines(ctx: Context) -> dict[str, torch.Tensor]:
    return ctx.shared("mesa_baselines", lambda: mesa.baseline_curves(eval_set(ctx), eta(ctx)[0], LAM))


__all__ = ["LAM", "eval_set", "eta", "baselines"]
