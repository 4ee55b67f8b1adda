"""What the exercises of Part III share: the part's name and small task and shape helpers."""

from __future__ import annotations

import torch

from ... import runtime, tasks

PART = "gd_transformer"


def _batch(seed: int, B: int = 4, N: int = 6, dx: int = 3, dy: int = 1) -> tasks.RegressionBatch:
    return tasks.sample_linear_regression(B, N, dx, dy, generator=runtime.generator(seed), dtype=torch.float64)


def _expect(value: object, shape: tuple, what: str) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), f"{what} must be a torch.Tensor, got {type(value).__name__}"
    assert tuple(value.shape) == shape, f"{what} must have shape {shape}, got {tuple(value.shape)}"
    return value
