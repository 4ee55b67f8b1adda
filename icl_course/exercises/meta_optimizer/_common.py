"""What the exercises of Part II share: the part's name and a shape helper."""

from __future__ import annotations

import torch

PART = "meta_optimizer"


def _expect(value: object, shape: tuple, what: str) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), f"{what} must be a torch.Tensor, got {type(value).__name__}"
    assert tuple(value.shape) == shape, f"{what} must have shape {shape}, got {tuple(value.shape)}"
    return value
