"""The query-token contract: how every in-context regression model of the course is read and scored.

A model takes the tokens ``E (B, N+1, dx+dy)`` of :func:`~icl_course.tasks.make_tokens` — context tokens
``(x_i, y_i)`` and the query token ``(x_q, 0)`` last — and returns the updated query token in the same layout
(``forward(E, query_only=True) -> (B, 1, dx+dy)``; a model may return every token, only the last one is read).
The prediction is **minus** the query token's y-slot (:func:`readout`), the loss ``½ Σ_dy (ŷ − y_q)²`` averaged
over tasks (:func:`icl_loss`). Linear self-attention stacks, feature models, standard-token models and the
GD "models" of Part III all follow it, so one :func:`predict` serves them all.

References
----------
von Oswald et al. (2022), the read-out ``ŷ = −[E_out]_{N+1, y}`` of Proposition 1, and the official code's loss.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from . import _checks, metrics

__all__ = ["QueryModel", "readout", "predict", "icl_loss"]


@runtime_checkable
class QueryModel(Protocol):
    """Anything that maps tokens ``E (B, N+1, dx+dy)`` to the updated query token ``(B, 1, dx+dy)``."""

    def __call__(self, E: torch.Tensor, query_only: bool = True) -> torch.Tensor: ...


def readout(E_out: torch.Tensor, dx: int) -> torch.Tensor:
    """The prediction ``ŷ = −E_out[:, -1, dx:]`` — minus the query token's y-slot. The one place the sign lives."""
    _checks.tensor("E_out", E_out, 3, "(B, T, dx+dy)")
    dx = _checks.positive_int("dx", dx)
    if E_out.shape[2] <= dx:
        raise ValueError(f"E_out must have shape (B, T, dx+dy) with dy ≥ 1 for dx={dx}, got {tuple(E_out.shape)}")
    return -E_out[:, -1, dx:]


def predict(model: QueryModel, tokens: torch.Tensor, dx: int) -> torch.Tensor:
    """``readout(model(tokens, query_only=True), dx)`` — the prediction ``(B, dy)`` of any query-token model."""
    return readout(model(tokens, query_only=True), dx)


def icl_loss(model: QueryModel, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The training loss ``½ mean_B Σ_dy (ŷ − y_q)²`` for ``batch = (tokens (B, N+1, dx+dy), y_query (B, dy))``."""
    tokens, y_query = batch
    _checks.tensor("y_query", y_query, 2, "(B, dy)")
    dx = tokens.shape[-1] - y_query.shape[-1]
    return metrics.half_squared_error(predict(model, tokens, dx), y_query)
