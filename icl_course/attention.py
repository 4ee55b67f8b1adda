"""Readable reference attention functions: linear (unnormalised) and softmax, with causal masks.

Rows are tokens: ``q (…, Tq, dk)``, ``k (…, Tk, dk)``, ``v (…, Tk, dv)``.
"""

from __future__ import annotations

import torch

__all__ = ["linear_attention", "softmax_attention", "causal_mask"]


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{name} must have shape (..., T, d), got shape {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q (…, Tq, dk) and k (…, Tk, dk) need the same dk, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k (…, Tk, dk) and v (…, Tk, dv) need the same Tk, got {k.shape[-2]} and {v.shape[-2]}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError(
            f"q, k, v need the same leading dims, got {tuple(q.shape[:-2])}, {tuple(k.shape[:-2])}, "
            f"{tuple(v.shape[:-2])}"
        )
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal=True needs Tq == Tk, got Tq={q.shape[-2]}, Tk={k.shape[-2]}")


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(T, T)`` mask, True where key j may be seen by query i (``j ≤ i``)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Unnormalised linear attention ``out_i = Σ_j (k_j · q_i) v_j`` — no softmax, no scaling.

    With ``causal=True`` the sum runs over ``j ≤ i`` (needs ``Tq == Tk``).

    References
    ----------
    von Oswald et al. (2022), Eq. 3; Dai et al. (2022), Eq. 9–12. Parts II–IV.
    """
    _check_qkv(q, k, v, causal)
    scores = q @ k.transpose(-2, -1)  # (…, Tq, Tk)
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], q.device), 0.0)
    return scores @ v  # (…, Tq, dv)


def softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """Softmax attention ``out_i = Σ_j softmax_j(scale · k_j · q_i) v_j``; ``scale`` defaults to ``1/√dk``."""
    _check_qkv(q, k, v, causal)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = scale * (q @ k.transpose(-2, -1))  # (…, Tq, Tk)
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], q.device), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (…, Tq, dv)
