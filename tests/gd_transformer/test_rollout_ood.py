"""The damped one-layer roll-out and the inputs of other distributions (Part III, "One layer, one step")."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from icl_course import gd_transformer as gt
from icl_course import runtime, solvers, tasks
from icl_course.models import LinearSelfAttention, LSAStack
from tests.helpers import F64, SEED, batch, rel, stable_lr


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), N=st.integers(1, 12), dx=st.integers(1, 8), dy=st.integers(1, 3), seed=SEED,
       K=st.integers(1, 12), frac=st.floats(0.05, 0.95), lam=st.floats(0.1, 1.0), y_only=st.booleans())
def test_damped_rollout_of_construction_is_gd_at_damped_step(B, N, dx, dy, seed, K, frac, lam, y_only):
    """Proposition 1's layer, applied K times with damping λ (every token updated, keys from the context), is K GD
    steps at step λη — after every application, not only the last."""
    b = batch(B, N, dx, dy, seed)
    lr = stable_lr(b, frac)
    layer = gt.constructed_lsa(dx, dy, N, lr, dtype=F64)
    preds = gt.damped_rollout(layer, b.tokens(), dx, steps=K, damping=lam, y_only=y_only)
    assert preds.shape == (K, B, dy) and preds.dtype == F64
    W = None
    for k in range(K):
        W = solvers.gd(b.x, b.y, lam * lr, 1, w0=W)
        assert rel(preds[k], solvers.predict(W, b.x_query)) < 1e-10


def test_rollout_needs_the_context_tokens_updated():
    """Updating only the query would repeat the first step K times: K·λη·W_1 x_q, not GD — the identity above
    depends on the context tokens' y-slots becoming residuals."""
    b = batch(3, 6, 4, 1, 0)
    lr = stable_lr(b, 0.5)
    preds = gt.damped_rollout(gt.constructed_lsa(4, 1, 6, lr, dtype=F64), b.tokens(), 4, steps=3, damping=0.5)
    query_only = 3 * gt.gd_predict(b, 0.5 * lr)
    assert rel(preds[-1], query_only) > 1e-3


def test_rollout_losses_known_answer():
    """Orthonormal inputs (Σ̂ = I): GD at step h gives W_k = (1 − (1 − h)^k) W*, so the loss after k steps is
    ½ (1 − h)^{2k} ‖W* x_q‖²; the roll-out of Proposition 1's layer at damping λ, step η, has h = λη."""
    N = dx = 4
    x = (math.sqrt(N) * torch.eye(N, dtype=F64))[None]  # (1, N, dx): Σ̂ = xᵀx / N = I
    w = torch.tensor([[[1.0, -2.0, 0.5, 3.0]]], dtype=F64)  # (1, 1, dx)
    xq = torch.tensor([[0.3, 0.1, -0.2, 0.4]], dtype=F64)
    b = tasks.RegressionBatch(x, x @ w.transpose(1, 2), xq, (xq[:, None] @ w.transpose(1, 2))[:, 0], w)
    eta, lam, K = 0.8, 0.5, 6
    out = gt.rollout_losses(gt.constructed_lsa(dx, 1, N, eta, dtype=F64), b, eta, steps=K, damping=lam)
    target = float((w[0] @ xq[0]).square().sum())
    expected = [0.5 * (1 - lam * eta) ** (2 * k) * target for k in range(1, K + 1)]
    assert out["gd"] == pytest.approx(expected, rel=1e-12)
    assert out["tf"] == pytest.approx(expected, rel=1e-12)


