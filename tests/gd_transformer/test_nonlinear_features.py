"""Part III, chapter "Non-linear regression: GD on learned features": sine tasks, Proposition 2, the kernel."""

from __future__ import annotations

import math

import pytest
import torch

from icl_course import gd_transformer as gt
from icl_course import runtime, solvers, tasks
from icl_course.models import FeatureLSA, FeatureMap, LinearSelfAttention, LSAStack
from tests.helpers import CUDA, F64

# ---------------------------------------------------------------- sine tasks


def test_sine_tasks_are_linear_in_the_sine_basis():
    b = tasks.sample_sine_regression(50, 7, generator=runtime.generator(0), dtype=F64)
    assert b.x.shape == (50, 7, 1) and b.y.shape == (50, 7, 1) and b.x_query.shape == (50, 1)
    assert b.w.shape == (50, 1, 2)
    assert torch.allclose(tasks.sine_basis(b.x) @ b.w.transpose(1, 2), b.y, atol=1e-14)
    assert torch.allclose((tasks.sine_basis(b.x_query)[:, None] @ b.w.transpose(1, 2))[:, 0], b.y_query, atol=1e-14)
    amp = b.w.norm(dim=-1)
    phase = torch.atan2(b.w[..., 1], b.w[..., 0])
    assert float(amp.min()) >= 0.1 and float(amp.max()) <= 0.5
    assert float(phase.min()) >= 0 and float(phase.max()) <= math.pi
    assert float(b.x.abs().max()) <= 5.0


def test_tied_tasks_put_amplitude_and_phase_on_one_curve():
    b = tasks.sample_sine_regression(200, 3, tied=True, generator=runtime.generator(1), dtype=F64)
    amp, phase = b.w.norm(dim=-1), torch.atan2(b.w[..., 1], b.w[..., 0])
    assert torch.allclose((amp - 0.1) / 0.4, phase / math.pi, atol=1e-12)
    free = tasks.sample_sine_regression(200, 3, generator=runtime.generator(1), dtype=F64)
    amp, phase = free.w.norm(dim=-1), torch.atan2(free.w[..., 1], free.w[..., 0])
    assert float(((amp - 0.1) / 0.4 - phase / math.pi).abs().max()) > 0.3


@pytest.mark.parametrize("kw,match", [({"amplitude": (0.5, 0.1)}, "amplitude"), ({"input_range": 0.0}, "input_range"),
                                      ({"phase": (1.0, 0.0)}, "phase")])
def test_sine_tasks_reject_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        tasks.sample_sine_regression(4, 3, **kw)


def test_sine_basis_needs_one_input():
    with pytest.raises(ValueError, match=r"\(\.\.\., 1\)"):
        tasks.sine_basis(torch.zeros(3, 2))


def test_feature_map_is_seeded_and_checks_shapes():
    a = FeatureMap(1, 8, 4, generator=runtime.generator(3))
    b = FeatureMap(1, 8, 4, generator=runtime.generator(3))
    x = torch.randn(5, 1)
    assert torch.equal(a(x), b(x)) and a(x).shape == (5, 4)
    with pytest.raises(ValueError, match="dx=1"):
        a(torch.zeros(5, 2))


