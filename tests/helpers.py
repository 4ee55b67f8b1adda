"""What many test modules share: the relative error of identities, a CUDA marker, float64 task batches."""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

from icl_course import runtime, solvers, tasks

F64 = torch.float64
SEED = st.integers(0, 2**31 - 1)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a − b‖ / ‖b‖`` for identities (the denominator never divides by 0)."""
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-300))


def batch(B, N, dx, dy, seed, **kw):
    """Float64 regression tasks with inputs in U(−1, 1) (``input_range=2``) unless ``kw`` says otherwise."""
    kw.setdefault("input_range", 2.0)
    return tasks.sample_linear_regression(B, N, dx, dy, generator=runtime.generator(seed), dtype=F64, **kw)


def stable_lr(b, frac):
    """A step size ``frac · 2/λ_max`` (λ_max over the batch's Σ̂), so GD does not diverge."""
    lam_max = float(torch.linalg.eigvalsh(b.x.transpose(1, 2) @ b.x / b.x.shape[1]).max())
    return frac * 2.0 / lam_max


def gd_pred(b, lr, K):
    """Predictions of K GD steps from 0, written out once more (independent of ``gd_predict``)."""
    return (solvers.gd(b.x, b.y, lr, steps=K) @ b.x_query[..., None])[..., 0]