def test_rollout_y_only_keeps_the_inputs():
    """With ``y_only`` (the official ``y_update``) a layer that also writes into the x-slots is damped only in the
    y-slots: a layer whose only write goes to the x-slots leaves every prediction at 0."""
    D, dx = 4, 3
    W_PV = torch.zeros(D, D, dtype=F64)
    W_PV[:dx, :dx] = torch.eye(dx, dtype=F64)  # writes only into x-slots
    W_KQ = torch.eye(D, dtype=F64)
    W_KQ[dx, dx] = 0.0
    pv_y = torch.zeros(D, D, dtype=F64)
    pv_y[dx, 0] = 1.0  # then reads an x-coordinate into the y-slot
    layer = gt.product_layer(W_KQ, W_PV + pv_y)
    b = batch(2, 5, dx, 1, 3)
    y_only = gt.damped_rollout(layer, b.tokens(), dx, steps=2, damping=0.5)
    full = gt.damped_rollout(layer, b.tokens(), dx, steps=2, damping=0.5, y_only=False)
    assert rel(y_only[0], full[0]) < 1e-12  # the first y-update reads the original x-slots either way
    assert rel(y_only[1], full[1]) > 1e-3  # the second reads x-slots that only the full update changed


def test_rollout_of_one_layer_stack_equals_its_layer():
    layer = LinearSelfAttention(5, generator=runtime.generator(1), dtype=F64, init_scale=0.3)
    stack = LSAStack([layer], n_context=6)
    b = batch(2, 6, 4, 1, 1)
    a = gt.damped_rollout(stack, b.tokens(), 4, steps=3)
    c = gt.damped_rollout(layer, b.tokens(), 4, steps=3)
    assert torch.equal(a, c)


def test_float32_rollout_first_application_is_damped_step():
    b = tasks.sample_linear_regression(2, 6, 4, generator=runtime.generator(2))
    layer = gt.constructed_lsa(4, 1, 6, 1.0)
    preds = gt.damped_rollout(layer, b.tokens(), 4, steps=2)
    assert preds.dtype == torch.float32 and preds.shape == (2, 2, 1)
    with torch.no_grad():
        one_step = gt.predict(layer, b.tokens(), 4)
    assert rel(preds[0], 0.75 * one_step) < 1e-6  # first application: λ times one step


@pytest.mark.parametrize("dist", gt.OTHER_DISTRIBUTIONS + ("mixture",))
def test_other_inputs_context_norm_is_the_input_range(dist):
    """The official scaling: each task's context matrix has Frobenius norm ``input_range``, the query shares the
    context's factor (so ‖x_q‖² ≈ r²/N on average), targets are the teacher's."""
    b = gt.sample_other_inputs(4000, 10, 10, dist, input_range=2.5, generator=runtime.generator(0), dtype=F64)
    norms = torch.linalg.vector_norm(b.x, dim=(1, 2))
    assert torch.allclose(norms, torch.full_like(norms, 2.5), rtol=1e-12)
    assert float(b.x_query.square().sum(-1).mean()) * 10 / 2.5**2 == pytest.approx(1.0, abs=0.1)
    assert rel(b.y, b.x @ b.w.transpose(1, 2)) < 1e-12
    assert rel(b.y_query, (b.x_query[:, None] @ b.w.transpose(1, 2))[:, 0]) < 1e-12


@pytest.mark.parametrize("dist, mean, abs_mean", [("normal", 0.0, math.sqrt(2 / math.pi)),
                                                  ("exponential", math.sqrt(0.5), math.sqrt(0.5)),
                                                  ("laplace", 0.0, math.sqrt(0.5))])
def test_other_inputs_shape_of_the_distribution(dist, mean, abs_mean):
    """Scale-free moments of the entries: E s / √(E s²) and E|s| / √(E s²) — normal 0 and √(2/π), exponential
    √½ and √½, Laplace 0 and √½."""
    N, dx = 10, 10
    b = gt.sample_other_inputs(4000, N, dx, dist, generator=runtime.generator(1), dtype=F64)
    z = b.x * math.sqrt(N * dx)  # each task's entries now have mean square exactly 1
    assert float(z.mean()) == pytest.approx(mean, abs=0.02)
    assert float(z.abs().mean()) == pytest.approx(abs_mean, abs=0.02)


def test_other_inputs_mixture_draws_each_distribution_for_a_third_of_tasks():
    b = gt.sample_other_inputs(6000, 10, 10, "mixture", generator=runtime.generator(2), dtype=F64)
    positive = (b.x > 0).all(-1).all(-1).double().mean()  # only exponential tasks have all inputs positive
    assert float(positive) == pytest.approx(1 / 3, abs=0.03)


