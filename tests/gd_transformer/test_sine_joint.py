"""Part III, chapter "Non-linear regression": the official code's joint (x, y) embedding, its GD control, the
learned initial function, and the alignment measures that compare two learners beyond their loss."""

from __future__ import annotations

import math

import pytest
import torch

from icl_course import gd_transformer as gt
from icl_course import runtime, tasks
from icl_course.models import FeatureMap, LSAStack
from tests.helpers import F64


def _joint_gd(seed: int = 0, lr: float = 1.3) -> gt.JointFeatureGD:
    return gt.JointFeatureGD(gt.JointEmbedding(1, 1, 6, 16, generator=runtime.generator(seed), dtype=F64), lr=lr)


class _IdealFeatures(FeatureMap):
    """The features (sin x, cos x) behind FeatureMap's interface."""

    def __init__(self) -> None:
        super().__init__(1, 1, 2, dtype=F64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tasks.sine_basis(x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_joint_proposition2_construction_is_exact(seed):
    assert gt.joint_proposition2_errors(seed=seed) < 1e-12


def test_joint_gd_is_one_step_from_the_learned_initial_function():
    model = _joint_gd(3, lr=0.7)
    b = tasks.sine_eval_set(15, 8, seed=4, dtype=F64)
    with torch.no_grad():
        h = model.embedding(b.tokens())  # (B, 9, 7): features first, the target slot last
        hx, hy, hq = h[:, :-1, :6], h[:, :-1, 6], h[:, -1]
        ref = torch.stack([-hq[t, 6] + 0.7 / 8 * sum(hy[t, i] * (hx[t, i] @ hq[t, :6]) for i in range(8))
                           for t in range(15)])[:, None]
        assert torch.allclose(gt.predict(model, b.tokens(), 1), ref, rtol=1e-12, atol=1e-15)
        # with a zero step the prediction is the initial function, whatever the demonstrations say
        model.lr.zero_()
        assert torch.allclose(gt.predict(model, b.tokens(), 1), gt.initial_function(model, b.x_query), rtol=1e-12)
        shuffled = tasks.make_tokens(b.x.flip(0), b.y.flip(0), b.x_query)
        assert torch.allclose(gt.predict(model, shuffled, 1), gt.initial_function(model, b.x_query), rtol=1e-12)


def test_target_sensitivities_of_one_step_are_its_kernel_row():
    gd = gt.FeatureGD(FeatureMap(1, 16, 5, generator=runtime.generator(6), dtype=F64), lr=2.1)
    b = tasks.sine_eval_set(12, 10, seed=7, dtype=F64)
    sens = gt.target_sensitivities(gd, b)
    ref = torch.stack([gt.effective_kernel(gd, xs, xq[None])[:, 0] for xs, xq in zip(b.x, b.x_query)]) / 10
    assert sens.shape == (12, 10) and torch.allclose(sens, ref, rtol=1e-12)


def test_target_sensitivities_of_a_joint_model_match_finite_differences():
    model = gt.new_feature_model("lsa", seed=2, hidden=12, features=4, embedding="joint").double()
    b = tasks.sine_eval_set(6, 10, seed=3, dtype=F64)
    sens = gt.target_sensitivities(model, b)
    eps = 1e-6
    for i in (0, 4, 9):
        up, down = b.y.clone(), b.y.clone()
        up[:, i] += eps
        down[:, i] -= eps
        with torch.no_grad():
            fd = (gt.predict(model, tasks.make_tokens(b.x, up, b.x_query), 1)
                  - gt.predict(model, tasks.make_tokens(b.x, down, b.x_query), 1))[:, 0] / (2 * eps)
        assert torch.allclose(sens[:, i], fd, rtol=1e-6, atol=1e-9)


def test_the_ideal_learner_is_one_step_on_sine_features():
    b = tasks.sine_eval_set(40, 10, seed=8, dtype=F64)
    ideal = gt.FeatureGD(_IdealFeatures(), lr=1.8)
    pred, sens = gt.oracle_sine(b, 1.8)
    with torch.no_grad():
        assert torch.allclose(pred, gt.predict(ideal, b.tokens(), 1), rtol=1e-12)
    assert torch.allclose(sens, gt.target_sensitivities(ideal, b), rtol=1e-12)
    assert gt.oracle_feature_loss(b)[1] <= gt.compare_sine_models((pred, sens), (pred, sens), b)["loss_a"] + 1e-12


def test_one_step_from_a_starting_point_is_a_step_on_the_residuals():
    b = tasks.sine_eval_set(30, 10, seed=11, dtype=F64)
    w0 = torch.tensor([0.05, -0.2], dtype=F64)
    pred, sens = gt.oracle_sine(b, 1.7, init=w0)
    residual = b._replace(y=b.y - tasks.sine_basis(b.x) @ w0[:, None])
    step, sens0 = gt.oracle_sine(residual, 1.7)
    assert torch.allclose(pred, tasks.sine_basis(b.x_query) @ w0[:, None] + step, rtol=1e-12)
    assert torch.equal(sens, sens0)  # the sensitivities do not depend on where the step starts
    # started at the true weights, the step changes nothing: the demonstrations have no residual
    exact, _ = gt.oracle_sine(b._replace(w=b.w), 1.7, init=b.w[0, 0])
    assert torch.allclose(exact[0], b.y_query[0], atol=1e-12)


def test_the_prior_mean_is_the_average_task():
    mean = gt.sine_prior_mean()
    assert torch.allclose(mean, torch.tensor([0.0, 0.3 * 2 / math.pi], dtype=F64), atol=1e-15)
    b = tasks.sample_sine_regression(200_000, 1, generator=runtime.generator(12), dtype=F64)
    mc, se = b.w[:, 0].mean(0), b.w[:, 0].std(0) / 200_000 ** 0.5
    assert bool(((mc - mean).abs() < 4 * se).all())
    wide = gt.sine_prior_mean((0.1, 5.0))
    assert wide[1] == pytest.approx(2.55 * 2 / math.pi)
    # the best step from the prior mean beats the best step from zero on independent tasks
    ev = tasks.sine_eval_set(4000, seed=10, dtype=F64)
    assert gt.oracle_feature_loss(ev, init=mean)[1] < 0.8 * gt.oracle_feature_loss(ev)[1]
    with pytest.raises(ValueError, match="phase"):
        gt.sine_prior_mean(phase=(1.0, 1.0))


def test_least_squares_on_sine_features_is_exact_and_reproduces_the_features():
    b = tasks.sine_eval_set(50, 10, seed=13, dtype=F64)
    pred, sens = gt.least_squares_sine(b)
    assert torch.allclose(pred, b.y_query, atol=1e-10)  # noise-free tasks: least squares recovers w
    # its sensitivities reproduce the query's features: Σ_i s_i φ(x_i) = φ(x_q)
    assert torch.allclose((sens[..., None] * tasks.sine_basis(b.x)).sum(1), tasks.sine_basis(b.x_query), atol=1e-10)


def test_compare_sine_models_tells_alike_from_unlike():
    b = tasks.sine_eval_set(200, 10, seed=9, dtype=F64)
    ideal = gt.FeatureGD(_IdealFeatures(), lr=1.8)
    same = gt.compare_sine_models(ideal, gt.oracle_sine(b, 1.8), b)
    assert same["pred_diff"] < 1e-12 and same["target_cos"] == pytest.approx(1.0, abs=1e-12)
    assert same["target_diff"] < 1e-12 and same["loss_a"] == pytest.approx(same["loss_b"], rel=1e-12)
    pred, sens = gt.oracle_sine(b, 1.8)
    other = gt.compare_sine_models(gt.FeatureGD(_IdealFeatures(), lr=-1.8), (pred, sens), b)
    assert other["target_cos"] == pytest.approx(-1.0, abs=1e-12)
    assert other["pred_diff"] == pytest.approx(float((2 * pred).abs().mean()), rel=1e-12)
    scaled = gt.compare_sine_models(gt.FeatureGD(_IdealFeatures(), lr=3.6), (pred, sens), b)
    assert scaled["target_cos"] == pytest.approx(1.0, abs=1e-12)  # the cosine ignores the scale ...
    assert scaled["pred_diff"] == pytest.approx(float(pred.abs().mean()), rel=1e-12)  # ... the differences do not
    assert scaled["target_diff"] == pytest.approx(float(sens.norm(dim=1).mean()), rel=1e-12)
    random = gt.compare_sine_models(gt.new_feature_model("gd", seed=1).double(), (pred, sens), b)
    assert abs(random["target_cos"]) < 0.9
    lstsq = gt.compare_sine_models(gt.least_squares_sine(b), (pred, sens), b)
    assert 0.9 < lstsq["target_cos"] < 0.999 and lstsq["loss_a"] < 1e-12  # alike, but not the same learner


def test_train_sine_joint_runs_learns_and_takes_the_amplitude():
    run = gt.train_sine("gd", seed=0, embedding="joint", steps=300, eval_size=500)
    assert isinstance(run.model, gt.JointFeatureGD)
    assert run.history.steps == 300 and run.history.eval_loss[-1] < 0.5 * run.history.eval_loss[0]
    wide = gt.train_sine("lsa", seed=0, embedding="joint", steps=2, eval_size=500, amplitude=(0.1, 5.0))
    assert float(wide.eval_set.w.norm(dim=-1).max()) > 0.5 and isinstance(wide.model, gt.JointFeatureLSA)


def test_joint_models_and_alignment_check_their_inputs():
    emb = gt.JointEmbedding(1, 1, 4, 8)
    with pytest.raises(ValueError, match="embedding's width"):
        gt.JointFeatureLSA(emb, LSAStack.new(6))
    model = gt.JointFeatureLSA(emb, LSAStack.new(5, n_context=10))
    with pytest.raises(ValueError, match="n_context=10"):
        model(torch.zeros(2, 6, 2))
    with pytest.raises(ValueError, match="dx\\+dy=2"):
        model(torch.zeros(2, 11, 3))
    with pytest.raises(ValueError, match="query_only"):
        gt.JointFeatureGD(emb)(torch.zeros(2, 11, 2), query_only=False)
    with pytest.raises(ValueError, match="embedding"):
        gt.new_feature_model("gd", embedding="both")
    with pytest.raises(TypeError, match="JointFeatureLSA or JointFeatureGD"):
        gt.initial_function(gt.new_feature_model("gd"), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="dx=1"):
        gt.initial_function(gt.JointFeatureGD(emb), torch.zeros(3, 2))
    b = tasks.sine_eval_set(4, 10, seed=0)
    with pytest.raises(ValueError, match="lr"):
        gt.oracle_sine(b, -1.0)
    with pytest.raises(TypeError, match="a model or a pair"):
        gt.compare_sine_models("gd", gt.oracle_sine(b, 1.0), b)
    with pytest.raises(ValueError, match="b must be"):
        gt.compare_sine_models(gt.oracle_sine(b, 1.0), (torch.zeros(4, 1), torch.zeros(4, 3)), b)
    with pytest.raises(ValueError, match="init must have shape"):
        gt.oracle_sine(b, 1.0, init=torch.zeros(3))
    two = tasks.sample_linear_regression(4, 5, 2, 2)
    with pytest.raises(ValueError, match="one output"):
        gt.target_sensitivities(gt.JointFeatureGD(emb), two)
    with pytest.raises(ValueError, match="sine tasks"):
        gt.oracle_sine(two, 1.0)