def test_feature_gd_is_one_gd_step_on_the_features():
    model = gt.FeatureGD(FeatureMap(1, 16, 5, generator=runtime.generator(4), dtype=F64), lr=1.7)
    b = tasks.sine_eval_set(20, 6, seed=5, dtype=F64)
    with torch.no_grad():
        fx, fq = model.feature_map(b.x), model.feature_map(b.x_query)
        ref = solvers.predict(solvers.gd(fx, b.y, 1.7), fq)
        assert torch.allclose(gt.predict(model, b.tokens(), 1), ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposition2_construction_is_exact(seed):
    assert gt.proposition2_errors(seed=seed) < 1e-12


def test_effective_kernel_of_the_construction_is_the_gd_kernel():
    gd = gt.FeatureGD(FeatureMap(1, 16, 5, generator=runtime.generator(6), dtype=F64), lr=2.1)
    lsa = gt.feature_gd_as_lsa(gd, 10)
    a, c = torch.linspace(-5, 5, 7, dtype=F64)[:, None], torch.linspace(-4, 4, 9, dtype=F64)[:, None]
    assert torch.allclose(gt.effective_kernel(lsa, a, c, "value"), gt.effective_kernel(gd, a, c), rtol=1e-12)
    assert float(gt.effective_kernel(lsa, a, c, "key").abs().max()) == 0.0
    b = tasks.sine_eval_set(30, 10, seed=7, dtype=F64)
    assert gt.kernel_explained(lsa, b) == pytest.approx(1.0, abs=1e-12)
    assert gt.kernel_explained(gd, b) == pytest.approx(1.0, abs=1e-12)


def test_effective_kernel_is_the_part_of_a_random_layer_linear_in_the_targets():
    gen = runtime.generator(8)
    lsa = LSAStack([LinearSelfAttention(6, init_scale=6.0, generator=gen, dtype=F64)], n_context=10)
    model = FeatureLSA(FeatureMap(1, 12, 5, generator=gen, dtype=F64), lsa)
    b = tasks.sine_eval_set(25, 10, seed=9, dtype=F64)
    with torch.no_grad():
        plus = gt.predict(model, tasks.make_tokens(b.x, b.y, b.x_query), 1)
        minus = gt.predict(model, tasks.make_tokens(b.x, -b.y, b.x_query), 1)
        k = torch.stack([gt.effective_kernel(model, xs, xq[None])[:, 0] for xs, xq in zip(b.x, b.x_query)])
    odd = (plus - minus) / 2  # the y² term and the mean function are even in y
    assert torch.allclose(odd, (k[..., None] * b.y).sum(1) / 10, rtol=1e-10, atol=1e-14)
    both = gt.effective_kernel(model, b.x[0], b.x[1])
    assert torch.allclose(both, gt.effective_kernel(model, b.x[0], b.x[1], "value")
                          + gt.effective_kernel(model, b.x[0], b.x[1], "key"))
    with pytest.raises(ValueError, match="route"):
        gt.effective_kernel(model, b.x[0], b.x[1], "query")
    with pytest.raises(TypeError, match="FeatureGD or FeatureLSA"):
        gt.effective_kernel(lsa, b.x[0], b.x[1])


def test_feature_models_check_their_inputs():
    with pytest.raises(ValueError, match="features \\+ dy"):
        FeatureLSA(FeatureMap(1, 4, 6), LSAStack.new(6))
    model = gt.new_feature_model("lsa", n_context=10)
    with pytest.raises(ValueError, match="n_context=10"):
        model(torch.zeros(2, 6, 2))
    with pytest.raises(ValueError, match="query_only"):
        model(torch.zeros(2, 11, 2), query_only=False)
    with pytest.raises(ValueError, match="kind"):
        gt.new_feature_model("mlp")
    with pytest.raises(ValueError, match="scale"):
        gt.train_sine("gd", scale="laptop")


def test_oracle_features_need_about_twice_the_naive_step():
    eta, loss = gt.oracle_feature_loss(tasks.sine_eval_set(4000, seed=10))
    assert 1.5 < eta < 2.1 and loss < 0.004  # the zero predictor's loss is ≈ 0.026


def test_train_sine_runs_and_learns():
    run = gt.train_sine("gd", seed=0, steps=300, eval_size=500)
    assert run.history.steps == 300 and run.history.eval_loss[-1] < 0.5 * run.history.eval_loss[0]


@CUDA
def test_sine_and_standard_token_training_on_cuda():
    run = gt.train_sine("lsa", seed=0, steps=20, eval_size=200, device="cuda")
    assert next(run.model.parameters()).device.type == "cuda" and run.eval_set.x.device.type == "cuda"
    run = gt.train_standard_tokens(seed=0, max_steps=20, eval_size=200, device="cuda")
    assert next(run.model.parameters()).device.type == "cuda"
    assert math.isfinite(run.history.eval_loss[-1])
