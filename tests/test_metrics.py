"""Unit and property tests for :mod:`icl_course.metrics`: comparing in-context learners."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icl_course import runtime
from icl_course.metrics import (
    half_squared_error,
    interpolate,
    model_cosine,
    model_difference,
    prediction_difference,
    sensitivities,
)
from tests.helpers import F64, SEED, rel


@given(B=st.integers(1, 4), dx=st.integers(1, 8), dy=st.integers(1, 3), seed=SEED)
def test_sensitivities_of_linear_predictor(B, dx, dy, seed):
    g = runtime.generator(seed)
    W = torch.randn(B, dy, dx, generator=g, dtype=F64)
    xq = torch.randn(B, dx, generator=g, dtype=F64)
    S = sensitivities(lambda x: (W @ x[..., None])[..., 0], xq)
    assert S.shape == (B, dy, dx) and S.dtype == F64
    assert rel(S, W) < 1e-14
    assert not xq.requires_grad  # the caller's tensor is untouched


@given(B=st.integers(1, 4), dx=st.integers(1, 8), seed=SEED)
def test_sensitivities_of_nonlinear_predictor(B, dx, seed):
    g = runtime.generator(seed)
    w = torch.randn(B, dx, generator=g, dtype=F64)
    xq = torch.randn(B, dx, generator=g, dtype=F64)
    # ŷ = ((w·x)², sin(x_0)): Jacobian rows 2 (w·x) w and (cos x_0, 0, …)
    S = sensitivities(lambda x: torch.stack([(w * x).sum(-1) ** 2, torch.sin(x[:, 0])], dim=1), xq)
    ref0 = 2 * (w * xq).sum(-1, keepdim=True) * w
    ref1 = torch.zeros(B, dx, dtype=F64)
    ref1[:, 0] = torch.cos(xq[:, 0])
    assert rel(S[:, 0], ref0) < 1e-13
    assert rel(S[:, 1], ref1) < 1e-13


def test_sensitivities_rejects_unbatched_predictions():
    with pytest.raises(ValueError, match="predict"):
        sensitivities(lambda x: x.sum(-1), torch.ones(3, 2))
    with pytest.raises(ValueError, match="x_query"):
        sensitivities(lambda x: x, torch.ones(3))


@given(B=st.integers(1, 4), dx=st.integers(1, 8), dy=st.integers(1, 3), seed=SEED, c=st.floats(0.1, 10.0))
def test_model_cosine(B, dx, dy, seed, c):
    a = torch.randn(B, dy, dx, generator=runtime.generator(seed), dtype=F64)
    assert model_cosine(a, a) == pytest.approx(1.0, abs=1e-12)
    assert model_cosine(a, c * a) == pytest.approx(1.0, abs=1e-12)  # scale-free
    assert model_cosine(a, -a) == pytest.approx(-1.0, abs=1e-12)


def test_model_cosine_values():
    a = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]], dtype=F64)
    b = torch.tensor([[[0.0, 2.0]], [[1.0, 0.0]]], dtype=F64)
    # task 0 orthogonal (0), task 1 at 45° (1/√2): mean 1/(2√2)
    assert model_cosine(a, b) == pytest.approx(0.5 / 2**0.5, rel=1e-12)


def test_prediction_difference():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=F64)
    b = torch.tensor([[3.0, 4.0], [1.0, 2.0]], dtype=F64)
    assert prediction_difference(a, b) == pytest.approx((5.0 + 1.0) / 2, rel=1e-14)
    assert prediction_difference(b, b) == 0.0


def test_model_difference():
    a = torch.zeros(2, 1, 2, dtype=F64)
    b = torch.tensor([[[3.0, 4.0]], [[0.0, 1.0]]], dtype=F64)
    assert model_difference(a, b) == pytest.approx(3.0, rel=1e-14)
    assert model_difference(b, a) == pytest.approx(3.0, rel=1e-14)
    # flattened over (dy, dx): a 2×2 difference counts all four entries
    c = torch.ones(1, 2, 2, dtype=F64)
    assert model_difference(c, torch.zeros_like(c)) == pytest.approx(2.0, rel=1e-14)


def test_half_squared_error():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=F64)
    target = torch.zeros(2, 2, dtype=F64)
    # ½ Σ over dims, mean over the batch: ½ (5 + 0) / 2
    out = half_squared_error(pred, target)
    assert out.dtype == F64 and out.shape == ()
    assert float(out) == pytest.approx(1.25, rel=1e-14)


@pytest.mark.parametrize("fn", [prediction_difference, half_squared_error])
def test_pairwise_bad_input(fn):
    a = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="same shape"):
        fn(a, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="batched"):
        fn(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError):
        fn(a, a.numpy())


@pytest.mark.parametrize("fn", [model_cosine, model_difference])
def test_sensitivity_metrics_bad_input(fn):
    with pytest.raises(ValueError, match="sens_b"):
        fn(torch.zeros(3, 1, 2), torch.zeros(3, 1, 3))


@given(seed=SEED, alpha=st.floats(-1.0, 2.0))
def test_interpolate(seed, alpha):
    g = runtime.generator(seed)
    a = {"kq": torch.randn(3, 3, generator=g, dtype=F64), "pv": torch.randn(3, 3, generator=g, dtype=F64)}
    b = {"kq": torch.randn(3, 3, generator=g, dtype=F64), "pv": torch.randn(3, 3, generator=g, dtype=F64)}
    for k in a:
        assert torch.equal(interpolate(a, b, 0.0)[k], a[k])
        assert torch.equal(interpolate(a, b, 1.0)[k], b[k])
        assert rel(interpolate(a, b, 0.5)[k], (a[k] + b[k]) / 2) < 1e-15
        assert rel(interpolate(a, b, alpha)[k], a[k] + alpha * (b[k] - a[k])) < 1e-13
    assert set(interpolate(a, b, alpha)) == {"kq", "pv"}


def test_interpolate_bad_input():
    a = {"kq": torch.zeros(2, 2), "pv": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match="keys"):
        interpolate(a, {"kq": torch.zeros(2, 2)}, 0.5)
    with pytest.raises(ValueError, match="keys"):
        interpolate(a, {"kq": torch.zeros(2, 2), "xx": torch.zeros(2, 2)}, 0.5)
    with pytest.raises(ValueError, match="pv"):
        interpolate(a, {"kq": torch.zeros(2, 2), "pv": torch.zeros(2, 3)}, 0.5)
