"""Ways to compare two in-context learners: predictions, sensitivities (implicit models), weight mixes.

A "learner" here is any function ``x_query (B, dx) -> ŷ (B, dy)`` for a fixed batch of contexts.

References
----------
von Oswald et al. (2022), Sec. 3 ("Preds diff", "Model cos", "Model diff", interpolation).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping

import numpy as np
import torch

from . import _checks

__all__ = [
    "prediction_difference",
    "sensitivities",
    "model_cosine",
    "model_difference",
    "interpolate",
    "half_squared_error",
    "relative_error",
]


def _pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor, shape_doc: str) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{name_a} and {name_b} must be tensors of shape {shape_doc}")
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same shape {shape_doc}")
    if a.ndim < 2:
        raise ValueError(f"{name_a} must be batched, shape {shape_doc}, got {tuple(a.shape)}")


def prediction_difference(pred_a: torch.Tensor, pred_b: torch.Tensor) -> float:
    """Mean over tasks of ``‖ŷ_a − ŷ_b‖₂`` ("Preds diff"); ``pred_* (B, dy)``."""
    _pair("pred_a", pred_a, "pred_b", pred_b, "(B, dy)")
    return float(torch.linalg.vector_norm(pred_a - pred_b, dim=-1).mean())


def sensitivities(predict: Callable[[torch.Tensor], torch.Tensor], x_query: torch.Tensor) -> torch.Tensor:
    """``∂ŷ/∂x_query`` per task, ``(B, dy, dx)`` — the implicit linear model a learner applies to the query.

    For GD this is the updated weight matrix ``W``. Tasks must not interact (true for every learner here), so
    the gradient of the batch sum gives each task's own Jacobian.
    """
    _checks.tensor("x_query", x_query, 2, "(B, dx)")
    xq = x_query.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        pred = predict(xq)  # (B, dy)
        _checks.tensor("predict(x_query)", pred, 2, "(B, dy)")
        rows = [torch.autograd.grad(pred[:, j].sum(), xq, retain_graph=j + 1 < pred.shape[1])[0]
                for j in range(pred.shape[1])]
    return torch.stack(rows, dim=1)  # (B, dy, dx)


def model_cosine(sens_a: torch.Tensor, sens_b: torch.Tensor) -> float:
    """Mean over tasks of the cosine between flattened sensitivities ("Model cos"); inputs ``(B, dy, dx)``."""
    _pair("sens_a", sens_a, "sens_b", sens_b, "(B, dy, dx)")
    a, b = sens_a.flatten(1), sens_b.flatten(1)  # (B, dy*dx)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())


def model_difference(sens_a: torch.Tensor, sens_b: torch.Tensor) -> float:
    """Mean over tasks of ``‖∂ŷ_a/∂x − ∂ŷ_b/∂x‖`` ("Model diff"); inputs ``(B, dy, dx)``."""
    _pair("sens_a", sens_a, "sens_b", sens_b, "(B, dy, dx)")
    return float(torch.linalg.vector_norm((sens_a - sens_b).flatten(1), dim=1).mean())


def interpolate(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``(1 − α)·a + α·b`` entry by entry for two dicts of tensors with the same keys and shapes."""
    if set(a) != set(b):
        raise ValueError(f"a and b must have the same keys, got {sorted(a)} and {sorted(b)}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number, got {alpha!r}")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    alpha = float(alpha)
    out = {}
    for k in a:
        _pair(f"a[{k!r}]", a[k], f"b[{k!r}]", b[k], "(D, D)")
        out[k] = (1 - alpha) * a[k] + alpha * b[k]
    return out


def half_squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The course's loss convention: ``½ Σ_dims (ŷ − y)²``, averaged over the batch; ``(B, dy)`` inputs."""
    _pair("pred", pred, "target", target, "(B, dy)")
    return 0.5 * (pred - target).pow(2).sum(-1).mean()


def relative_error(got: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, *, norm: str = "l2",
                   dim: int | None = None) -> float:
    """``‖got − ref‖ / ‖ref‖`` — how the course reports every identity and every agreement.

    ``norm="l2"``: the Euclidean (Frobenius) norm over all entries; ``norm="max"``: the largest absolute entry. With
    ``dim``, the norms run along that axis only and the largest per-slice ratio is returned (e.g. per training step
    of a trajectory). Arrays are compared as given (no dtype promotion); shapes must match.
    """
    if norm not in ("l2", "max"):
        raise ValueError(f"norm must be 'l2' or 'max', got {norm!r}")
    a, b = (torch.from_numpy(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in (got, ref))
    if a.shape != b.shape:
        raise ValueError(f"got {tuple(a.shape)} and ref {tuple(b.shape)} must have the same shape")
    if norm == "max":
        num = (a - b).abs().amax(dim=dim) if dim is not None else (a - b).abs().max()
        den = b.abs().amax(dim=dim) if dim is not None else b.abs().max()
    else:
        num, den = torch.linalg.vector_norm(a - b, dim=dim), torch.linalg.vector_norm(b, dim=dim)
    return float((num / den).max())
