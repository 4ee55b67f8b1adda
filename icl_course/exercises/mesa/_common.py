"""What the exercises of Part IV share: the part's name and small sequence and shape helpers."""

from __future__ import annotations

import torch

from ... import runtime, tasks

PART = "mesa"


def _states(seed: int, B: int = 3, T: int = 12, D: int = 4) -> torch.Tensor:
    """Float64 states ``s_1 … s_T`` ``(B, T, D)`` of random orthogonal dynamics."""
    return tasks.sample_linear_dynamics(B, T, D, generator=runtime.generator(seed), dtype=torch.float64).inputs


def _expect(value: object, shape: tuple, what: str) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), f"{what} must be a torch.Tensor, got {type(value).__name__}"
    assert tuple(value.shape) == shape, f"{what} must have shape {shape}, got {tuple(value.shape)}"
    return value
