"""Non-linear regression on learned features (Proposition 2) and standard tokens with a copy layer (Proposition 3)."""

from __future__ import annotations

import math

import pytest
import torch

from icl_course import gd_transformer as gt
from icl_course import runtime, solvers, tasks
from icl_course.models import FeatureLSA, FeatureMap, LinearSelfAttention, LSAStack, StandardTokenLSA

F64 = torch.float64
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


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


# ---------------------------------------------------------------- feature models
def test_feature_map_is_seeded_and_checks_shapes():
    a = FeatureMap(1, 8, 4, generator=runtime.generator(3))
    b = FeatureMap(1, 8, 4, generator=runtime.generator(3))
    x = torch.randn(5, 1)
    assert torch.equal(a(x), b(x)) and a(x).shape == (5, 4)
    with pytest.raises(ValueError, match="dx=1"):
        a(torch.zeros(5, 2))


def test_feature_gd_is_one_gd_step_on_the_features():
    model = gt.FeatureGD(FeatureMap(1, 16, 5, generator=runtime.generator(4), dtype=F64), lr=1.7)
    b = gt.sine_eval(20, 6, seed=5, dtype=F64)
    with torch.no_grad():
        fx, fq = model.feature_map(b.x), model.feature_map(b.x_query)
        ref = solvers.predict(solvers.gd(fx, b.y, 1.7), fq)
        assert torch.allclose(gt.lsa_predict(model, b.tokens(), 1), ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposition2_construction_is_exact(seed):
    assert gt.proposition2_errors(seed=seed) < 1e-12


def test_effective_kernel_of_the_construction_is_the_gd_kernel():
    gd = gt.FeatureGD(FeatureMap(1, 16, 5, generator=runtime.generator(6), dtype=F64), lr=2.1)
    lsa = gt.feature_gd_as_lsa(gd, 10)
    a, c = torch.linspace(-5, 5, 7, dtype=F64)[:, None], torch.linspace(-4, 4, 9, dtype=F64)[:, None]
    assert torch.allclose(gt.effective_kernel(lsa, a, c, "value"), gt.effective_kernel(gd, a, c), rtol=1e-12)
    assert float(gt.effective_kernel(lsa, a, c, "key").abs().max()) == 0.0
    b = gt.sine_eval(30, 10, seed=7, dtype=F64)
    assert gt.kernel_explained(lsa, b) == pytest.approx(1.0, abs=1e-12)
    assert gt.kernel_explained(gd, b) == pytest.approx(1.0, abs=1e-12)


def test_effective_kernel_is_the_part_of_a_random_layer_linear_in_the_targets():
    gen = runtime.generator(8)
    lsa = LSAStack([LinearSelfAttention(6, init_scale=6.0, generator=gen, dtype=F64)], n_context=10)
    model = FeatureLSA(FeatureMap(1, 12, 5, generator=gen, dtype=F64), lsa)
    b = gt.sine_eval(25, 10, seed=9, dtype=F64)
    with torch.no_grad():
        plus = gt.lsa_predict(model, tasks.make_tokens(b.x, b.y, b.x_query), 1)
        minus = gt.lsa_predict(model, tasks.make_tokens(b.x, -b.y, b.x_query), 1)
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
    eta, loss = gt.oracle_feature_loss(gt.sine_eval(4000, seed=10))
    assert 1.5 < eta < 2.1 and loss < 0.004  # the zero predictor's loss is ≈ 0.026


def test_train_sine_runs_and_learns():
    run = gt.train_sine("gd", seed=0, steps=300, eval_size=500)
    assert run.history.steps == 300 and run.history.eval_loss[-1] < 0.5 * run.history.eval_loss[0]


# ---------------------------------------------------------------- standard tokens
def test_standard_tokens_layout():
    b = tasks.sample_linear_regression(3, 4, 2, 1, generator=runtime.generator(11), dtype=F64)
    S = tasks.standard_tokens(b.x, b.y, b.x_query)
    assert S.shape == (3, 9, 2 + 1 + 9)
    assert torch.equal(S[:, 0:8:2, :2], b.x) and torch.equal(S[:, 1:8:2, 2:3], b.y)
    assert torch.equal(S[:, -1, :2], b.x_query)
    assert float(S[:, 0:8:2, 2].abs().max()) == 0 and float(S[:, 1:8:2, :2].abs().max()) == 0
    assert torch.equal(S[0, :, 3:], torch.eye(9, dtype=F64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_copy_then_gd_is_one_gd_step(seed):
    assert gt.copy_gd_errors([40.0], seed=seed)[40.0] < 1e-12


def test_copy_error_falls_with_the_softmax_sharpness():
    errs = gt.copy_gd_errors([5.0, 10.0, 20.0, 30.0])
    values = list(errs.values())
    assert all(b < a / 10 for a, b in zip(values, values[1:])) and values[0] > 1e-2


def test_constructed_copy_layer_reads_the_previous_token():
    model = gt.constructed_copy_gd(3, 1, 5, 0.5, dtype=F64)
    b = tasks.sample_linear_regression(8, 5, 3, generator=runtime.generator(12), dtype=F64)
    scores = gt.copy_scores(gt.copy_attention(model, b))
    assert scores["y_reads_x"] == pytest.approx(1.0, abs=1e-12)
    # only the first token has no predecessor: it attends uniformly (1/2N) to all 2N keys
    assert scores["x_reads_y"] == pytest.approx(0.1 / 5, abs=1e-12)
    assert scores["uniform"] == pytest.approx(0.1)


def test_standard_token_model_checks_its_inputs():
    with pytest.raises(ValueError, match="dx \\+ dy \\+ 2N \\+ 1 = 32"):
        StandardTokenLSA(LSAStack.new(11), 10, 1, 10)
    model = gt.new_standard_model()
    with pytest.raises(ValueError, match="n_context=10"):
        model(torch.zeros(2, 5, 11))
    with pytest.raises(ValueError, match="2N\\+1, 2N"):
        gt.copy_scores(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="scale"):
        gt.train_standard_tokens(scale="huge")


def test_train_standard_tokens_runs():
    run = gt.train_standard_tokens(seed=0, max_steps=60, eval_size=300)
    assert run.history.steps == 60 and run.escape is None and len(run.history.eval_loss) == 3


@CUDA
def test_sine_and_standard_token_training_on_cuda():
    run = gt.train_sine("lsa", seed=0, steps=20, eval_size=200, device="cuda")
    assert next(run.model.parameters()).device.type == "cuda" and run.eval_set.x.device.type == "cuda"
    run = gt.train_standard_tokens(seed=0, max_steps=20, eval_size=200, device="cuda")
    assert next(run.model.parameters()).device.type == "cuda"
    assert math.isfinite(run.history.eval_loss[-1])