def test_other_distributions_sweep_of_construction_matches_gd():
    """Proposition 1's layer at η is GD-1 at η on any inputs: the sweep's ratio is 1 in every row."""
    model = gt.constructed_lsa(gt.PAPER.dx, 1, gt.PAPER.n_context, 4.0)
    rows = gt.other_distributions_sweep(model, {"eta": 4.0, "half": 2.0}, input_ranges=(1.0, 3.0), n_tasks=200)
    assert [(r["dist"], r["input_range"]) for r in rows] == [
        (d, s) for d in gt.OTHER_DISTRIBUTIONS + ("mixture",) for s in (1.0, 3.0)]
    assert all(r["loss_tf"] == pytest.approx(r["loss_gd[eta]"], rel=1e-4) for r in rows)
    assert gt.ood_log_ratios(rows)["eta"] < 1e-4 < gt.ood_log_ratios(rows)["half"]


@pytest.mark.parametrize("kw, exc, words", [
    ({"damping": 0.0}, ValueError, "damping"),
    ({"damping": -0.5}, ValueError, "damping"),
    ({"damping": "0.75"}, TypeError, "damping"),
    ({"steps": 0}, ValueError, "steps"),
    ({"steps": 2.0}, TypeError, "steps"),
    ({"dx": 5}, ValueError, "dx"),
])
def test_damped_rollout_bad_inputs(kw, exc, words):
    b = batch(2, 6, 4, 1, 0)
    args = {"dx": 4, **kw}
    dx = args.pop("dx")
    with pytest.raises(exc, match=words):
        gt.damped_rollout(gt.constructed_lsa(4, 1, 6, 1.0, dtype=F64), b.tokens(), dx, **args)


def test_damped_rollout_bad_layer_and_tokens():
    b = batch(2, 6, 4, 1, 0)
    with pytest.raises(TypeError, match="layer must be"):
        gt.damped_rollout(torch.nn.Identity(), b.tokens(), 4)
    with pytest.raises(ValueError, match="layer must be one layer"):
        gt.damped_rollout(gt.constructed_lsa(4, 1, 6, 1.0, n_layers=2, dtype=F64), b.tokens(), 4)
    with pytest.raises(ValueError, match="n_context=6"):
        gt.damped_rollout(gt.constructed_lsa(4, 1, 6, 1.0, dtype=F64), batch(2, 5, 4, 1, 0).tokens(), 4)
    with pytest.raises(ValueError, match="tokens must have shape"):
        gt.damped_rollout(gt.constructed_lsa(4, 1, 6, 1.0, dtype=F64), b.tokens()[0], 4)
    with pytest.raises(ValueError, match="lr must be"):
        gt.rollout_losses(gt.constructed_lsa(4, 1, 6, 1.0, dtype=F64), b, -1.0)


@pytest.mark.parametrize("kw, exc, words", [
    ({"dist": "uniform"}, ValueError, "dist must be one of"),
    ({"input_range": 0.0}, ValueError, "input_range"),
    ({"teacher_scale": -1.0}, ValueError, "teacher_scale"),
    ({"n_tasks": 0}, ValueError, "n_tasks"),
    ({"dtype": torch.int64}, TypeError, "dtype"),
])
def test_sample_other_inputs_bad_inputs(kw, exc, words):
    args = {"n_tasks": 3, "n_context": 4, "dx": 2, "dist": "normal", **kw}
    with pytest.raises(exc, match=words):
        gt.sample_other_inputs(**args)


def test_other_distributions_sweep_bad_inputs():
    model = gt.constructed_lsa(gt.PAPER.dx, 1, gt.PAPER.n_context, 5.0)
    with pytest.raises(ValueError, match="lrs must name"):
        gt.other_distributions_sweep(model, {})
    with pytest.raises(ValueError, match="input_ranges"):
        gt.other_distributions_sweep(model, {"eta": 5.0}, input_ranges=(1.0, -2.0), n_tasks=10)
    with pytest.raises(ValueError, match="dist must be one of"):
        gt.other_distributions_sweep(model, {"eta": 5.0}, dists=("poisson",), n_tasks=10)
