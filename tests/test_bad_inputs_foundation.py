"""Bad input to the foundation modules gets a clear error naming the argument (the test audit's list), never a wrong
answer or a raw error from deep inside torch."""

from __future__ import annotations

import math

import pytest
import torch

from icl_course import _checks, metrics, runtime, solvers, tasks, train
from icl_course.models import LinearSelfAttention


def _xy(dtype_x=torch.float64, dtype_y=torch.float64):
    return torch.rand(2, 5, 3, dtype=dtype_x), torch.rand(2, 5, 1, dtype=dtype_y)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_positive_float_refuses_non_finite(value):
    with pytest.raises(ValueError, match="width must be > 0 and finite, got"):
        _checks.positive_float("width", value)
    with pytest.raises(ValueError, match="finite"):
        tasks.sample_linear_regression(2, 3, 2, 1, input_range=value)


def test_solvers_refuse_mixed_dtypes():
    x, y = _xy(torch.float32, torch.float64)
    with pytest.raises(TypeError, match="x and y must have the same dtype.*float32.*float64"):
        solvers.gd(x, y, 0.5)


@pytest.mark.parametrize("lr", [math.nan, math.inf, [0.5, math.nan]])
def test_gd_refuses_a_non_finite_step_size(lr):
    x, y = _xy()
    steps = len(lr) if isinstance(lr, list) else 1
    with pytest.raises(ValueError, match="lr must"):
        solvers.gd(x, y, lr, steps=steps)


def test_the_layer_names_E_on_a_dtype_mismatch():
    layer = LinearSelfAttention(4)  # float32 weights
    with pytest.raises(TypeError, match="E must have the layer's dtype torch.float32, got torch.float64"):
        layer(torch.rand(2, 6, 4, dtype=torch.float64))


def test_sampling_refuses_an_integer_dtype():
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        tasks.sample_linear_regression(2, 3, 2, 1, dtype=torch.int64)


def test_fit_stops_on_a_nan_loss_before_the_update():
    model = torch.nn.Linear(2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def loss_fn(m, batch):
        out = m(batch).sum()
        return out * float("nan") if batch[0, 0] > 0 else out

    batches = [-torch.ones(1, 2), torch.ones(1, 2)]
    with pytest.raises(FloatingPointError, match="training loss is nan at step 1"):
        train.fit(model, loss_fn, batches, steps=2, lr=1e-3, progress=False)
    after = model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # step 0 was taken, step 1 was not


def test_setup_refuses_a_bool_thread_count():
    with pytest.raises(ValueError, match="threads must be a positive int or None, got True"):
        runtime.setup(threads=True)


@pytest.mark.parametrize("alpha,error", [("x", TypeError), (True, TypeError), (math.nan, ValueError),
                                         (math.inf, ValueError)])
def test_interpolate_names_alpha(alpha, error):
    a = {"W": torch.eye(2)}
    with pytest.raises(error, match="alpha must be"):
        metrics.interpolate(a, a, alpha)


def test_fit_stops_on_a_nan_gradient_before_the_update():
    """A finite loss with a NaN gradient (sqrt at 0) stops too, and the weights stay finite."""
    w = torch.nn.Parameter(torch.zeros(1))
    model = torch.nn.Module()
    model.w = w
    with pytest.raises(FloatingPointError, match="gradient norm is nan at step 0"):
        train.fit(model, lambda m, b: m.w.abs().sqrt().sum() * 0 + m.w.sum() ** 0.5, [None], steps=1, lr=1e-3,
                  progress=False)
    assert torch.isfinite(w).all()
