"""Input validation shared by the foundation: clear errors naming the argument and the expected shape."""

from __future__ import annotations

import math
import numbers

import torch


def tensor(name: str, value: object, ndim: int, shape_doc: str) -> torch.Tensor:
    """Raise unless ``value`` is a floating tensor with ``ndim`` dimensions."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_doc} ({ndim} dims), got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def same(name_a: str, a: int, name_b: str, b: int, what: str) -> None:
    """Raise unless two sizes agree."""
    if a != b:
        raise ValueError(f"{what} of {name_a} ({a}) must equal {what} of {name_b} ({b})")


def positive_int(name: str, value: object) -> int:
    """Raise unless ``value`` is an int > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def positive_float(name: str, value: object, allow_zero: bool = False) -> float:
    """Raise unless ``value`` is a finite real number > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} and finite, got {value}")
    return float(value)
